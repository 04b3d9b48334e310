/**
 * When may a failed attempt be repeated on another endpoint? A pure table, so that every case
 * can be tested alone (src/sidecar/retry-policy.test.ts) and the traffic-policy layer can swap
 * the limits without touching the request path.
 *
 * - `connect`: the connection or its TLS handshake failed (refused, unreachable, connect timeout,
 *   a certificate or identity the catalog does not allow). Nothing reached the app: always safe.
 * - `reset`: the connection broke after the request may have been written and before a response
 *   head arrived. The app may have acted on it: only idempotent methods (RFC 9110 §9.2.2).
 * - `unprocessed`: an HTTP/2 destination said it did not process the stream: RST_STREAM with
 *   REFUSED_STREAM, or GOAWAY whose last-stream-id is below the stream (RFC 9113 §8.7: such a
 *   request "can be safely retried"), or the session was closing before the stream was sent.
 *   Nothing reached the app: any method. The same endpoint may serve the retry (a new stream
 *   there goes on a fresh session when the old one got GOAWAY).
 * - `timeout`: no response head in time. The app may still be working on it: never.
 * - `response`: a response head arrived (any status). It is the answer: never.
 * A body that is no longer kept in full (past the retry buffer) cannot be resent: never.
 */
export type FailureKind = 'connect' | 'unprocessed' | 'reset' | 'timeout' | 'response';

export interface RetryQuestion {
  failure: FailureKind;
  method: string;
  /** The request has no body, or every byte sent so far is still kept. */
  bodyReplayable: boolean;
  /** Attempts made so far, this one included. */
  attempts: number;
  maxAttempts: number;
}

const idempotentMethods = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

export function shouldRetry(q: RetryQuestion): boolean {
  if (q.attempts >= q.maxAttempts || !q.bodyReplayable) return false;
  switch (q.failure) {
    case 'connect': return true;
    case 'unprocessed': return true;
    case 'reset': return idempotentMethods.has(q.method);
    case 'timeout': return false;
    case 'response': return false;
  }
}

// undici and Node error codes raised before a request could have been written.
const connectCodes = new Set([
  'ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'ENOTFOUND',
  'UND_ERR_CONNECT_TIMEOUT', 'ERR_TLS_CERT_ALTNAME_INVALID', 'ERR_SSL_TLSV1_UNRECOGNIZED_NAME',
]);
// Raised when a stream could not even be opened (the session was closing or gone), and our own
// code for a stream the destination refused unprocessed (h2StreamUnprocessed).
const unprocessedCodes = new Set(['ERR_HTTP2_GOAWAY_SESSION', 'ERR_HTTP2_INVALID_SESSION', 'ISTHMUS_ERR_DATAPLANE_UPSTREAM_REFUSED']);
const timeoutCodes = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT']);

/** Which kind of failure an error from an upstream attempt is (decided on codes, never on messages). */
export function failureKind(err: unknown): FailureKind {
  const code = (err as { code?: unknown } | undefined)?.code;
  if (typeof code !== 'string') return 'reset';
  if (connectCodes.has(code) || code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_') || code === 'ISTHMUS_ERR_TRUST_IDENTITY_DENIED') return 'connect';
  if (unprocessedCodes.has(code)) return 'unprocessed';
  if (timeoutCodes.has(code)) return 'timeout';
  return 'reset';
}

/** After a failure of this kind, may the next attempt go to the endpoint that failed, when no other is left? */
export function mayRepeatEndpoint(failure: FailureKind): boolean {
  // A refused stream or a closing session says nothing about the endpoint's next stream.
  return failure === 'unprocessed';
}

/** RST_STREAM's REFUSED_STREAM error code (RFC 9113 §7). */
const refusedStream = 0x7;

export interface H2StreamEnd {
  /** The stream's RST_STREAM code as Node reports it (`rstCode`); undefined while it is open. */
  rstCode: number | undefined;
  /** The stream id, undefined when the stream was never sent. */
  streamId: number | undefined;
  /** The last-stream-id of a GOAWAY the session received, undefined without one. */
  goawayLastStreamId: number | undefined;
}

/**
 * Did an HTTP/2 stream that ended with no response head provably go unprocessed (RFC 9113 §8.7)?
 * Node reports a GOAWAY with an error code as a session error on every stream, so the
 * last-stream-id is compared here rather than trusting the stream's own code.
 */
export function h2StreamUnprocessed(end: H2StreamEnd): boolean {
  if (end.streamId === undefined) return true;
  if (end.rstCode === refusedStream) return true;
  return end.goawayLastStreamId !== undefined && end.streamId > end.goawayLastStreamId;
}
