import { expect, test } from 'vitest';
import { encodeGrpcMessage, grpcServerError, grpcStatusOf, grpcTimeoutMs, headWaitMs, isGrpc } from './grpc-status.js';

test.each([
  ['application/grpc', true],
  ['application/grpc+proto', true],
  ['application/grpc+json', true],
  ['application/grpc; charset=utf-8', true],
  ['APPLICATION/GRPC', true],
  ['application/grpcx', false],
  ['application/json', false],
  [undefined, false],
] as const)('content-type %s is gRPC: %s', (contentType, expected) => {
  expect(isGrpc(contentType)).toBe(expected);
});

// Each status the sidecar's own errors use (src/core/errors.ts) → the grpc-status a client sees.
test.each([
  [503, 14], [502, 14], [504, 14], [429, 14], [501, 12], [500, 13], [403, 7], [401, 16], [404, 12], [400, 13], [418, 2],
])('HTTP %i → grpc-status %i', (http, grpc) => {
  expect(grpcStatusOf(http)).toBe(grpc);
});

test.each([
  ['plain text', 'plain text'],
  ['100% sure', '100%25 sure'],
  ['new\nline', 'new%0Aline'],
  ['café', 'caf%C3%A9'],
  ['demo/grpc-echo: no endpoint; last: 127.0.0.1:1', 'demo/grpc-echo: no endpoint; last: 127.0.0.1:1'],
])('grpc-message of %j is %j', (message, encoded) => {
  expect(encodeGrpcMessage(message)).toBe(encoded);
});

test.each([
  [0, 'OK', false], [1, 'CANCELLED', false], [2, 'UNKNOWN', true], [3, 'INVALID_ARGUMENT', false],
  [4, 'DEADLINE_EXCEEDED', true], [5, 'NOT_FOUND', false], [6, 'ALREADY_EXISTS', false], [7, 'PERMISSION_DENIED', false],
  [8, 'RESOURCE_EXHAUSTED', false], [9, 'FAILED_PRECONDITION', false], [10, 'ABORTED', false], [11, 'OUT_OF_RANGE', false],
  [12, 'UNIMPLEMENTED', true], [13, 'INTERNAL', true], [14, 'UNAVAILABLE', true], [15, 'DATA_LOSS', true],
  [16, 'UNAUTHENTICATED', false], [17, 'not a status', false],
])('grpc-status %i (%s) is a server error: %s', (status, _name, expected) => {
  expect(grpcServerError(status)).toBe(expected);
});

// grpc-timeout: at most eight digits and one unit (gRPC over HTTP/2, "Requests").
test.each([
  ['1H', 3_600_000], ['2M', 120_000], ['90S', 90_000], ['250m', 250], ['1500u', 1.5], ['2000000n', 2],
  ['99999999m', 99_999_999], ['123456789m', undefined], ['1s', undefined], ['-1S', undefined], ['1.5S', undefined], ['S', undefined], ['', undefined], [undefined, undefined],
] as const)('grpc-timeout %j is %j ms', (value, ms) => {
  expect(grpcTimeoutMs(value)).toBe(ms);
});

test('a gRPC deadline replaces the configured wait for the head, both ways, with a grace second; without one the configured wait stays', () => {
  expect(headWaitMs(60_000, '5M')).toBe(301_000);
  expect(headWaitMs(60_000, '100m')).toBe(1_100);
  expect(headWaitMs(60_000, undefined)).toBe(60_000);
  expect(headWaitMs(60_000, 'soon')).toBe(60_000);
});
