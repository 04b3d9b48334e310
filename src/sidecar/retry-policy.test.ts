import { describe, expect, test } from 'vitest';
import type { RetryCondition } from '../model/resilience-policy.js';
import { failureKind, mayRepeatEndpoint, retriedAnswerCode, shouldRetry, type FailureKind } from './retry-policy.js';

// Which error × which method × body state → retry? Every combination, written out.
const table: [FailureKind, string, boolean, boolean][] = [
  // failure    method    body kept  retry?
  ['connect', 'GET', true, true],
  ['connect', 'POST', true, true],
  ['connect', 'PATCH', true, true],
  ['connect', 'POST', false, false],
  ['unprocessed', 'GET', true, true],
  ['unprocessed', 'POST', true, true],
  ['unprocessed', 'PATCH', true, true],
  ['unprocessed', 'POST', false, false],
  ['unprocessed', 'GET', false, false],
  ['reset', 'GET', true, true],
  ['reset', 'HEAD', true, true],
  ['reset', 'PUT', true, true],
  ['reset', 'DELETE', true, true],
  ['reset', 'OPTIONS', true, true],
  ['reset', 'POST', true, false],
  ['reset', 'PATCH', true, false],
  ['reset', 'PUT', false, false],
  ['timeout', 'GET', true, false],
  ['timeout', 'POST', true, false],
  ['response', 'GET', true, false],
];

describe('shouldRetry', () => {
  test.each(table)('%s on %s with the body kept=%s → %s', (failure, method, bodyReplayable, expected) => {
    expect(shouldRetry({ failure, method, bodyReplayable, attempts: 1, maxAttempts: 3 })).toBe(expected);
  });

  test('never past the attempt limit, whatever the failure', () => {
    expect(shouldRetry({ failure: 'connect', method: 'GET', bodyReplayable: true, attempts: 2, maxAttempts: 3 })).toBe(true);
    expect(shouldRetry({ failure: 'connect', method: 'GET', bodyReplayable: true, attempts: 3, maxAttempts: 3 })).toBe(false);
  });
});

describe('failureKind', () => {
  const withCode = (code: string) => Object.assign(new Error('x'), { code });
  test.each([
    ['ECONNREFUSED', 'connect'], ['EHOSTUNREACH', 'connect'], ['UND_ERR_CONNECT_TIMEOUT', 'connect'],
    ['ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE', 'connect'], ['ERR_TLS_CERT_ALTNAME_INVALID', 'connect'],
    ['ISTHMUS_ERR_TRUST_IDENTITY_DENIED', 'connect'],
    ['ISTHMUS_ERR_DATAPLANE_UPSTREAM_REFUSED', 'unprocessed'],
    ['ERR_HTTP2_STREAM_ERROR', 'reset'], ['ERR_HTTP2_SESSION_ERROR', 'reset'],
    ['UND_ERR_HEADERS_TIMEOUT', 'timeout'], ['UND_ERR_BODY_TIMEOUT', 'timeout'],
    ['ECONNRESET', 'reset'], ['UND_ERR_SOCKET', 'reset'], ['EPIPE', 'reset'],
  ])('%s is a %s failure', (code, kind) => {
    expect(failureKind(withCode(code))).toBe(kind);
  });

  test('an error without a code may have been sent: a reset', () => {
    expect(failureKind(new Error('other side closed'))).toBe('reset');
    expect(failureKind(undefined)).toBe('reset');
  });
});

describe('mayRepeatEndpoint', () => {
  test.each([
    ['unprocessed', true], ['connect', false], ['reset', false], ['timeout', false], ['response', false],
  ] as [FailureKind, boolean][])('after %s → %s', (failure, expected) => {
    expect(mayRepeatEndpoint(failure)).toBe(expected);
  });
});

