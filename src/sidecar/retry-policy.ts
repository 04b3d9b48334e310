import type { RetryCondition } from '../model/resilience-policy.js';

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
 * - `overflow`: a circuit breaker refused it (model/circuit-breaker.ts). Nothing was sent, but
 *   sending it elsewhere would defeat the limit: never.
 * A body that is no longer kept in full (past the retry buffer) cannot be resent: never.
 *
 * A RetryPolicy (`conditions`, its `retryOn`) replaces the built-in choice of failures, as
 * Envoy's `retry_on` does: `connect-failure` retries connect failures and refused streams;
 * `reset` resets; `5xx` and `gateway-error` also connect failures, resets and timeouts (Envoy
 * counts those as 5xx), and answers 500–599 or 502–504; `retriable-4xx` a 409; the gRPC
 * conditions a gRPC answer whose grpc-status (in a trailers-only head) is that code, and
 * `deadline-exceeded` a gRPC attempt's timeout. What the app may have acted on (a reset, a
 * timeout, an HTTP answer) is still retried for idempotent methods only; a gRPC status is
 * retried whatever the method, because the service's owner declared it retriable by listing it.
 */
export type FailureKind = 'connect' | 'unprocessed' | 'reset' | 'timeout' | 'response' | 'overflow';

export interface RetryQuestion {
  failure: FailureKind;
  method: string;
  /** The request has no body, or every byte sent so far is still kept. */
  bodyReplayable: boolean;
  /** Attempts made so far, this one included. */
  attempts: number;
  maxAttempts: number;
  /** A RetryPolicy's retryOn; absent, the built-in table above. */
  conditions?: ReadonlySet<RetryCondition>;
  /** `response`: the answer's status, and its grpc-status when its head carries one. */
  status?: number;
  grpcStatus?: number;
  /** The request is gRPC (content-type application/grpc…). */
  grpc?: boolean;
}

const idempotentMethods = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

export function shouldRetry(q: RetryQuestion): boolean {
  if (q.attempts >= q.maxAttempts || !q.bodyReplayable) return false;
  if (q.conditions) return byConditions(q, q.conditions);
  switch (q.failure) {
    case 'connect': return true;
    case 'unprocessed': return true;
    case 'reset': return idempotentMethods.has(q.method);
    case 'timeout': return false;
    case 'response': return false;
    case 'overflow': return false;
  }
}

const grpcConditions: Readonly<Record<number, RetryCondition>> = { 1: 'cancelled', 4: 'deadline-exceeded', 8: 'resource-exhausted', 14: 'unavailable' };

function byConditions(q: RetryQuestion, c: ReadonlySet<RetryCondition>): boolean {
  const anyError = c.has('5xx') || c.has('gateway-error');
  const idempotent = idempotentMethods.has(q.method);
  switch (q.failure) {
    case 'connect':
    case 'unprocessed': return c.has('connect-failure') || anyError;
    case 'reset': return (c.has('reset') || anyError) && idempotent;
    case 'timeout': return (anyError && idempotent) || (q.grpc === true && c.has('deadline-exceeded'));
    case 'overflow': return false;
    case 'response': {
      if (q.grpc && q.grpcStatus !== undefined) {
        const condition = grpcConditions[q.grpcStatus];
        return condition !== undefined && c.has(condition);
      }
      const s = q.status ?? 0;
      if (!idempotent) return false;
      return (s >= 500 && s <= 599 && c.has('5xx')) || (s >= 502 && s <= 504 && c.has('gateway-error')) || (s === 409 && c.has('retriable-4xx'));
    }
  }
}

// undici and Node error codes raised before a request could have been written.
const connectCodes = new Set([
  'ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'ENOTFOUND',
  'UND_ERR_CONNECT_TIMEOUT', 'ERR_TLS_CERT_ALTNAME_INVALID', 'ERR_SSL_TLSV1_UNRECOGNIZED_NAME',
]);
/** What a relay rejects with when it held back an answer that will be retried (attempts.ts). */
export const retriedAnswerCode = 'ISTHMUS_RETRIED_ANSWER';

// Our code for a stream the destination refused unprocessed, or that its connection could not
// even open (h2-stream-relay.ts, from what src/h2/connection.ts reports).
const unprocessedCodes = new Set(['ISTHMUS_ERR_DATAPLANE_UPSTREAM_REFUSED']);
const timeoutCodes = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT']);

/** Which kind of failure an error from an upstream attempt is (decided on codes, never on messages). */
export function failureKind(err: unknown): FailureKind {
  const code = (err as { code?: unknown } | undefined)?.code;
  if (typeof code !== 'string') return 'reset';
  if (connectCodes.has(code) || code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_') || code === 'ISTHMUS_ERR_TRUST_IDENTITY_DENIED') return 'connect';
  if (unprocessedCodes.has(code)) return 'unprocessed';
  if (timeoutCodes.has(code)) return 'timeout';
  if (code === retriedAnswerCode) return 'response';
  if (code === 'ISTHMUS_ERR_DATAPLANE_CIRCUIT_OPEN') return 'overflow';
  // Anything else, our own closing of a connection to an unhealthy endpoint among them
  // (upstreams.ts closeTo): the request may have been written, so a reset.
  return 'reset';
}

/** After a failure of this kind, may the next attempt go to the endpoint that failed, when no other is left? */
export function mayRepeatEndpoint(failure: FailureKind, byPolicy = false): boolean {
  // A refused stream or a closing session says nothing about the endpoint's next stream. A
  // RetryPolicy asked for retries of answers, resets and timeouts: with no other endpoint left,
  // the same one gets them (as Envoy retries the only host), but never a refused connection.
  return failure === 'unprocessed' || (byPolicy && (failure === 'response' || failure === 'reset' || failure === 'timeout'));
}
