/**
 * Which header blocks HTTP/2 allows (RFC 9113 §8.2 and §8.3): a block that breaks these rules
 * is malformed, a stream error of type PROTOCOL_ERROR (§8.1.1), and a relay must not pass it
 * on, since the next hop (or an HTTP/1.1 app behind it) could read it another way. Pure: a
 * decoded block in, the reason it is malformed (or undefined) out.
 */

export type BlockKind = 'request' | 'response' | 'trailers';

/** Fields that belong to one HTTP/1.1 connection and have no place in HTTP/2 (§8.2.2). */
const connectionSpecific = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']);

/** Extended CONNECT's :protocol (RFC 8441) is not among them: this side never enables it. */
const requestPseudo = new Set([':method', ':scheme', ':authority', ':path']);

/** A field name's octets: a token (RFC 9110 §5.6.2) in lower case (§8.2.1). */
const nameOctet = (() => {
  const ok = new Uint8Array(256);
  for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz") ok[c.charCodeAt(0)] = 1;
  return ok;
})();

function badName(name: string): string | undefined {
  if (name.length === 0) return 'an empty field name';
  const start = name.charCodeAt(0) === 0x3a ? 1 : 0;
  if (start === 1 && name.length === 1) return 'a field name of only ":"';
  for (let i = start; i < name.length; i += 1) {
    const c = name.charCodeAt(i);
    if (c > 0xff || nameOctet[c] === 0) return `the field name ${JSON.stringify(name)} has ${c >= 0x41 && c <= 0x5a ? 'upper case' : 'a character a token cannot have'}`;
  }
  return undefined;
}

/** §8.2.1: no NUL, CR or LF anywhere, no space or tab at either end. */
function badValue(value: string): boolean {
  if (value.length === 0) return false;
  const first = value.charCodeAt(0);
  const last = value.charCodeAt(value.length - 1);
  if (first === 0x20 || first === 0x09 || last === 0x20 || last === 0x09) return true;
  for (let i = 0; i < value.length; i += 1) {
    const c = value.charCodeAt(i);
    if (c === 0 || c === 0x0a || c === 0x0d) return true;
  }
  return false;
}

/** What a valid block says that the stream needs: the length its DATA must add up to, or -1. */
export interface BlockFacts {
  contentLength: number;
}

/** Why `fields` (name, value, ...) is malformed as a block of `kind`, or its facts. */
export function checkBlock(fields: readonly string[], kind: BlockKind): string | BlockFacts {
  let regularSeen = false;
  // The pseudo-headers seen, one variable each (a Map here was an allocation per block).
  let method: string | undefined;
  let scheme: string | undefined;
  let authority: string | undefined;
  let path: string | undefined;
  let status: string | undefined;
  let contentLength = -1;
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i]!;
    const value = fields[i + 1]!;
    const nameProblem = badName(name);
    if (nameProblem) return nameProblem;
    if (badValue(value)) return `the value of ${name} has a NUL, CR or LF, or white space at an end`;
    if (name.charCodeAt(0) === 0x3a) {
      if (kind === 'trailers') return `a pseudo-header (${name}) in trailers`;
      if (regularSeen) return `the pseudo-header ${name} after a regular field`;
      if (kind === 'request' ? !requestPseudo.has(name) : name !== ':status') return `the pseudo-header ${name} in a ${kind}`;
      let first = true;
      switch (name) {
        case ':method': first = method === undefined; method = value; break;
        case ':scheme': first = scheme === undefined; scheme = value; break;
        case ':authority': first = authority === undefined; authority = value; break;
        case ':path': first = path === undefined; path = value; break;
        default: first = status === undefined; status = value;
      }
      if (!first) return `two ${name} pseudo-headers`;
      continue;
    }
    regularSeen = true;
    if (connectionSpecific.has(name)) return `the connection-specific field ${name}`;
    if (name === 'te' && value !== 'trailers') return `te: ${value} (only "trailers" is allowed)`;
    if (name === 'content-length' && kind !== 'trailers') {
      if (!/^\d{1,15}$/.test(value)) return `content-length: ${value} is not a length`;
      const length = Number(value);
      if (contentLength >= 0 && contentLength !== length) return 'two different content-lengths';
      contentLength = length;
    }
  }
  if (kind === 'request') {
    if (!method) return 'a request without :method';
    if (method === 'CONNECT') {
      if (!authority) return 'a CONNECT request without :authority';
      if (scheme !== undefined || path !== undefined) return 'a CONNECT request with :scheme or :path';
    } else {
      if (!scheme) return 'a request without :scheme';
      if (!path) return 'a request without :path, or an empty one';
      if (path.charCodeAt(0) !== 0x2f && !(path === '*' && method === 'OPTIONS')) return `the :path ${JSON.stringify(path)} neither starts with "/" nor is "*" for OPTIONS`;
    }
  } else if (kind === 'response') {
    if (!status || !/^[1-9]\d\d$/.test(status)) return `a response whose :status is ${status === undefined ? 'missing' : JSON.stringify(status)}`;
  }
  return { contentLength };
}
