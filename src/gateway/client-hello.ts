/**
 * Reads a TLS ClientHello without terminating TLS, so the east-west gateway can route a connection
 * by its SNI and pipe the very same bytes on. Pure: it takes every byte received so far and says
 * whether they hold a whole, well-formed ClientHello, need more bytes, or can never become one.
 *
 * Invariants: it never throws (every length field is checked against its container before use),
 * and it never asks for more than `maxClientHelloLength` handshake bytes spread over at most
 * `maxClientHelloRecords` records, so a gateway buffers at most ~17.3 KiB per connection before
 * it has a verdict.
 */
import { isIPv6 } from 'node:net'; // a pure string check; nothing here opens a socket

export const clientHelloRefusals = [
  'not-tls-handshake', // the first bytes are not a TLS handshake record (HTTP, SSH, SSLv2, noise)
  'record-too-large', // a record longer than 2^14 bytes (RFC 8446 §5.1)
  'empty-record', // a zero-length handshake fragment (RFC 8446 §5.1)
  'too-many-records', // the ClientHello is spread over more than maxClientHelloRecords records
  'not-client-hello', // the first handshake message is not a ClientHello (RFC 8446 §4)
  'client-hello-too-large', // the ClientHello claims more than maxClientHelloLength bytes
  'malformed-client-hello', // a fixed field or the extensions block does not fit the message
  'malformed-extension', // an extension overruns the block, or supported_versions is malformed
  'duplicate-extension', // one extension type twice (RFC 8446 §4.2)
  'malformed-sni', // server_name is not a ServerNameList of exactly one host_name (RFC 6066 §3)
  'sni-not-hostname', // the host_name is not a lower-caseable LDH name (RFC 6066 §3, RFC 1123 §2.1)
  'sni-ip-literal', // the host_name is an IPv4 or IPv6 literal (RFC 6066 §3 forbids them)
  'malformed-alpn', // application_layer_protocol_negotiation is malformed (RFC 7301 §3.1)
  'unsupported-version', // the client offers neither TLS 1.2 nor TLS 1.3 (RFC 8996)
] as const;

export type ClientHelloRefusal = (typeof clientHelloRefusals)[number];
export type TlsVersion = 'TLSv1' | 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3';

export type ClientHelloResult =
  | { kind: 'complete'; serverName: string | undefined; alpn: string[]; tlsVersions: TlsVersion[]; bytesNeeded: 0 }
  /** bytesNeeded: no verdict is possible before at least this many more bytes arrive. */
  | { kind: 'incomplete'; bytesNeeded: number }
  | { kind: 'invalid'; reason: ClientHelloRefusal; detail: string };

type Invalid = Extract<ClientHelloResult, { kind: 'invalid' }>;

/** Largest ClientHello body accepted: one full record's worth (RFC 8446 §5.1 caps a record at 2^14). */
export const maxClientHelloLength = 16_384;
/** Real clients use one record (two at most); 256 leaves room for odd middleboxes, not for drip-feeding. */
export const maxClientHelloRecords = 256;

const recordHeaderLength = 5;
const contentTypeHandshake = 22;
const handshakeTypeClientHello = 1;
const extensionServerName = 0;
const extensionAlpn = 16;
const extensionSupportedVersions = 43;
const tlsVersionNames = new Map<number, TlsVersion>([
  [0x0301, 'TLSv1'],
  [0x0302, 'TLSv1.1'],
  [0x0303, 'TLSv1.2'],
  [0x0304, 'TLSv1.3'],
]);

const invalid = (reason: ClientHelloRefusal, detail: string): Invalid => ({ kind: 'invalid', reason, detail });
const incomplete = (bytesNeeded: number): ClientHelloResult => ({ kind: 'incomplete', bytesNeeded });

