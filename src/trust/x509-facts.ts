/**
 * Reading facts out of a parsed certificate with Node's X509Certificate only (docs/trust.md: peer
 * chains are verified with Node's crypto, never with forge). Two facts Node does not expose,
 * basicConstraints' pathLen and the raw extension, are read here with a twenty-line DER walk
 * over `x509.raw`, so this file and verify.ts stay free of forge.
 */
import type { X509Certificate } from 'node:crypto';

/** Node 20 prints dates as "Jan  2 03:04:05 2026 GMT"; newer Nodes also offer a Date. */
function parseCertDate(text: string, date: Date | undefined): Date {
  const parsed = date ?? new Date(text);
  if (Number.isNaN(parsed.getTime())) throw new Error(`unreadable certificate date ${JSON.stringify(text)}`);
  return parsed;
}

type WithDates = X509Certificate & { validFromDate?: Date; validToDate?: Date };

export function notBeforeOf(cert: X509Certificate): Date {
  return parseCertDate(cert.validFrom, (cert as WithDates).validFromDate);
}

export function notAfterOf(cert: X509Certificate): Date {
  return parseCertDate(cert.validTo, (cert as WithDates).validToDate);
}

export interface AltNames {
  uris: string[];
  dnsNames: string[];
  ipAddresses: string[];
}

/**
 * Splits Node's subjectAltName text ("URI:spiffe://a/b, DNS:x, IP Address:1.2.3.4"). Since the
 * fix for CVE-2021-44532 Node JSON-quotes any value that contains a separator, so a name
 * crafted as `spiffe://a/b, URI:spiffe://c` arrives as one quoted value and cannot smuggle in
 * a second identity. We honour the quotes instead of splitting on ", ".
 */
export function altNamesOf(cert: X509Certificate): AltNames {
  return altNamesFromText(cert.subjectAltName ?? '');
}

/**
 * The same, from the text itself: what `tls` gives for a peer (`PeerCertificate.subjectaltname`).
 * This is the one SAN reader of the code base; never split that text on ", " yourself.
 */
export function altNamesFromText(text: string): AltNames {
  const names: AltNames = { uris: [], dnsNames: [], ipAddresses: [] };
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(':', i);
    if (colon === -1) break;
    const kind = text.slice(i, colon);
    let value: string;
    let end: number;
    if (text[colon + 1] === '"') {
      end = colon + 2;
      while (end < text.length && text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
      const quoted = text.slice(colon + 1, end + 1);
      // Node always closes its quotes; text that does not is kept raw, and a value starting with
      // '"' is no SPIFFE ID, so broken quoting can only lose an identity, never make one.
      value = jsonString(quoted) ?? quoted;
      end += 1;
    } else {
      end = text.indexOf(', ', colon);
      if (end === -1) end = text.length;
      value = text.slice(colon + 1, end);
    }
    if (kind === 'URI') names.uris.push(value);
    else if (kind === 'DNS') names.dnsNames.push(value);
    else if (kind === 'IP Address') names.ipAddresses.push(value);
    i = end + 2;
  }
  return names;
}

function jsonString(quoted: string): string | undefined {
  try {
    const value: unknown = JSON.parse(quoted);
    return typeof value === 'string' ? value : undefined;
  } catch {
    return undefined;
  }
}

/** Every spiffe:// URI SAN; an X509-SVID carries exactly one (SPIFFE X509-SVID.md §2). */
export function spiffeIdsOf(cert: X509Certificate): string[] {
  return altNamesOf(cert).uris.filter((uri) => uri.startsWith('spiffe://'));
}

/**
 * The trust domain a root CA vouches for: its one URI SAN, which must be the bare trust-domain ID
 * `spiffe://<td>`. Undefined for a root with no URI SAN, several, or any other kind: such a root
 * vouches for no SPIFFE identity at all (docs/trust.md).
 */
export function rootTrustDomainOf(uris: readonly string[]): string | undefined {
  if (uris.length !== 1) return undefined;
  const m = /^spiffe:\/\/([^/]+)$/.exec(uris[0] as string);
  return m?.[1];
}

interface Tlv {
  tag: number;
  contentStart: number;
  end: number;
}

function readTlv(der: Buffer, offset: number, limit: number): Tlv {
  const tag = der[offset];
  let length = der[offset + 1];
  if (tag === undefined || length === undefined) throw new Error('truncated DER');
  let contentStart = offset + 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    if (count === 0 || count > 4) throw new Error('unsupported DER length');
    length = 0;
    for (let k = 0; k < count; k++) length = length * 256 + (der[contentStart + k] ?? 0);
    contentStart += count;
  }
  const end = contentStart + length;
  if (end > limit) throw new Error('DER length runs past its container');
  return { tag, contentStart, end };
}

