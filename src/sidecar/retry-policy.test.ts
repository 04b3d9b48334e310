import { describe, expect, test } from 'vitest';
import { failureKind, h2StreamUnprocessed, mayRepeatEndpoint, shouldRetry, type FailureKind, type H2StreamEnd } from './retry-policy.js';

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
    ['ISTHMUS_ERR_DATAPLANE_UPSTREAM_REFUSED', 'unprocessed'], ['ERR_HTTP2_GOAWAY_SESSION', 'unprocessed'], ['ERR_HTTP2_INVALID_SESSION', 'unprocessed'],
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

describe('h2StreamUnprocessed (RFC 9113 §8.7)', () => {
  // rstCode: 0 NO_ERROR, 2 INTERNAL_ERROR, 7 REFUSED_STREAM, 8 CANCEL, 11 ENHANCE_YOUR_CALM
  const table: [string, H2StreamEnd, boolean][] = [
    ['RST_STREAM REFUSED_STREAM', { rstCode: 7, streamId: 3, goawayLastStreamId: undefined }, true],
    ['RST_STREAM CANCEL', { rstCode: 8, streamId: 3, goawayLastStreamId: undefined }, false],
    ['RST_STREAM INTERNAL_ERROR', { rstCode: 2, streamId: 3, goawayLastStreamId: undefined }, false],
    ['closed with NO_ERROR and no GOAWAY', { rstCode: 0, streamId: 3, goawayLastStreamId: undefined }, false],
    ['GOAWAY NO_ERROR below the stream (Node closes it REFUSED_STREAM)', { rstCode: 7, streamId: 3, goawayLastStreamId: 1 }, true],
    ['GOAWAY with an error code below the stream (Node reports the session error)', { rstCode: 11, streamId: 3, goawayLastStreamId: 1 }, true],
    ['GOAWAY with last-stream-id 0: nothing was processed', { rstCode: 2, streamId: 1, goawayLastStreamId: 0 }, true],
    ['GOAWAY at the stream: it may have been processed', { rstCode: 11, streamId: 3, goawayLastStreamId: 3 }, false],
    ['GOAWAY above the stream', { rstCode: 2, streamId: 3, goawayLastStreamId: 5 }, false],
    ['never sent (no stream id)', { rstCode: undefined, streamId: undefined, goawayLastStreamId: undefined }, true],
  ];
  test.each(table)('%s → %s', (_name, end, expected) => {
    expect(h2StreamUnprocessed(end)).toBe(expected);
  });
});
