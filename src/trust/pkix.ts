/**
 * The parts of PKIX that need no ASN.1 library: the signature algorithms we sign and accept,
 * PEM framing, and a DER writer (X.690 §10) for the few structures a sidecar writes itself.
 *
 * A sidecar makes one kind of structure, its certificate signing request, whose shape never
 * varies. Writing those bytes here keeps node-forge's ASN.1 codec (der.ts), which the CA's
 * certificate builder and CSR reader need, out of every sidecar process: about 1.1 MB of RSS
 * (docs/benchmarks.md, "What still holds the memory").
 */
import { sign, type KeyObject } from 'node:crypto';

export interface SignatureAlgorithm {
  oid: string;
  digest: 'sha256' | 'sha384' | 'sha512';
  keyType: 'rsa' | 'ec';
}

/**
 * Algorithms we accept on CSRs. SHA-1 and RSA-PSS are left out on purpose: the first is broken
 * for signatures, the second no sidecar of ours produces, and each extra row is attack surface.
 */
export const signatureAlgorithms: readonly SignatureAlgorithm[] = [
  { oid: '1.2.840.113549.1.1.11', digest: 'sha256', keyType: 'rsa' },
  { oid: '1.2.840.113549.1.1.12', digest: 'sha384', keyType: 'rsa' },
  { oid: '1.2.840.113549.1.1.13', digest: 'sha512', keyType: 'rsa' },
  { oid: '1.2.840.10045.4.3.2', digest: 'sha256', keyType: 'ec' },
  { oid: '1.2.840.10045.4.3.3', digest: 'sha384', keyType: 'ec' },
  { oid: '1.2.840.10045.4.3.4', digest: 'sha512', keyType: 'ec' },
];

/** The algorithm we sign with for a given key: SHA-256, or SHA-384 to match a P-384 key's strength. */
export function signatureAlgorithmFor(key: KeyObject): SignatureAlgorithm {
  const wanted =
    key.asymmetricKeyType === 'rsa'
      ? '1.2.840.113549.1.1.11'
      : key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'secp384r1'
        ? '1.2.840.10045.4.3.3'
        : key.asymmetricKeyType === 'ec'
          ? '1.2.840.10045.4.3.2'
          : undefined;
  const algorithm = signatureAlgorithms.find((a) => a.oid === wanted);
  if (!algorithm) throw new Error(`cannot sign with a ${String(key.asymmetricKeyType)} key; use RSA or EC`);
  return algorithm;
}

export function toPem(label: string, der: Buffer): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** The DER bodies of every PEM block with one of the given labels, and the labels of all blocks. */
export function pemBlocks(pem: string): { label: string; der: Buffer }[] {
  const blocks: { label: string; der: Buffer }[] = [];
  const re = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;
  for (const match of pem.matchAll(re)) {
    const body = (match[2] ?? '').replace(/\s+/g, '');
    blocks.push({ label: match[1] ?? '', der: Buffer.from(body, 'base64') });
  }
  return blocks;
}

/** One DER element: its identifier octet, its length (short form below 128, else long form), its content. */
export function derElement(identifier: number, content: Buffer): Buffer {
  let header: number[];
  if (content.length < 0x80) header = [identifier, content.length];
  else {
    const octets: number[] = [];
    for (let n = content.length; n > 0; n = Math.floor(n / 256)) octets.unshift(n % 256);
    header = [identifier, 0x80 | octets.length, ...octets];
  }
  return Buffer.concat([Buffer.from(header), content]);
}

export const derSequence = (items: Buffer[]): Buffer => derElement(0x30, Buffer.concat(items));

/** `[n] EXPLICIT`: a constructed, context-specific element around `items`. */
export const derExplicit = (tagNumber: number, items: Buffer[]): Buffer => derElement(0xa0 | tagNumber, Buffer.concat(items));

export const derNull = (): Buffer => Buffer.from([0x05, 0x00]);

/** An INTEGER from 0 to 127, whose content is its one octet. */
export function derSmallInteger(value: number): Buffer {
  if (!Number.isInteger(value) || value < 0 || value > 127) throw new RangeError(`derSmallInteger takes 0 to 127, not ${value}`);
  return derElement(0x02, Buffer.from([value]));
}

/** A BIT STRING of whole bytes (signatures, keys): the leading octet says "0 unused bits". */
export const derBitString = (value: Buffer): Buffer => derElement(0x03, Buffer.concat([Buffer.from([0]), value]));

/** An OBJECT IDENTIFIER: the first two arcs in one number, each arc in base 128 with a continuation bit. */
export function derOid(dotted: string): Buffer {
  const arcs = /^\d+(\.\d+)+$/.test(dotted) ? dotted.split('.').map(Number) : [];
  const [first, second, ...rest] = arcs;
  if (first === undefined || second === undefined || arcs.some((a) => !Number.isSafeInteger(a)) || first > 2 || (first < 2 && second > 39)) {
    throw new RangeError(`not an object identifier: ${dotted}`);
  }
  const octets: number[] = [];
  for (const arc of [first * 40 + second, ...rest]) {
    const group = [arc % 128];
    for (let n = Math.floor(arc / 128); n > 0; n = Math.floor(n / 128)) group.unshift(0x80 | (n % 128));
    octets.push(...group);
  }
  return derElement(0x06, Buffer.from(octets));
}

/** RFC 4055 §5: RSA PKCS#1 v1.5 identifiers carry NULL parameters; RFC 5758 §3.2: ECDSA ones carry none. */
export function derAlgorithmIdentifier(algorithm: SignatureAlgorithm): Buffer {
  return derSequence(algorithm.keyType === 'rsa' ? [derOid(algorithm.oid), derNull()] : [derOid(algorithm.oid)]);
}

/** Signs the DER `toBeSigned` and wraps it as `SEQUENCE { toBeSigned, algorithm, BIT STRING signature }` (X.509 and PKCS#10 alike). */
export function signedDer(toBeSigned: Buffer, privateKey: KeyObject): Buffer {
  const algorithm = signatureAlgorithmFor(privateKey);
  const signature = sign(algorithm.digest, toBeSigned, privateKey);
  return derSequence([toBeSigned, derAlgorithmIdentifier(algorithm), derBitString(signature)]);
}
