/**
 * The ASN.1 toolkit the certificate builder and CSR reader share: node-forge's DER encoder and
 * decoder, the handful of OIDs we emit, PEM framing, and signing with Node's crypto.
 *
 * Private keys never enter forge. forge encodes the structures; OpenSSL (through node:crypto)
 * holds the keys and makes every signature, so a CA key gets OpenSSL's constant-time, blinded
 * RSA instead of forge's pure-JS bignums, and EC keys work where forge's pki layer has none.
 */
import { sign, type KeyObject } from 'node:crypto';
import type forgeTypes from 'node-forge';
import 'node-forge/lib/asn1.js';
import forgeNamespace from 'node-forge/lib/forge.js';

// Only forge's ASN.1 codec and the byte buffer it uses (lib/asn1 loads lib/util), not its index:
// that would bring its ciphers, TLS, PKI and bignums into every process that makes a CSR (each
// sidecar) for nothing. lib/forge is the namespace object these modules fill in.
const forge = forgeNamespace;
const { asn1 } = forge;
export type Asn1 = forgeTypes.asn1.Asn1;
export const Tag = asn1.Type;
export const TagClass = asn1.Class;

export const oids = {
  rsaEncryption: '1.2.840.113549.1.1.1',
  ecPublicKey: '1.2.840.10045.2.1',
  organizationName: '2.5.4.10',
  commonName: '2.5.4.3',
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
} as const;

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

export const binary = (buf: Buffer): string => buf.toString('binary');
export const bytes = (s: string): Buffer => Buffer.from(s, 'binary');

export function node(type: forgeTypes.asn1.Type, value: string | Asn1[], tagClass = TagClass.UNIVERSAL): Asn1 {
  return asn1.create(tagClass, type, Array.isArray(value), value);
}

export const sequence = (items: Asn1[]): Asn1 => node(Tag.SEQUENCE, items);
export const oid = (dotted: string): Asn1 => node(Tag.OID, asn1.oidToDer(dotted).getBytes());
export const octets = (value: Buffer): Asn1 => node(Tag.OCTETSTRING, binary(value));
/** A BIT STRING holding whole bytes (signatures, keys): the leading byte says "0 unused bits". */
export const bitString = (value: Buffer): Asn1 => node(Tag.BITSTRING, '\x00' + binary(value));
/** An INTEGER from bytes that are already a minimal two's-complement encoding. */
export const integerBytes = (value: Buffer): Asn1 => node(Tag.INTEGER, binary(value));
export const smallInteger = (value: number): Asn1 => node(Tag.INTEGER, asn1.integerToDer(value).getBytes());
export const explicit = (tagNumber: number, inner: Asn1[]): Asn1 =>
  asn1.create(TagClass.CONTEXT_SPECIFIC, tagNumber as forgeTypes.asn1.Type, true, inner);
export const implicitPrimitive = (tagNumber: number, value: Buffer | string): Asn1 =>
  asn1.create(TagClass.CONTEXT_SPECIFIC, tagNumber as forgeTypes.asn1.Type, false, typeof value === 'string' ? value : binary(value));

export function algorithmIdentifier(algorithm: SignatureAlgorithm): Asn1 {
  // RFC 4055 §5: RSA PKCS#1 v1.5 identifiers carry NULL parameters; RFC 5758 §3.2: ECDSA ones carry none.
  return sequence(algorithm.keyType === 'rsa' ? [oid(algorithm.oid), node(Tag.NULL, '')] : [oid(algorithm.oid)]);
}

export function toDer(value: Asn1): Buffer {
  return bytes(asn1.toDer(value).getBytes());
}

/**
 * Strict DER decoding. Bit strings stay opaque bytes: forge would otherwise try to read a
 * signature as nested ASN.1, and re-encoding would then no longer reproduce the input.
 */
export function fromDer(der: Buffer): Asn1 {
  const decode = asn1.fromDer as unknown as (
    input: string,
    options: { strict: boolean; parseAllBytes: boolean; decodeBitStrings: boolean },
  ) => Asn1;
  return decode(binary(der), { strict: true, parseAllBytes: true, decodeBitStrings: false });
}

export function children(value: Asn1): Asn1[] {
  return Array.isArray(value.value) ? value.value : [];
}

export function primitiveBytes(value: Asn1): Buffer {
  return typeof value.value === 'string' ? bytes(value.value) : Buffer.alloc(0);
}

export function isTag(value: Asn1 | undefined, type: forgeTypes.asn1.Type, tagClass = TagClass.UNIVERSAL): value is Asn1 {
  return value !== undefined && value.type === type && value.tagClass === tagClass;
}

/** A context-specific tag such as `[0]` or `[3]`, as used by EXPLICIT and IMPLICIT fields. */
export function isContextTag(value: Asn1 | undefined, tagNumber: number): value is Asn1 {
  return value !== undefined && value.tagClass === TagClass.CONTEXT_SPECIFIC && (value.type as number) === tagNumber;
}

export function oidOf(value: Asn1 | undefined): string | undefined {
  return isTag(value, Tag.OID) ? asn1.derToOid(forge.util.createBuffer(value.value as string)) : undefined;
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

/** Signs `data` and wraps it as `SEQUENCE { data, algorithm, BIT STRING signature }` (X.509 and PKCS#10 alike). */
export function signedStructure(toBeSigned: Asn1, privateKey: KeyObject): Buffer {
  const algorithm = signatureAlgorithmFor(privateKey);
  const signature = sign(algorithm.digest, toDer(toBeSigned), privateKey);
  return toDer(sequence([toBeSigned, algorithmIdentifier(algorithm), bitString(signature)]));
}
