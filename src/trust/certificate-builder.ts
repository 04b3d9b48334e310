/**
 * Assembles X.509 v3 certificates (RFC 5280 §4.1) for the four profiles Isthmus issues: a root
 * CA, a cluster intermediate CA (pathLen 0), a leaf SVID (SPIFFE X509-SVID.md §3, §4) and an operator
 * leaf (clientAuth only).
 * Decisions about who may get what live in ca.ts; this file only encodes them faithfully.
 */
import { createHash, randomBytes, type KeyObject } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import { IsthmusError } from '../core/errors.js';
import {
  algorithmIdentifier,
  binary,
  children,
  explicit,
  fromDer,
  generalizedTime,
  implicitPrimitive,
  integerBytes,
  isContextTag,
  isTag,
  node,
  octets,
  oid,
  oidOf,
  oids,
  primitiveBytes,
  sequence,
  signatureAlgorithmFor,
  signedStructure,
  smallInteger,
  Tag,
  toDer,
  toPem,
  utcTime,
  type Asn1,
} from './der.js';

/** `operator`: a leaf for a person at the CLI, clientAuth only, so it can call but never serve (docs/trust.md). */
export type Profile = 'root' | 'intermediate' | 'leaf' | 'operator';

export interface NameAttribute {
  oid: string;
  value: string;
}

/** What signing needs to know about the issuer; for a root, the root itself. */
export interface Issuer {
  /** The issuer's subject Name exactly as encoded in its certificate, so chains match byte for byte. */
  nameDer: Buffer;
  keyId: Buffer;
  privateKey: KeyObject;
}

export interface CertificateSpec {
  profile: Profile;
  subject: readonly NameAttribute[];
  publicKey: KeyObject;
  issuer: Issuer;
  notBefore: Date;
  notAfter: Date;
  uris: readonly string[];
  dnsNames?: readonly string[];
  ipAddresses?: readonly string[];
}

/**
 * A fresh positive 128-bit serial. Serials are random rather than counted, so two CAs, or one
 * CA restored from a backup, never hand out the same one twice (odds of any collision stay
 * below 2^-60 after 2^32 certificates). The encoding is minimal DER: no leading zero byte unless
 * the top bit is set, and never a zero first byte, which -x509_strict verifiers reject.
 */
export function newSerialNumber(): Buffer {
  for (;;) {
    const serial = randomBytes(16);
    const first = serial[0] ?? 0;
    if (first === 0) continue;
    return first & 0x80 ? Buffer.concat([Buffer.from([0]), serial]) : serial;
  }
}

/** RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits. An identifier, not a security control. */
export function keyIdentifier(publicKey: KeyObject): Buffer {
  const spki = children(fromDer(publicKey.export({ type: 'spki', format: 'der' })));
  const keyBits = primitiveBytes(spki[1] ?? node(Tag.NULL, ''));
  return createHash('sha1').update(keyBits.subarray(1)).digest();
}

export function encodeName(attributes: readonly NameAttribute[]): Asn1 {
  // UTF8String throughout: PrintableString has no '_' and RFC 5280 §4.1.2.6 prefers UTF8String.
  return sequence(
    attributes.map((attribute) =>
      node(Tag.SET, [sequence([oid(attribute.oid), node(Tag.UTF8, binary(Buffer.from(attribute.value, 'utf8')))])]),
    ),
  );
}

/** The issuer facts that only the certificate's own bytes can give: its exact subject Name and key id. */
export function issuerFromCertificate(certDer: Buffer, privateKey: KeyObject, publicKey: KeyObject): Issuer {
  const tbs = children(children(fromDer(certDer))[0] ?? sequence([]));
  // The version field is [0] EXPLICIT and optional, so the subject moves by one without it.
  const offset = isContextTag(tbs[0], 0) ? 1 : 0;
  const subject = tbs[4 + offset];
  if (!subject || !isTag(subject, Tag.SEQUENCE)) {
    throw new IsthmusError('ISTHMUS_ERR_TRUST_CERT_INVALID', 'The issuer certificate has no subject name to chain to. Use a CA certificate made by `isthmus` or a standard CA tool.');
  }
  const extensions = tbs.find((item) => isContextTag(item, 3));
  let keyId: Buffer | undefined;
  for (const extension of children(children(extensions ?? sequence([]))[0] ?? sequence([]))) {
    const parts = children(extension);
    if (oidOf(parts[0]) === oids.subjectKeyIdentifier) {
      keyId = primitiveBytes(fromDer(primitiveBytes(parts[parts.length - 1] ?? node(Tag.NULL, ''))));
    }
  }
  // A CA made elsewhere may use another key-id method; reuse its own value so AKI matches SKI.
  return { nameDer: toDer(subject), keyId: keyId ?? keyIdentifier(publicKey), privateKey };
}

function time(date: Date): Asn1 {
  // RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050, whole seconds only.
  const whole = new Date(Math.floor(date.getTime() / 1000) * 1000);
  return whole.getUTCFullYear() < 2050
    ? node(Tag.UTCTIME, utcTime(whole))
    : node(Tag.GENERALIZEDTIME, generalizedTime(whole));
}

