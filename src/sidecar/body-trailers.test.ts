import { Readable } from 'node:stream';
import { describe, expect, test } from 'vitest';
import { bodyTrailers, forwardableTrailers, lastChunkWith, passTrailers, setBodyTrailers } from './body-trailers.js';

describe('forwardableTrailers: what of a request\'s trailers goes on to the next hop', () => {
  test.each<[string, Record<string, string | string[] | undefined> | undefined, Record<string, string | string[]> | undefined]>([
    ['none at all', undefined, undefined],
    ['an empty record', {}, undefined],
    ['an ordinary field, and a repeated one', { 'x-checksum': 'abc', 'x-multi': ['1', '2'] }, { 'x-checksum': 'abc', 'x-multi': ['1', '2'] }],
    ['a name in capitals is lower-cased (HTTP/2 wants them so)', { 'X-Checksum': 'abc' }, { 'x-checksum': 'abc' }],
    ['framing (RFC 9110 §6.5.1)', { 'content-length': '5', 'transfer-encoding': 'chunked' }, undefined],
    ['hop-by-hop, te and trailer itself', { connection: 'close', 'keep-alive': 'timeout=5', te: 'trailers', trailer: 'x-a', upgrade: 'h2c', 'proxy-authorization': 'x' }, undefined],
    ['routing, modifiers, authentication, controls, content format', { host: 'a', expect: '100-continue', range: 'bytes=0-1', 'if-match': '*', authorization: 'Bearer x', cookie: 'a=1', 'cache-control': 'no-cache', 'content-type': 'text/plain', 'content-encoding': 'gzip' }, undefined],
    ['the mesh\'s own identity and trace fields', { 'x-forwarded-client-cert': 'By=forged', 'x-isthmus-trace': '1', 'X-Forwarded-Client-Cert': 'By=forged' }, undefined],
    ['a value with CR or LF (one more line) or NUL, in a list too', { 'x-a': 'a\r\nhost: evil', 'x-b': 'b\n', 'x-c': 'c\0', 'x-d': ['ok', 'x\r\ny'] }, undefined],
    ['a name that is not a token, or empty', { 'bad name': 'x', 'x:y': 'x', '': 'x', ':path': '/' }, undefined],
    ['the good stay when the bad go', { 'x-ok': '1', 'content-length': '2', 'x-bad': 'a\r\n' }, { 'x-ok': '1' }],
    ['an undefined value is no field', { 'x-a': undefined, 'x-b': '' }, { 'x-b': '' }],
  ])('%s', (_name, trailers, expected) => {
    expect(forwardableTrailers(trailers)).toEqual(expected);
  });
});

describe('lastChunkWith: the end of a chunked body with its trailers (RFC 9112 §7.1.2)', () => {
  test('the last chunk, one line per value, the closing CRLF', () => {
    expect(lastChunkWith({ 'x-checksum': 'abc', 'x-multi': ['1', '2'] }).toString('latin1')).toBe('0\r\nx-checksum: abc\r\nx-multi: 1\r\nx-multi: 2\r\n\r\n');
  });
});

describe('trailers carried on a body stream', () => {
  test('a stream carries none until given some; passTrailers hands them to another stream of the same body, and nothing when there are none', () => {
    const source = new Readable({ read() {} });
    const attempt = new Readable({ read() {} });
    expect(bodyTrailers(source)).toBeUndefined();
    passTrailers(source, attempt);
    expect(bodyTrailers(attempt)).toBeUndefined();
    setBodyTrailers(source, { 'x-a': '1' });
    passTrailers(source, attempt);
    expect(bodyTrailers(attempt)).toEqual({ 'x-a': '1' });
  });
});