function childrenOf(der: Buffer, parent: Tlv): Tlv[] {
  const items: Tlv[] = [];
  for (let at = parent.contentStart; at < parent.end; ) {
    const item = readTlv(der, at, parent.end);
    items.push(item);
    at = item.end;
  }
  return items;
}

const basicConstraintsOid = Buffer.from([0x55, 0x1d, 0x13]); // 2.5.29.19
const keyUsageOid = Buffer.from([0x55, 0x1d, 0x0f]); // 2.5.29.15
const extKeyUsageOid = Buffer.from([0x55, 0x1d, 0x25]); // 2.5.29.37

/** The DER inside an extension's OCTET STRING, or undefined when the certificate lacks it. */
function extensionValue(cert: X509Certificate, oid: Buffer): { der: Buffer; value: Tlv } | undefined {
  const der = cert.raw;
  const certificate = readTlv(der, 0, der.length);
  const tbs = childrenOf(der, certificate)[0];
  if (!tbs) return undefined;
  const extensionsWrapper = childrenOf(der, tbs).find((item) => item.tag === 0xa3);
  const extensionList = extensionsWrapper && childrenOf(der, extensionsWrapper)[0];
  if (!extensionList) return undefined;
  for (const extension of childrenOf(der, extensionList)) {
    const parts = childrenOf(der, extension);
    const id = parts[0];
    const value = parts[parts.length - 1];
    if (id && value && der.subarray(id.contentStart, id.end).equals(oid)) {
      return { der, value: readTlv(der, value.contentStart, value.end) };
    }
  }
  return undefined;
}

export interface BasicConstraints {
  ca: boolean;
  pathLen?: number;
}

/** The basicConstraints extension (RFC 5280 §4.2.1.9), or undefined when the certificate has none. */
export function basicConstraintsOf(cert: X509Certificate): BasicConstraints | undefined {
  const found = extensionValue(cert, basicConstraintsOid);
  if (!found) return undefined;
  const { der, value } = found;
  const result: BasicConstraints = { ca: false };
  for (const field of childrenOf(der, value)) {
    if (field.tag === 0x01) result.ca = der[field.contentStart] !== 0;
    if (field.tag === 0x02) result.pathLen = der.subarray(field.contentStart, field.end).readUIntBE(0, Math.min(6, field.end - field.contentStart));
  }
  return result;
}

export const keyUsageBits = { digitalSignature: 0, keyEncipherment: 2, keyAgreement: 4, keyCertSign: 5, cRLSign: 6 } as const;

/** The keyUsage bits set (RFC 5280 §4.2.1.3, bit 0 = digitalSignature), or undefined without the extension. */
export function keyUsageOf(cert: X509Certificate): Set<number> | undefined {
  const found = extensionValue(cert, keyUsageOid);
  if (!found || found.value.tag !== 0x03) return undefined;
  const bits = new Set<number>();
  // Skip the leading "unused bits" byte of the BIT STRING.
  found.der.subarray(found.value.contentStart + 1, found.value.end).forEach((byte, index) => {
    for (let bit = 0; bit < 8; bit++) if (byte & (0x80 >> bit)) bits.add(index * 8 + bit);
  });
  return bits;
}

/** How a message names a certificate: its identity if it has one, else its subject, plus its serial. */
export function describeCertificate(cert: X509Certificate): string {
  const ids = spiffeIdsOf(cert);
  const name = ids.length === 1 ? ids[0] : `"${cert.subject.replace(/\n/g, ', ')}"`;
  return `${name} (serial ${cert.serialNumber})`;
}

/** id-kp-serverAuth and id-kp-clientAuth (RFC 5280 §4.2.1.12): what a mesh leaf is used for, both ways. */
export const meshKeyPurposes = ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2'] as const;

/** The extendedKeyUsage purposes as dotted OIDs (RFC 5280 §4.2.1.12), or undefined without the extension. */
export function extKeyUsageOf(cert: X509Certificate): string[] | undefined {
  const found = extensionValue(cert, extKeyUsageOid);
  if (!found || found.value.tag !== 0x30) return undefined;
  return childrenOf(found.der, found.value).filter((item) => item.tag === 0x06).map((item) => dottedOid(found.der.subarray(item.contentStart, item.end)));
}

/** X.690 §8.19: the first byte holds the first two arcs, the rest are base-128 with a continuation bit. */
function dottedOid(bytes: Buffer): string {
  const first = bytes[0] ?? 0;
  const arcs = [Math.min(2, Math.floor(first / 40)), first - Math.min(2, Math.floor(first / 40)) * 40];
  let value = 0;
  for (const byte of bytes.subarray(1)) {
    value = value * 128 + (byte & 0x7f);
    if (!(byte & 0x80)) {
      arcs.push(value);
      value = 0;
    }
  }
  return arcs.join('.');
}
