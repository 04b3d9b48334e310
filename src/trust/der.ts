/**
 * The ASN.1 toolkit the certificate builder and CSR reader share: node-forge's DER encoder and
 * decoder, the handful of OIDs we emit, PEM framing, and signing with Node's crypto.
 *
 * Private keys never enter forge. forge encodes the structures; OpenSSL (through node:crypto)
 * holds the keys and makes every signature, so a CA key gets OpenSSL's constant-time, blinded
 * RSA instead of forge's pure-JS bignums, and EC keys work where forge's pki layer has none.
 */
import type { KeyObject } from 'node:crypto';
import type forgeTypes from 'node-forge';
import 'node-forge/lib/asn1.js';
import forgeNamespace from 'node-forge/lib/forge.js';
import { derAlgorithmIdentifier, signedDer, type SignatureAlgorithm } from './pkix.js';

export { pemBlocks, signatureAlgorithmFor, signatureAlgorithms, toPem, type SignatureAlgorithm } from './pkix.js';

// Only forge's ASN.1 codec and the byte buffer it uses (lib/asn1 loads lib/util), not its index:
// that would bring its ciphers, TLS, PKI and bignums into every process that issues a certificate
// (each gateway, for its own) for nothing. lib/forge is the namespace object these modules fill
// in; nothing else in Isthmus imports node-forge.
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

/** An AlgorithmIdentifier as a tree, for structures built here (a certificate's own copy of its signature algorithm). */
export function algorithmIdentifier(algorithm: SignatureAlgorithm): Asn1 {
  return fromDer(derAlgorithmIdentifier(algorithm));
}

/** A UTCTime's text (YYMMDDHHMMSSZ) for `date`, in the binary string forge's trees hold. */
export const utcTime = (date: Date): string => asn1.dateToUtcTime(date);
/** A GeneralizedTime's text (YYYYMMDDHHMMSSZ) for `date`. */
export const generalizedTime = (date: Date): string => asn1.dateToGeneralizedTime(date);

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

/** Signs `data` and wraps it as `SEQUENCE { data, algorithm, BIT STRING signature }` (X.509 and PKCS#10 alike). */
export function signedStructure(toBeSigned: Asn1, privateKey: KeyObject): Buffer {
  return signedDer(toDer(toBeSigned), privateKey);
}
