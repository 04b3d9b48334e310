import type { IncomingHttpHeaders } from 'node:http';
import { forwardableHeaders, hopByHop } from './headers.js';

/**
 * How header fields cross between HTTP/2 and HTTP/1.1, and from one HTTP/2 hop to the next.
 * Pure: the tables in src/sidecar/h2-headers.test.ts.
 *
 * - Pseudo-headers (`:method`, `:scheme`, `:authority`, `:path`, `:status`) belong to one hop:
 *   they are read here and written again by the caller; never copied as fields.
 * - Connection-specific fields (RFC 9113 §8.2.2: connection, keep-alive, proxy-connection,
 *   transfer-encoding, upgrade) are never forwarded; Node refuses to send them on HTTP/2 anyway.
 * - `te` may only say `trailers` on HTTP/2 and gRPC servers require it: kept between HTTP/2 hops,
 *   dropped towards HTTP/1.1, where it is hop-by-hop (RFC 9110 §10.1.4).
 * - `host` does not exist on HTTP/2: it is `:authority` there (RFC 9113 §8.3.1).
 */
type Fields = IncomingHttpHeaders | Record<string, string | string[] | undefined>;

/** The fields of an HTTP/2 request or response that go on to the next HTTP/2 hop (no pseudo-headers), minus `drop`. */
export function h2ForwardFields(headers: Fields, drop?: string): Record<string, string | string[]> {
  // One pass, one object: it runs for every request and answer on an HTTP/2 hop, and a `delete`
  // would turn the object into a slow dictionary for the rest of its way.
  const out: Record<string, string | string[]> = {};
  for (const name in headers) {
    if (name.charCodeAt(0) === 58 /* ':' */ || name === 'host' || name === drop || hopByHop.has(name)) continue;
    const value = headers[name];
    if (value !== undefined) out[name] = value;
  }
  const te = headers.te;
  if (typeof te === 'string' && te.trim().toLowerCase() === 'trailers') out.te = 'trailers';
  return out;
}

export interface Http1Request {
  method: string;
  /** origin-form: `:path` as it came. */
  path: string;
  headers: Record<string, string | string[]>;
}

/** An HTTP/2 request as HTTP/1.1, for an app that speaks only that: `:authority` becomes `host`. */
export function h2RequestAsHttp1(headers: Fields, drop?: string): Http1Request {
  const fields = forwardableHeaders(withoutPseudo(headers), drop);
  const authority = headers[':authority'] ?? headers.host;
  if (typeof authority === 'string') fields.host = authority;
  return { method: String(headers[':method'] ?? 'GET'), path: String(headers[':path'] ?? '/'), headers: fields };
}

/** An HTTP/1.1 response head as an HTTP/2 one: `:status` and the end-to-end fields. */
export function http1ResponseAsH2(status: number, headers: Fields, drop?: string): Record<string, string | string[] | number> {
  const out: Record<string, string | string[] | number> = forwardableHeaders(headers, drop);
  // Node puts `host` on nothing it sends, but an app may: it is meaningless on an HTTP/2 response.
  delete out.host;
  out[':status'] = status;
  return out;
}

/** A response with no body whatever it says: answered with END_STREAM on its HEADERS frame (RFC 9110 §6.4.1). */
export function bodiless(method: string, status: number): boolean {
  return method === 'HEAD' || status === 204 || status === 205 || status === 304;
}

function withoutPseudo(headers: Fields): Record<string, string | string[] | undefined> {
  const out: Record<string, string | string[] | undefined> = {};
  for (const name in headers) if (name.charCodeAt(0) !== 58 /* ':' */) out[name] = headers[name];
  return out;
}