/** A DER NamedBitList: bit 0 is the high bit of the first byte and trailing zero bits are dropped. */
function namedBits(bits: readonly number[]): Asn1 {
  const length = Math.max(...bits) + 1;
  const value = Buffer.alloc(Math.ceil(length / 8));
  for (const bit of bits) value[bit >> 3] = (value[bit >> 3] ?? 0) | (0x80 >> (bit & 7));
  return node(Tag.BITSTRING, String.fromCharCode(value.length * 8 - length) + value.toString('binary'));
}

function extension(id: string, critical: boolean, value: Asn1): Asn1 {
  const parts = [oid(id)];
  if (critical) parts.push(node(Tag.BOOLEAN, '\xff'));
  parts.push(octets(toDer(value)));
  return sequence(parts);
}

export function ipAddressBytes(ip: string): Buffer {
  if (isIPv4(ip)) return Buffer.from(ip.split('.').map(Number));
  if (!isIPv6(ip) || ip.includes('%')) {
    throw new IsthmusError('ISTHMUS_ERR_TRUST_CERT_INVALID', `Cannot put ${JSON.stringify(ip)} in a certificate: it is not an IPv4 or IPv6 address (without a zone).`);
  }
  let text = ip;
  const tail = text.slice(text.lastIndexOf(':') + 1);
  if (isIPv4(tail)) {
    const [a = 0, b = 0, c = 0, d = 0] = tail.split('.').map(Number);
    text = `${text.slice(0, text.length - tail.length)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', rest] = text.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = rest === undefined || rest === '' ? [] : rest.split(':');
  const groups = rest === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return Buffer.from(groups.flatMap((group) => [parseInt(group, 16) >> 8, parseInt(group, 16) & 0xff]));
}

const dnsName = /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

function subjectAltNames(spec: CertificateSpec): Asn1 {
  const names: Asn1[] = spec.uris.map((uri) => implicitPrimitive(6, uri));
  for (const name of spec.dnsNames ?? []) {
    if (!dnsName.test(name) || name.length > 253) {
      throw new IsthmusError('ISTHMUS_ERR_TRUST_CERT_INVALID', `Cannot put DNS name ${JSON.stringify(name)} in a certificate: use a lower-case DNS name, optionally starting with "*.".`);
    }
    names.push(implicitPrimitive(2, name));
  }
  for (const ip of spec.ipAddresses ?? []) names.push(implicitPrimitive(7, ipAddressBytes(ip)));
  return sequence(names);
}

function extensionsFor(spec: CertificateSpec): Asn1[] {
  const isCa = spec.profile === 'root' || spec.profile === 'intermediate';
  const basic = !isCa ? [] : spec.profile === 'intermediate' ? [node(Tag.BOOLEAN, '\xff'), smallInteger(0)] : [node(Tag.BOOLEAN, '\xff')];
  // keyUsage bits (RFC 5280 §4.2.1.3): 0 digitalSignature, 2 keyEncipherment, 5 keyCertSign, 6 cRLSign.
  // RFC 8813 §3 forbids keyEncipherment on EC keys, which can only sign or agree on keys.
  const usage = isCa ? [5, 6] : spec.publicKey.asymmetricKeyType === 'rsa' ? [0, 2] : [0];
  const list = [
    extension(oids.basicConstraints, true, sequence(basic)),
    extension(oids.keyUsage, true, namedBits(usage)),
  ];
  if (spec.profile === 'leaf') list.push(extension(oids.extKeyUsage, false, sequence([oid(oids.serverAuth), oid(oids.clientAuth)])));
  if (spec.profile === 'operator') list.push(extension(oids.extKeyUsage, false, sequence([oid(oids.clientAuth)])));
  list.push(
    extension(oids.subjectKeyIdentifier, false, octets(keyIdentifier(spec.publicKey))),
    extension(oids.authorityKeyIdentifier, false, sequence([implicitPrimitive(0, spec.issuer.keyId)])),
  );
  // RFC 5280 §4.2.1.6: a subjectAltName extension holds at least one name, so none means no extension
  // (the etcd CA and etcd client certificates name their holder in the subject's CN only).
  const names = subjectAltNames(spec);
  if (children(names).length > 0) list.push(extension(oids.subjectAltName, false, names));
  return list;
}

/** Encodes and signs one certificate; returns its PEM. */
export function buildCertificate(spec: CertificateSpec): string {
  const tbs = sequence([
    explicit(0, [smallInteger(2)]),
    integerBytes(newSerialNumber()),
    algorithmIdentifier(signatureAlgorithmFor(spec.issuer.privateKey)),
    fromDer(spec.issuer.nameDer),
    sequence([time(spec.notBefore), time(spec.notAfter)]),
    encodeName(spec.subject),
    fromDer(spec.publicKey.export({ type: 'spki', format: 'der' })),
    explicit(3, [sequence(extensionsFor(spec))]),
  ]);
  return toPem('CERTIFICATE', signedStructure(tbs, spec.issuer.privateKey));
}