export function parseClientHello(buffer: Buffer): ClientHelloResult {
  // RFC 8446 §5.1: a handshake message may be fragmented over several records; collect the
  // fragments until the handshake header (type, uint24 length; §4) and then the body are whole.
  const fragments: Buffer[] = [];
  let assembled = 0;
  let messageLength: number | undefined;
  for (let offset = 0, records = 0; ; records++) {
    if (records === maxClientHelloRecords) {
      return invalid('too-many-records', `the ClientHello is not complete after ${records} records`);
    }
    // TLSPlaintext { ContentType type; ProtocolVersion legacy_record_version; uint16 length; } (§5.1).
    // legacy_record_version is to be ignored, but its major byte is 3 in every TLS and SSLv3 record.
    const available = buffer.length - offset;
    if (available >= 1 && buffer[offset] !== contentTypeHandshake) {
      return invalid('not-tls-handshake', `record ${records} has content type ${buffer[offset]}, not handshake(22)`);
    }
    if (available >= 2 && buffer[offset + 1] !== 3) {
      return invalid('not-tls-handshake', `record ${records} has version major byte ${buffer[offset + 1]}, not 3`);
    }
    if (available < recordHeaderLength) return incomplete(available < 2 ? 1 : recordHeaderLength - available);
    const length = buffer.readUInt16BE(offset + 3);
    if (length > 16_384) return invalid('record-too-large', `record ${records} is ${length} bytes; 2^14 is the limit`);
    if (length === 0) return invalid('empty-record', `record ${records} is an empty handshake fragment`);

    const recordEnd = offset + recordHeaderLength + length;
    const fragment = buffer.subarray(offset + recordHeaderLength, Math.min(recordEnd, buffer.length));
    fragments.push(fragment);
    assembled += fragment.length;
    if (messageLength === undefined && assembled >= 1) {
      const header = Buffer.concat(fragments, Math.min(assembled, 4));
      if (header[0] !== handshakeTypeClientHello) {
        return invalid('not-client-hello', `the first handshake message has type ${header[0]}, not client_hello(1)`);
      }
      if (header.length === 4) {
        messageLength = header.readUIntBE(1, 3);
        if (messageLength > maxClientHelloLength) {
          return invalid('client-hello-too-large', `the ClientHello claims ${messageLength} bytes; ${maxClientHelloLength} is the limit`);
        }
      }
    }
    if (messageLength !== undefined && assembled >= 4 + messageLength) {
      // Bytes after the ClientHello (rest of its record, later records) belong to the peer, not to us.
      return readClientHello(Buffer.concat(fragments, 4 + messageLength).subarray(4));
    }
    if (recordEnd > buffer.length) {
      // The next verdict comes when the handshake type, header or body is whole, or else at the
      // first byte of the next record header.
      const target = messageLength === undefined ? (assembled === 0 ? 1 : 4) : 4 + messageLength;
      const restOfRecord = recordEnd - buffer.length;
      return incomplete(target - assembled <= restOfRecord ? target - assembled : restOfRecord + 1);
    }
    offset = recordEnd;
  }
}

