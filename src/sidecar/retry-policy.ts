/**
 * When may a failed attempt be repeated on another endpoint? A pure table, so that every case
 * can be tested alone (src/sidecar/retry-policy.test.ts) and the traffic-policy layer can swap
 * the limits without touching the request path.
 *
 * - `connect`: the connection or its TLS handshake failed (refused, unreachable, connect timeout,
 *   a certificate or identity the catalog does not allow). Nothing reached the app: always safe.
 * - `reset`: the connection broke after the request may have been written and before a response
 *   head arrived. The app may have acted on it: only idempotent methods (RFC 9110 §9.2.2).
 * - `timeout`: no response head in time. The app may still be working on it: never.
 * - `response`: a response head arrived (any status). It is the answer: never.
 * A body that is no longer kept in full (past the retry buffer) cannot be resent: never.
 */
export type FailureKind = 'connect' | 'reset' | 'timeout' | 'response';

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
const timeoutCodes = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT']);

/** Which kind of failure an error from an upstream attempt is (decided on codes, never on messages). */
export function failureKind(err: unknown): FailureKind {
  const code = (err as { code?: unknown } | undefined)?.code;
  if (typeof code !== 'string') return 'reset';
  if (connectCodes.has(code) || code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_') || code === 'ISTHMUS_ERR_TRUST_IDENTITY_DENIED') return 'connect';
  if (timeoutCodes.has(code)) return 'timeout';
  return 'reset';
}
