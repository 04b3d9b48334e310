import { describe, expect, test } from 'vitest';
import { failureKind, shouldRetry, type FailureKind } from './retry-policy.js';

// Which error × which method × body state → retry? Every combination, written out.
const table: [FailureKind, string, boolean, boolean][] = [
  // failure    method    body kept  retry?
  ['connect', 'GET', true, true],
  ['connect', 'POST', true, true],
  ['connect', 'PATCH', true, true],
  ['connect', 'POST', false, false],
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
