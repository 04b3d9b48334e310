import type { IncomingHttpHeaders } from 'node:http';

/**
 * RFC 9110 §7.6.1: connection-specific fields are never forwarded by a proxy. Others are so when
 * a Connection field names them (nominatedFields), as an h2c upgrade names its HTTP2-Settings
 * (RFC 7540 §3.2.1; h1-server.ts onlyH2c).
 */
export const hopByHop = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'proxy-authenticate', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

// RFC 9110 §5.1 and §5.5: a field name is a token; a value has no CR, LF or NUL (which would end
// the line early and let the rest be read as another field).
export const invalidFieldName = /[^!#$%&'*+\-.^_`|~0-9A-Za-z]/;
export const invalidFieldValue = /[\r\n\0]/;

/** The end-to-end headers of a request or response, minus any name in `drop` and any its Connection field nominates. */
export function forwardableHeaders(headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>, drop?: string): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  const nominated = nominatedFields(undefined, headers.connection);
  // for-in, not Object.entries: no array of pairs per request (this runs twice per hop).
  for (const name in headers) {
    const value = headers[name];
    if (value !== undefined && !hopByHop.has(name) && name !== drop && nominated?.has(name) !== true) out[name] = value;
  }
  return out;
}

/**
 * RFC 9110 §7.6.1: each option of a Connection field names a field that belongs to this
 * connection only, which a proxy removes before it forwards the message. Adds the names
 * `value` nominates (lower-cased) to `found`, beyond those dropped anyway (`hopByHop`, `close`);
 * `keep-alive`, `close` and `upgrade` alone cost one test. A nomination of `host` or
 * `content-length` is not honoured: a caller must not be able to take a message's target or
 * framing away on the way (the proxy sets the first and relays the second).
 */
export function nominatedFields(found: Set<string> | undefined, value: string | string[] | undefined): Set<string> | undefined {
  if (value === undefined) return found;
  let names = found;
  for (const item of typeof value === 'string' ? [value] : value) {
    if (usualConnection.test(item)) continue;
    for (const token of item.split(',')) {
      const name = token.trim().toLowerCase();
      if (name === '' || name === 'close' || name === 'host' || name === 'content-length' || hopByHop.has(name)) continue;
      (names ??= new Set()).add(name);
    }
  }
  return names;
}
const usualConnection = /^\s*(?:keep-alive|close|upgrade)\s*$/i;

/**
 * `fields` (names and values alternating) without their Connection fields and the fields those
 * nominate (nominatedFields), names kept in their case; undefined when they nominate none.
 */
export function withoutNominated(fields: readonly string[]): string[] | undefined {
  let nominated: Set<string> | undefined;
  for (let i = 0; i < fields.length; i += 2) {
    if (isField(fields[i] as string, 'connection')) nominated = nominatedFields(nominated, fields[i + 1] as string);
  }
  if (nominated === undefined) return undefined;
  nominated.add('connection');
  const kept: string[] = [];
  for (let i = 0; i < fields.length; i += 2) {
    if (!nominated.has((fields[i] as string).toLowerCase())) kept.push(fields[i] as string, fields[i + 1] as string);
  }
  return kept;
}

/**
 * Whether a field name, in any case, is connection-specific (`hopByHop`). Only names of those
 * lengths are lower-cased to look: a head's other fields cost a length check each.
 */
export function isHopByHop(name: string): boolean {
  const n = name.length;
  return (n === 2 || n === 7 || n === 10 || n === 16 || n === 17 || n === 18 || n === 19) && hopByHop.has(name.toLowerCase());
}

/**
 * A head's fields as the parser gives them (names and values alternating) as one object: names
 * lower-cased, a repeated field's values in an array in the order they came (undici's way).
 */
export function fieldsObject(fields: readonly string[]): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = {};
  for (let i = 0; i < fields.length; i += 2) {
    const name = (fields[i] as string).toLowerCase();
    const value = fields[i + 1] as string;
    const seen = headers[name];
    if (seen === undefined) headers[name] = value;
    else if (typeof seen === 'string') headers[name] = [seen, value];
    else seen.push(value);
  }
  return headers;
}

/**
 * A request head's end-to-end fields as they arrived (names and values alternating), for an
 * HTTP/1.1 hop to write on as they are (h1-connection.ts H1DispatchOptions): without the
 * hop-by-hop ones, those the Connection field nominates (nominatedFields) and the names in `drop`
 * (lower-case; matched in any case), in their order and
 * case, repeated fields as they came, after what `out` holds already. Fields llhttp parsed need
 * no further check.
 */
export function forwardableFields(raw: readonly string[], drop: readonly string[], out: string[] = []): string[] {
  const start = out.length;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    if (isHopByHop(name)) {
      // A Connection field that names fields of its own (rare): the head again without them, from the start.
      const plain = name.length === 10 && isField(name, 'connection') ? withoutNominated(raw) : undefined;
      if (plain !== undefined) {
        out.length = start;
        return forwardableFields(plain, drop, out);
      }
      continue;
    }
    if (namedIn(name, drop)) continue;
    out.push(name, raw[i + 1] as string);
  }
  return out;
}

/** Whether a field name as it arrived, in any case, is `lower`: its length first, so most names are never lower-cased. */
export function isField(name: string, lower: string): boolean {
  return name.length === lower.length && name.toLowerCase() === lower;
}

function namedIn(name: string, names: readonly string[]): boolean {
  for (const lower of names) if (isField(name, lower)) return true;
  return false;
}
