import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { sidecarChain, testPki, type SidecarChain } from '../../test/helpers/sidecar-fixtures.js';

/**
 * Request smuggling: heads that two HTTP parsers could frame differently. Each is sent as raw
 * bytes (nothing normalises them on the way) to a real outbound → inbound (mTLS) → app chain,
 * and to the inbound directly with a mesh certificate. The first sidecar must refuse it with 400
 * (431 for a head too large) and close the connection; the app must see nothing, the smuggled
 * request included; the refusal is counted in isthmus_requests_refused_total.
 */

let chain: SidecarChain;

beforeAll(async () => {
  chain = await sidecarChain(testPki());
});

afterAll(async () => {
  await chain?.close();
});

const target = { outbound: 'http://echo.demo.mesh', inbound: '' } as const;
const smuggled = 'GET /smuggled HTTP/1.1\r\nhost: echo.demo.mesh\r\n\r\n';

/** Each case: a head (with `{T}` for the request target's prefix) whose framing two parsers could read differently. */
const cases: [string, string, number, 'malformed' | 'header_too_large'][] = [
  ['Content-Length and Transfer-Encoding together', `POST {T}/a HTTP/1.1\r\nhost: echo.demo.mesh\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n${smuggled}`, 400, 'malformed'],
  ['two different Content-Lengths', `POST {T}/a HTTP/1.1\r\nhost: echo.demo.mesh\r\ncontent-length: 4\r\ncontent-length: 51\r\n\r\nabcd${smuggled}`, 400, 'malformed'],
  ['a Content-Length list', `POST {T}/a HTTP/1.1\r\nhost: echo.demo.mesh\r\ncontent-length: 4, 4\r\n\r\nabcd${smuggled}`, 400, 'malformed'],
  ['Transfer-Encoding that does not end in chunked', `POST {T}/a HTTP/1.1\r\nhost: echo.demo.mesh\r\ntransfer-encoding: chunked, identity\r\n\r\n0\r\n\r\n${smuggled}`, 400, 'malformed'],
  ['an unknown Transfer-Encoding', `POST {T}/a HTTP/1.1\r\nhost: echo.demo.mesh\r\ntransfer-encoding: xchunked\r\n\r\n0\r\n\r\n${smuggled}`, 400, 'malformed'],
  ['a space before the colon', `POST {T}/a HTTP/1.1\r\nhost: echo.demo.mesh\r\ntransfer-encoding : chunked\r\ncontent-length: 4\r\n\r\n0\r\n\r\n${smuggled}`, 400, 'malformed'],
  ['obs-fold hiding Transfer-Encoding', `POST {T}/a HTTP/1.1\r\nhost: echo.demo.mesh\r\ntransfer-encoding: identity\r\n chunked\r\ncontent-length: 4\r\n\r\n0\r\n\r\n${smuggled}`, 400, 'malformed'],
  ['obs-fold in an ordinary field', `GET {T}/a HTTP/1.1\r\nhost: echo.demo.mesh\r\nx-note: one\r\n two\r\n\r\n`, 400, 'malformed'],
  ['a bare CR inside a field', `GET {T}/a HTTP/1.1\r\nhost: echo.demo.mesh\r\nx-note: one\rtransfer-encoding: chunked\r\n\r\n`, 400, 'malformed'],
  ['a NUL inside a field', `GET {T}/a HTTP/1.1\r\nhost: echo.demo.mesh\r\nx-note: a\0b\r\n\r\n`, 400, 'malformed'],
  ['lines ended by LF alone', `GET {T}/a HTTP/1.1\nhost: echo.demo.mesh\n\n${smuggled}`, 400, 'malformed'],
  ['a chunk size that overflows', `POST {T}/a HTTP/1.1\r\nhost: echo.demo.mesh\r\ntransfer-encoding: chunked\r\n\r\nffffffffffffffffff1\r\nabc\r\n0\r\n\r\n`, 400, 'malformed'],
  ['a chunk-size line ended by LF alone', `POST {T}/a HTTP/1.1\r\nhost: echo.demo.mesh\r\ntransfer-encoding: chunked\r\n\r\n3;x\nabc\r\n0\r\n\r\n`, 400, 'malformed'],
  ['a signed Content-Length', `POST {T}/a HTTP/1.1\r\nhost: echo.demo.mesh\r\ncontent-length: +4\r\n\r\nabcd`, 400, 'malformed'],
  ['a head over the size limit', `GET {T}/a HTTP/1.1\r\nhost: echo.demo.mesh\r\nx-big: ${'a'.repeat(20 * 1024)}\r\n\r\n`, 431, 'header_too_large'],
];

