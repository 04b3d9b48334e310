import { expect, test } from 'vitest';
import { bodiless, h2ForwardFields, h2RequestAsHttp1, http1ResponseAsH2 } from './h2-headers.js';

const grpcRequest = {
  ':method': 'POST', ':scheme': 'http', ':authority': '127.0.0.1:15102', ':path': '/isthmus.dev.Echo/Echo',
  'content-type': 'application/grpc', te: 'trailers', 'grpc-timeout': '5S', 'x-request-id': 'abc', 'user-agent': 'grpc-node-js/1.14.7',
};

// Each kind of field, and where it goes on each translation.
test.each([
  // field                       value                    h2 → h2        h2 → HTTP/1.1
  [':path', '/x', undefined, undefined],
  [':authority', 'a.b.mesh', undefined, undefined],
  ['te', 'trailers', 'trailers', undefined],
  ['te', 'gzip, trailers', undefined, undefined],
  ['connection', 'keep-alive', undefined, undefined],
  ['keep-alive', 'timeout=5', undefined, undefined],
  ['proxy-connection', 'keep-alive', undefined, undefined],
  ['transfer-encoding', 'chunked', undefined, undefined],
  ['upgrade', 'h2c', undefined, undefined],
  ['proxy-authorization', 'Basic eA==', undefined, undefined],
  ['host', 'a.b.mesh', undefined, 'a.b.mesh'],
  ['content-type', 'application/grpc', 'application/grpc', 'application/grpc'],
  ['grpc-timeout', '5S', '5S', '5S'],
  ['cookie', 'a=1; b=2', 'a=1; b=2', 'a=1; b=2'],
  ['x-forwarded-client-cert', 'forged', undefined, undefined],
])('%s: %s → h2 %s, HTTP/1.1 %s', (name, value, toH2, toHttp1) => {
  const headers = { [name]: value };
  expect(h2ForwardFields(headers, 'x-forwarded-client-cert')[name]).toBe(toH2);
  expect(h2RequestAsHttp1(headers, 'x-forwarded-client-cert').headers[name]).toBe(toHttp1);
});

test('a gRPC request between HTTP/2 hops keeps te: trailers and its metadata, and no pseudo-header', () => {
  expect(h2ForwardFields(grpcRequest)).toEqual({ 'content-type': 'application/grpc', te: 'trailers', 'grpc-timeout': '5S', 'x-request-id': 'abc', 'user-agent': 'grpc-node-js/1.14.7' });
});

test('an HTTP/2 request as HTTP/1.1: method and path from the pseudo-headers, :authority becomes host', () => {
  expect(h2RequestAsHttp1({ ':method': 'PUT', ':path': '/a?b=1', ':authority': 'ledger.demo.mesh', ':scheme': 'https', accept: '*/*' })).toEqual({
    method: 'PUT', path: '/a?b=1', headers: { accept: '*/*', host: 'ledger.demo.mesh' },
  });
});

test('an HTTP/1.1 response as HTTP/2: :status, and no connection-specific field', () => {
  expect(http1ResponseAsH2(200, { 'content-type': 'text/plain', connection: 'keep-alive', 'keep-alive': 'timeout=5', 'transfer-encoding': 'chunked', trailer: 'x-sha256', 'x-sample': '1' })).toEqual({
    ':status': 200, 'content-type': 'text/plain', 'x-sample': '1',
  });
});

test.each([
  ['HEAD', 200, true], ['GET', 204, true], ['GET', 205, true], ['GET', 304, true], ['GET', 200, false], ['POST', 404, false],
] as const)('%s answered %i has no body: %s', (method, status, expected) => {
  expect(bodiless(method, status)).toBe(expected);
});