describe('shouldRetry with a RetryPolicy\'s retryOn', () => {
  type Row = [string, RetryCondition[], FailureKind, string, { status?: number; grpcStatus?: number; grpc?: boolean }, boolean];
  const table: Row[] = [
    ['connect-failure retries a refused connection, any method', ['connect-failure'], 'connect', 'POST', {}, true],
    ['connect-failure retries a refused stream', ['connect-failure'], 'unprocessed', 'POST', {}, true],
    ['retryOn replaces the built-in table: 5xx-only still covers connects (Envoy)', ['5xx'], 'connect', 'GET', {}, true],
    ['retryOn without connect-failure, 5xx or gateway-error: a refused connection is not retried', ['reset'], 'connect', 'GET', {}, false],
    ['reset: idempotent only', ['reset'], 'reset', 'GET', {}, true],
    ['reset: not a POST', ['reset'], 'reset', 'POST', {}, false],
    ['5xx answer on GET', ['5xx'], 'response', 'GET', { status: 503 }, true],
    ['5xx answer on POST: the app acted', ['5xx'], 'response', 'POST', { status: 503 }, false],
    ['5xx does not cover a 404', ['5xx'], 'response', 'GET', { status: 404 }, false],
    ['gateway-error covers 502-504', ['gateway-error'], 'response', 'GET', { status: 504 }, true],
    ['gateway-error does not cover 500', ['gateway-error'], 'response', 'GET', { status: 500 }, false],
    ['retriable-4xx is a 409', ['retriable-4xx'], 'response', 'PUT', { status: 409 }, true],
    ['retriable-4xx is not a 429', ['retriable-4xx'], 'response', 'PUT', { status: 429 }, false],
    ['timeout with 5xx on GET (Envoy counts it)', ['5xx'], 'timeout', 'GET', {}, true],
    ['timeout with connect-failure only', ['connect-failure'], 'timeout', 'GET', {}, false],
    ['gRPC unavailable, POST', ['unavailable'], 'response', 'POST', { status: 200, grpcStatus: 14, grpc: true }, true],
    ['gRPC resource-exhausted not listed', ['unavailable'], 'response', 'POST', { status: 200, grpcStatus: 8, grpc: true }, false],
    ['gRPC cancelled', ['cancelled'], 'response', 'POST', { status: 200, grpcStatus: 1, grpc: true }, true],
    ['gRPC INTERNAL is never retriable', ['unavailable', 'cancelled', 'resource-exhausted', 'deadline-exceeded'], 'response', 'POST', { status: 200, grpcStatus: 13, grpc: true }, false],
    ['gRPC deadline-exceeded covers a per-try timeout', ['deadline-exceeded'], 'timeout', 'POST', { grpc: true }, true],
    ['a circuit breaker refusal is never retried', ['5xx', 'connect-failure'], 'overflow', 'GET', {}, false],
  ];
  test.each(table)('%s', (_name, conditions, failure, method, extra, expected) => {
    expect(shouldRetry({ failure, method, bodyReplayable: true, attempts: 1, maxAttempts: 3, conditions: new Set(conditions), ...extra })).toBe(expected);
  });

  test('the attempt limit and the retry buffer still apply', () => {
    const conditions = new Set<RetryCondition>(['5xx']);
    expect(shouldRetry({ failure: 'response', status: 503, method: 'GET', bodyReplayable: true, attempts: 3, maxAttempts: 3, conditions })).toBe(false);
    expect(shouldRetry({ failure: 'response', status: 503, method: 'GET', bodyReplayable: false, attempts: 1, maxAttempts: 3, conditions })).toBe(false);
  });

  test('with a policy, answers, resets and timeouts may go to the same endpoint again; refused connections may not', () => {
    expect([mayRepeatEndpoint('response', true), mayRepeatEndpoint('reset', true), mayRepeatEndpoint('timeout', true), mayRepeatEndpoint('connect', true)]).toEqual([true, true, true, false]);
    expect(mayRepeatEndpoint('response')).toBe(false);
  });

  test('a held-back answer and a breaker refusal have failure kinds of their own', () => {
    expect(failureKind(Object.assign(new Error('x'), { code: retriedAnswerCode }))).toBe('response');
    expect(failureKind(Object.assign(new Error('x'), { code: 'ISTHMUS_ERR_DATAPLANE_CIRCUIT_OPEN' }))).toBe('overflow');
  });
});