describe.each(['outbound', 'inbound'] as const)('request smuggling at the %s listener', (listener) => {
  test.each(cases)('%s: refused at once, never forwarded, counted', async (_what, head, status, reason) => {
    chain.seen.length = 0;
    const before = await chain.refused(listener, reason);
    const answered = await chain.send(listener, head.replace('{T}', target[listener]));
    expect(answered.split('\r\n')[0]).toBe(`HTTP/1.1 ${status} ${status === 400 ? 'Bad Request' : 'Request Header Fields Too Large'}`);
    expect(answered).toContain('x-isthmus-error: ISTHMUS_ERR_DATAPLANE_REQUEST_MALFORMED');
    // One answer and a closed connection: whatever followed the bad head was never read as a request.
    expect(answered.match(/HTTP\/1\.1 \d{3}/g)).toHaveLength(1);
    expect(chain.seen).toEqual([]);
    expect(await chain.refused(listener, reason)).toBe(before + 1);
  });

  test('two Host fields: refused with 400, never forwarded, counted (a WebSocket upgrade too)', async () => {
    chain.seen.length = 0;
    const before = await chain.refused(listener, 'malformed');
    const plain = await chain.send(listener, `GET ${target[listener]}/a HTTP/1.1\r\nhost: echo.demo.mesh\r\nhost: other.demo.mesh\r\n\r\n`);
    expect(plain.split('\r\n')[0]).toBe('HTTP/1.1 400 Bad Request');
    const upgrade = await chain.send(listener, `GET ${target[listener]}/ws HTTP/1.1\r\nhost: echo.demo.mesh\r\nhost: other.demo.mesh\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`);
    expect(upgrade.split('\r\n')[0]).toBe('HTTP/1.1 400 Bad Request');
    expect(upgrade).toContain('two Host fields');
    expect(chain.seen).toEqual([]);
    expect(await chain.refused(listener, 'malformed')).toBe(before + 2);
  });

  test('an Expect other than 100-continue: 417 naming the expectation, never forwarded, and the connection serves the next request', async () => {
    chain.seen.length = 0;
    const t = target[listener];
    const answered = await chain.send(listener, `POST ${t}/a HTTP/1.1\r\nhost: echo.demo.mesh\r\nexpect: 100-continuex\r\ncontent-length: 3\r\n\r\nabcGET ${t}/b HTTP/1.1\r\nhost: echo.demo.mesh\r\nconnection: close\r\n\r\n`);
    const [refusal = '', next] = answered.split(/(?=HTTP\/1\.1 )/);
    expect(refusal.split('\r\n')[0]).toBe('HTTP/1.1 417 Expectation Failed');
    expect(refusal).toContain('x-isthmus-error: ISTHMUS_ERR_DATAPLANE_PROTOCOL_UNSUPPORTED');
    expect(JSON.parse(refusal.slice(refusal.indexOf('\r\n\r\n') + 4)).error.message).toContain('"100-continuex"');
    // The refused request's body was read and dropped, not taken for a request of its own.
    expect(next?.split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
    expect(chain.seen).toEqual(['GET /b ']);
  });

  test('the control: a well-framed chunked request and a pipelined second one both reach the app, each once', async () => {
    chain.seen.length = 0;
    const t = target[listener];
    const answered = await chain.send(listener, `POST ${t}/one HTTP/1.1\r\nhost: echo.demo.mesh\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET ${t}/two HTTP/1.1\r\nhost: echo.demo.mesh\r\nconnection: close\r\n\r\n`);
    expect(answered.match(/HTTP\/1\.1 200 OK/g)).toHaveLength(2);
    // The outbound may carry the two over two pooled connections, so they can arrive in either order.
    expect(chain.seen.sort()).toEqual(['GET /two ', 'POST /one abc']);
  });
});