/** A bounds-checked cursor over one TLS vector (RFC 8446 §3.4); reads past its end give undefined. */
class Cursor {
  #offset = 0;
  constructor(readonly bytes: Buffer) {}
  get remaining(): number {
    return this.bytes.length - this.#offset;
  }
  uint(width: 1 | 2): number | undefined {
    if (this.remaining < width) return undefined;
    const value = this.bytes.readUIntBE(this.#offset, width);
    this.#offset += width;
    return value;
  }
  take(length: number): Buffer | undefined {
    if (length > this.remaining) return undefined;
    this.#offset += length;
    return this.bytes.subarray(this.#offset - length, this.#offset);
  }
  /** A vector with a `width`-byte length prefix, or undefined if it overruns this cursor. */
  vector(width: 1 | 2): Cursor | undefined {
    const length = this.uint(width);
    const body = length === undefined ? undefined : this.take(length);
    return body === undefined ? undefined : new Cursor(body);
  }
}

/** RFC 8446 §4.1.2 (and RFC 5246 §7.4.1.2, where the extensions block may be absent). */
function readClientHello(body: Buffer): ClientHelloResult {
  const hello = new Cursor(body);
  const legacyVersion = hello.uint(2);
  if (legacyVersion === undefined || hello.take(32) === undefined) return invalid('malformed-client-hello', 'version or random is cut short');
  const sessionId = hello.vector(1); // legacy_session_id<0..32>
  if (sessionId === undefined || sessionId.remaining > 32) return invalid('malformed-client-hello', 'legacy_session_id overruns or exceeds 32 bytes');
  const cipherSuites = hello.vector(2); // cipher_suites<2..2^16-2>
  if (cipherSuites === undefined || cipherSuites.remaining < 2 || cipherSuites.remaining % 2 !== 0) {
    return invalid('malformed-client-hello', 'cipher_suites overruns, is empty or has an odd length');
  }
  const compression = hello.vector(1); // legacy_compression_methods<1..2^8-1>
  if (compression === undefined || compression.remaining < 1) return invalid('malformed-client-hello', 'legacy_compression_methods overruns or is empty');
  const extensions = hello.remaining === 0 ? new Cursor(Buffer.alloc(0)) : hello.vector(2);
  if (extensions === undefined || hello.remaining !== 0) {
    return invalid('malformed-client-hello', 'the extensions block does not end where the ClientHello ends');
  }

  let serverName: string | undefined;
  let alpn: string[] = [];
  let offeredVersions = [legacyVersion];
  const seen = new Set<number>();
  while (extensions.remaining > 0) {
    const type = extensions.uint(2);
    const data = extensions.vector(2);
    if (type === undefined || data === undefined) return invalid('malformed-extension', 'an extension overruns the extensions block');
    if (seen.has(type)) return invalid('duplicate-extension', `extension ${type} appears more than once`);
    seen.add(type);
    if (type === extensionServerName) {
      const name = readServerName(data);
      if (typeof name !== 'string') return name;
      serverName = name;
    } else if (type === extensionAlpn) {
      const protocols = readAlpn(data);
      if (!Array.isArray(protocols)) return protocols;
      alpn = protocols;
    } else if (type === extensionSupportedVersions) {
      // RFC 8446 §4.2.1: ProtocolVersion versions<2..254>; when present it replaces legacy_version.
      const list = data.vector(1);
      if (list === undefined || data.remaining !== 0 || list.remaining < 2 || list.remaining % 2 !== 0) {
        return invalid('malformed-extension', 'supported_versions is not a list of 2-byte versions');
      }
      offeredVersions = [];
      for (let version = list.uint(2); version !== undefined; version = list.uint(2)) offeredVersions.push(version);
    }
  }
  // Unknown codes (GREASE, RFC 8701; drafts) are dropped; TLS 1.0/1.1 are deprecated by RFC 8996.
  const tlsVersions = offeredVersions.flatMap((code) => tlsVersionNames.get(code) ?? []);
  if (!tlsVersions.includes('TLSv1.2') && !tlsVersions.includes('TLSv1.3')) {
    return invalid('unsupported-version', `offered versions ${offeredVersions.map((v) => `0x${v.toString(16)}`).join(', ')} include neither TLS 1.2 nor 1.3`);
  }
  return { kind: 'complete', serverName, alpn, tlsVersions, bytesNeeded: 0 };
}

/** RFC 6066 §3: ServerNameList server_name_list<1..2^16-1>, each { NameType name_type; HostName name }. */
function readServerName(data: Cursor): string | Invalid {
  const list = data.vector(2);
  if (list === undefined || data.remaining !== 0 || list.remaining === 0) return invalid('malformed-sni', 'server_name_list overruns the extension or is empty');
  let hostName: Buffer | undefined;
  while (list.remaining > 0) {
    // Only host_name(0) is defined, and an unknown name type has no length we could skip by.
    const nameType = list.uint(1);
    if (nameType !== 0) return invalid('malformed-sni', `name_type ${nameType} is not host_name(0)`);
    const name = list.take(list.uint(2) ?? Infinity);
    if (name === undefined || name.length === 0) return invalid('malformed-sni', 'a host_name overruns the list or is empty');
    if (hostName !== undefined) return invalid('malformed-sni', 'more than one host_name');
    hostName = name;
  }
  return hostName === undefined ? invalid('malformed-sni', 'no host_name') : checkHostName(hostName);
}

/** RFC 6066 §3: ASCII, no trailing dot, no IP literals; labels follow RFC 1123 §2.1 (LDH, 1..63 bytes). */
function checkHostName(bytes: Buffer): string | Invalid {
  const name = bytes.toString('latin1').toLowerCase();
  const shown = JSON.stringify(name.length > 64 ? `${name.slice(0, 64)}…` : name);
  if (isIPv6(name.replace(/^\[(.*)\]$/, '$1'))) return invalid('sni-ip-literal', `SNI ${shown} is an IPv6 literal`);
  if (bytes.length > 253) return invalid('sni-not-hostname', `SNI is ${bytes.length} bytes; 253 is the limit`);
  if (!/^[a-z0-9.-]+$/.test(name)) return invalid('sni-not-hostname', `SNI ${shown} has bytes other than letters, digits, '-' and '.'`);
  const labels = name.split('.');
  if (!labels.every((label) => /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(label))) {
    return invalid('sni-not-hostname', `SNI ${shown} has an empty, over-long or hyphen-edged label`);
  }
  // A top-level label is never all digits (RFC 1123 §2.1), so one that is means an IPv4 literal.
  if (/^[0-9]+$/.test(labels[labels.length - 1] ?? '')) return invalid('sni-ip-literal', `SNI ${shown} is an IPv4 literal`);
  return name;
}

/** RFC 7301 §3.1: ProtocolNameList protocol_name_list<2..2^16-1>, each ProtocolName<1..2^8-1>. */
function readAlpn(data: Cursor): string[] | Invalid {
  const list = data.vector(2);
  if (list === undefined || data.remaining !== 0 || list.remaining < 2) return invalid('malformed-alpn', 'protocol_name_list overruns the extension or is empty');
  const protocols: string[] = [];
  while (list.remaining > 0) {
    const protocol = list.vector(1);
    if (protocol === undefined || protocol.remaining === 0) return invalid('malformed-alpn', 'a protocol name overruns the list or is empty');
    protocols.push(protocol.bytes.toString('latin1'));
  }
  return protocols;
}
