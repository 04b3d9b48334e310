import type { IncomingHttpHeaders } from 'node:http';

/** RFC 9110 §7.6.1: connection-specific fields are never forwarded by a proxy. */
export const hopByHop = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'proxy-authenticate', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

/** The end-to-end headers of a request or response, minus any name in `drop`. */
export function forwardableHeaders(headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>, drop?: string): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  // for-in, not Object.entries: no array of pairs per request (this runs twice per hop).
  for (const name in headers) {
    const value = headers[name];
    if (value !== undefined && !hopByHop.has(name) && name !== drop) out[name] = value;
  }
  return out;
}
