import type { IncomingHttpHeaders } from 'node:http';

/** RFC 9110 §7.6.1: connection-specific fields are never forwarded by a proxy. */
export const hopByHop = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'proxy-authenticate', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

// RFC 9110 §5.1 and §5.5: a field name is a token; a value has no CR, LF or NUL (which would end
// the line early and let the rest be read as another field).
export const invalidFieldName = /[^!#$%&'*+\-.^_`|~0-9A-Za-z]/;
export const invalidFieldValue = /[\r\n\0]/;

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
