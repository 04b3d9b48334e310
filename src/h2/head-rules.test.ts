import { describe, expect, it } from 'vitest';
import { checkBlock } from './head-rules.js';

const request = [':method', 'GET', ':scheme', 'https', ':path', '/', ':authority', 'hello.demo.mesh'];

describe('HTTP/2 header block rules (RFC 9113 §8.2, §8.3)', () => {
  it.each([
    ['a plain request', request, 'request'],
    ['CONNECT with only :method and :authority', [':method', 'CONNECT', ':authority', 'db.demo.mesh:5432'], 'request'],
    ['OPTIONS *', [':method', 'OPTIONS', ':scheme', 'https', ':path', '*', ':authority', 'x'], 'request'],
    ['te: trailers', [...request, 'te', 'trailers'], 'request'],
    ['a response', [':status', '200', 'content-type', 'application/grpc'], 'response'],
    ['an informational response', [':status', '103', 'link', '</a.css>'], 'response'],
    ['trailers', ['grpc-status', '0', 'grpc-message', 'ok'], 'trailers'],
    ['a value with inner spaces and obs-text', [...request, 'x-a', 'b c\u00e9'], 'request'],
  ] as const)('accepts %s', (_what, fields, kind) => {
    expect(typeof checkBlock(fields, kind)).toBe('object');
  });

  it.each([
    ['no :method', [':scheme', 'https', ':path', '/'], 'request', ':method'],
    ['no :scheme', [':method', 'GET', ':path', '/'], 'request', ':scheme'],
    ['an empty :path', [':method', 'GET', ':scheme', 'https', ':path', ''], 'request', ':path'],
    ['a :path that is not absolute', [':method', 'GET', ':scheme', 'https', ':path', 'x/y'], 'request', 'starts with'],
    ['* for GET', [':method', 'GET', ':scheme', 'https', ':path', '*'], 'request', 'starts with'],
    ['CONNECT without :authority', [':method', 'CONNECT'], 'request', ':authority'],
    ['CONNECT with :path', [':method', 'CONNECT', ':authority', 'x:1', ':path', '/'], 'request', ':scheme or :path'],
    ['extended CONNECT (:protocol)', [...request, ':protocol', 'websocket'], 'request', ':protocol'],
    ['two :path', [...request, ':path', '/x'], 'request', 'two :path'],
    ['a pseudo-header after a field', [':method', 'GET', 'x-a', '1', ':scheme', 'https', ':path', '/'], 'request', 'after a regular field'],
    [':status in a request', [...request, ':status', '200'], 'request', ':status'],
    [':path in a response', [':status', '200', ':path', '/'], 'response', ':path'],
    ['a response without :status', ['content-type', 'x'], 'response', 'missing'],
    ['a two-digit :status', [':status', '20'], 'response', '"20"'],
    ['a pseudo-header in trailers', [':status', '200'], 'trailers', 'in trailers'],
    ['connection', [...request, 'connection', 'close'], 'request', 'connection-specific'],
    ['transfer-encoding', [':status', '200', 'transfer-encoding', 'chunked'], 'response', 'connection-specific'],
    ['keep-alive', [...request, 'keep-alive', 'timeout=5'], 'request', 'connection-specific'],
    ['upgrade', [...request, 'upgrade', 'h2c'], 'request', 'connection-specific'],
    ['te: gzip', [...request, 'te', 'gzip'], 'request', 'te'],
    ['an upper-case name', [...request, 'X-A', '1'], 'request', 'upper case'],
    ['a space in a name', [...request, 'x a', '1'], 'request', 'token'],
    ['an empty name', [...request, '', '1'], 'request', 'empty'],
    ['a NUL in a value', [...request, 'x-a', 'a\u0000b'], 'request', 'NUL'],
    ['a carriage return in a value', [...request, 'x-a', 'a\rb'], 'request', 'NUL'],
    ['a leading space in a value', [...request, 'x-a', ' a'], 'request', 'white space'],
    ['a trailing tab in a value', [...request, 'x-a', 'a\t'], 'request', 'white space'],
    ['a content-length that is not a number', [...request, 'content-length', '1e3'], 'request', 'not a length'],
    ['two different content-lengths', [...request, 'content-length', '1', 'content-length', '2'], 'request', 'two different'],
  ] as const)('refuses %s', (_what, fields, kind, reason) => {
    const result = checkBlock(fields, kind);
    expect(typeof result).toBe('string');
    expect(result).toContain(reason);
  });

  it('gives the content-length a request or response states, -1 without one', () => {
    expect(checkBlock([...request, 'content-length', '42'], 'request')).toEqual({ contentLength: 42 });
    expect(checkBlock([...request, 'content-length', '42', 'content-length', '42'], 'request')).toEqual({ contentLength: 42 });
    expect(checkBlock(request, 'request')).toEqual({ contentLength: -1 });
  });
});
