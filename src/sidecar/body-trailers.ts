import type { Readable } from 'node:stream';
import { hopByHop, invalidFieldName, invalidFieldValue } from './headers.js';
import { traceHeader } from './trace.js';

/**
 * A request body's trailer fields (RFC 9110 §6.5), carried on the body's own stream from where
 * they were read to where the body is written out. The readers set them before they push the
 * body's end: h1-server.ts on the H1RequestBody, inbound-h2.ts on the stream it hands an
 * HTTP/1.1 app's pool, request-body.ts on each attempt's stream. The writers read them when the
 * body ends: h1-connection.ts after the last chunk, h2-dispatch.ts as a closing HEADERS frame.
 *
 * A symbol-keyed property rather than a wrapper or an event: a body with no trailers (nearly
 * every one) carries nothing, and its writer pays one property read at its end.
 */
const trailersKey = Symbol('isthmus.body-trailers');

export type TrailerFields = Readonly<Record<string, string | string[] | undefined>>;

type Carrier = { [trailersKey]?: TrailerFields };

/** The trailers `body` ended with, if it had any. */
export function bodyTrailers(body: Readable): TrailerFields | undefined {
  return (body as Carrier)[trailersKey];
}

/** Gives `body` its trailers; call before its end is pushed, so that its reader finds them at 'end'. */
export function setBodyTrailers(body: Readable, trailers: TrailerFields): void {
  (body as Carrier)[trailersKey] = trailers;
}

/** Hands `from`'s trailers, if any, to `to`, a stream of the same body (a retry's attempt). */
export function passTrailers(from: Readable, to: object): void {
  const trailers = (from as Carrier)[trailersKey];
  if (trailers !== undefined) (to as Carrier)[trailersKey] = trailers;
}

/**
 * Fields a sender must not put in trailers, on top of the hop-by-hop ones (headers.ts, which
 * include `te`, `trailer` and `transfer-encoding`): RFC 9110 §6.5.1 names those whose meaning
 * is needed before the content is read: framing, routing, request modifiers, authentication,
 * response controls and how to read the content. An app that folded one of them into the head
 * after the body (§6.5.2 allows that only where a field's definition says so; not every server
 * is that careful) would act on a field no proxy checked. `x-forwarded-client-cert` is the
 * inbound's to set from the caller's certificate, and the trace header asks the destination for
 * a report (docs/trace.md): neither may come from a caller.
 */
const forbiddenInTrailers = new Set([
  'content-length', 'host', 'content-encoding', 'content-type', 'content-range',
  'expect', 'max-forwards', 'range', 'if-match', 'if-none-match', 'if-modified-since', 'if-unmodified-since', 'if-range',
  'authorization', 'www-authenticate', 'cookie', 'set-cookie',
  'age', 'cache-control', 'expires', 'date', 'location', 'retry-after', 'vary', 'warning', 'pragma',
  'x-forwarded-client-cert', traceHeader,
]);

/**
 * The trailer fields that go on to the next hop, names lower-cased, or undefined when none
 * does. Dropped: the forbidden ones above, and any whose name is not a token or whose value
 * holds a CR, LF or NUL (the rule h1-connection.ts applies to heads). A head that breaks it
 * fails its request; a trailer that does is dropped alone, since the body before it has been
 * sent already and is whole.
 */
export function forwardableTrailers(trailers: TrailerFields | undefined): Record<string, string | string[]> | undefined {
  if (trailers === undefined) return undefined;
  let out: Record<string, string | string[]> | undefined;
  for (const field in trailers) {
    const value = trailers[field];
    if (value === undefined || field.length === 0 || invalidFieldName.test(field)) continue;
    const name = field.toLowerCase();
    if (hopByHop.has(name) || forbiddenInTrailers.has(name)) continue;
    if (typeof value === 'string' ? invalidFieldValue.test(value) : value.some((v) => invalidFieldValue.test(v))) continue;
    (out ??= {})[name] = value;
  }
  return out;
}

/** The end of a chunked body with these trailers (RFC 9112 §7.1.2): the last chunk, the fields, the closing CRLF. */
export function lastChunkWith(trailers: Readonly<Record<string, string | string[]>>): Buffer {
  let section = '0\r\n';
  for (const name in trailers) {
    const value = trailers[name]!;
    if (typeof value === 'string') section += `${name}: ${value}\r\n`;
    else for (const v of value) section += `${name}: ${v}\r\n`;
  }
  return Buffer.from(`${section}\r\n`, 'latin1');
}
