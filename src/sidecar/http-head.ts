/**
 * Request heads for the byte-level paths (WebSocket upgrades, CONNECT): once the head is
 * written, the sidecar only splices bytes, so it writes the head itself from the raw headers
 * it received, keeping their order, case and repetitions (RFC 9110 §5.3).
 */

/** Connection-specific fields a proxy never forwards (RFC 9110 §7.6.1), except those an upgrade needs. */
const hopByHop = new Set(['keep-alive', 'proxy-connection', 'proxy-authorization', 'proxy-authenticate', 'te', 'trailer', 'transfer-encoding']);

export interface HeadChanges {
  /** Lower-case names to leave out (besides the hop-by-hop ones). */
  drop?: ReadonlySet<string>;
  /** Fields to set, replacing any that arrived with that name. */
  set?: Readonly<Record<string, string>>;
  /** Fields to add after the ones that arrived, keeping those. */
  add?: readonly (readonly [string, string])[];
}

/**
 * RFC 9112 §3.2: a request with more than one Host field is refused with 400. Node keeps the
 * first and drops the rest from `headers`, but the raw-head paths (upgrades, CONNECT) would
 * pass both on, and an app behind might read the other one.
 */
export function repeatsHost(rawHeaders: readonly string[]): boolean {
  let seen = false;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string;
    if (name.length === 4 && name.toLowerCase() === 'host') {
      if (seen) return true;
      seen = true;
    }
  }
  return false;
}

/** `rawHeaders` is Node's flat [name, value, name, value, …] list. */
export function requestHead(method: string, target: string, rawHeaders: readonly string[], changes: HeadChanges = {}): string {
  const set = changes.set ?? {};
  const replaced = new Set(Object.keys(set).map((name) => name.toLowerCase()));
  let head = `${method} ${target} HTTP/1.1\r\n`;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string;
    const lower = name.toLowerCase();
    if (hopByHop.has(lower) || replaced.has(lower) || changes.drop?.has(lower)) continue;
    head += `${name}: ${rawHeaders[i + 1] as string}\r\n`;
  }
  for (const [name, value] of Object.entries(set)) head += `${name}: ${value}\r\n`;
  for (const [name, value] of changes.add ?? []) head += `${name}: ${value}\r\n`;
  return `${head}\r\n`;
}

/** A short HTTP/1.1 response for a socket that has no ServerResponse (upgrade and CONNECT paths). */
export function errorResponse(status: number, reason: string, code: string, message: string, headers: Readonly<Record<string, string>> = {}): string {
  const body = JSON.stringify({ error: { code, message } });
  const extra = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join('');
  return `HTTP/1.1 ${status} ${reason}\r\n${extra}content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nx-isthmus-error: ${code}\r\nconnection: close\r\n\r\n${body}`;
}
