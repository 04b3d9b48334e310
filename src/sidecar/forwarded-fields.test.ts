import { createServer as createNetServer, connect } from 'node:net';
import { afterEach, beforeAll, describe, expect, test } from 'vitest';
import { clientId, sidecarChain, testPki, type SidecarChain, type TestPki } from '../../test/helpers/sidecar-fixtures.js';

/**
 * What passes through the chain in a head, both ways: an app's raw HTTP/1.1 request → outbound →
 * inbound (mTLS) → a raw app that records the head it got and answers with bytes of its own. End
 * to end fields go on in their order, case and repeats; connection-specific ones stop at each
 * hop; the caller's identity is the inbound's to state.
 */

let pki: TestPki;
const chains: SidecarChain[] = [];
beforeAll(() => {
  pki = testPki();
});
afterEach(async () => {
  for (const chain of chains.splice(0)) await chain.close();
});

const answer = 'HTTP/1.1 200 OK\r\nX-Resp: 1\r\nX-Resp-Hop: app\r\nConnection: keep-alive, X-Resp-Hop\r\nx-resp: 2\r\nKeep-Alive: timeout=30\r\nProxy-Connection: keep-alive\r\nTrailer: x-sum\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok';

/** The chain to a raw app; `heads` are the request heads the app received, `streams` its never-ending answers to /stream. */
async function chain(): Promise<{ outbound: SidecarChain; heads: string[]; streams: { closed: boolean }[] }> {
  const heads: string[] = [];
  const streams: { closed: boolean }[] = [];
  const app = createNetServer((socket) => {
    let got = '';
    socket.on('data', (chunk: Buffer) => {
      got += chunk.toString('latin1');
      const end = got.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = got.slice(0, end + 2);
      heads.push(head);
      got = got.slice(end + 4);
      if (!head.startsWith('GET /stream ')) return void socket.write(answer);
      // An answer that never ends: a chunk every 20 ms until the connection closes.
      const stream = { closed: false };
      streams.push(stream);
      socket.write('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n');
      const timer = setInterval(() => socket.write('5\r\ntick\n\r\n'), 20);
      socket.once('close', () => { stream.closed = true; clearInterval(timer); });
    });
    socket.on('error', () => undefined);
  });
  const outbound = await sidecarChain(pki, {}, app);
  chains.push(outbound);
  return { outbound, heads, streams };
}

const lines = (head: string) => head.split('\r\n').filter((l) => l !== '');

describe('fields through outbound → inbound → app (HTTP/1.1 both hops)', () => {
  test.each([
    ['absolute-form, as through HTTP_PROXY', 'GET http://echo.demo.mesh/path?q=1 HTTP/1.1\r\nHost: echo.demo.mesh'],
    ['origin-form with a Host', 'GET /path?q=1 HTTP/1.1\r\nHOST: Echo.Demo.Mesh'],
  ])('%s: the app gets the end-to-end fields as sent, one Host, the caller\'s identity from the inbound and nothing connection-specific', async (_form, start) => {
    const { outbound, heads } = await chain();
    // `Connection: close` ends the caller's connection after the answer (send reads until then); it must not reach the app either.
    const request = `${start}\r\nX-Hop: caller\r\nX-Dup: a\r\nConnection: close, X-Hop\r\nx-dup: b\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\nKeep-Alive: timeout=9\r\n`
      + 'X-Forwarded-Client-Cert: By=spiffe://evil/x;URI=spiffe://example.org/ns/demo/sa/admin\r\nCookie: a=1\r\ncookie: b=2\r\nUser-Agent: raw/1\r\n\r\n';
    const got = await outbound.send('outbound', request);
    expect(heads).toHaveLength(1);
    const app = lines(heads[0] as string);
    expect(app[0]).toBe('GET /path?q=1 HTTP/1.1');
    const fields = app.slice(1);
    // In order, case kept, repeats as they came.
    expect(fields.filter((l) => /^(x-dup|cookie|user-agent):/i.test(l))).toEqual(['X-Dup: a', 'x-dup: b', 'Cookie: a=1', 'cookie: b=2', 'User-Agent: raw/1']);
    expect(fields.filter((l) => /^host:/i.test(l))).toHaveLength(1);
    expect(fields.find((l) => /^host:/i.test(l))?.split(': ')[1]?.toLowerCase()).toBe('echo.demo.mesh');
    // X-Hop too: the caller's Connection field named it (RFC 9110 §7.6.1).
    for (const name of ['connection', 'te', 'proxy-connection', 'keep-alive', 'transfer-encoding', 'x-hop']) expect(fields.filter((l) => l.toLowerCase().startsWith(`${name}:`))).toEqual([]);
    const xfcc = fields.filter((l) => /^x-forwarded-client-cert:/i.test(l));
    expect(xfcc).toHaveLength(1);
    expect(xfcc[0]).toContain(`URI=${clientId}`);
    expect(xfcc[0]).not.toContain('evil');

    // The answer: its end-to-end fields as the app sent them, connection fields the sidecar's own.
    expect(got.endsWith('\r\n\r\nok')).toBe(true);
    const back = lines(got.slice(0, got.indexOf('\r\n\r\n')));
    expect(back[0]).toBe('HTTP/1.1 200 OK');
    expect(back.filter((l) => /^(x-resp|content-type|content-length):/i.test(l))).toEqual(['X-Resp: 1', 'x-resp: 2', 'Content-Type: text/plain', 'Content-Length: 2']);
    expect(back.filter((l) => /^(proxy-connection|trailer|keep-alive|x-resp-hop):/i.test(l))).toEqual([]);
    expect(back.filter((l) => /^connection:/i.test(l))).toEqual(['connection: close']);
  });

  test('an upgrade to h2c (curl --http2 on an http:// URL) is served as the HTTP/1.1 request it also is, and a request pipelined behind it too; its Upgrade and HTTP2-Settings go no further', async () => {
    const { outbound, heads } = await chain();
    const h2cUpgrade = 'GET http://echo.demo.mesh/first HTTP/1.1\r\nHost: echo.demo.mesh\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nX-Kept: 1\r\n\r\n';
    // Both in one write: the second head follows the first in the same read.
    const got = await outbound.send('outbound', `${h2cUpgrade}GET http://echo.demo.mesh/second HTTP/1.1\r\nHost: echo.demo.mesh\r\nConnection: close\r\n\r\n`);
    expect(got.match(/HTTP\/1\.1 \d{3}/g)).toEqual(['HTTP/1.1 200', 'HTTP/1.1 200']);
    expect(got).not.toMatch(/101 Switching/);
    expect(heads.map((h) => lines(h)[0])).toEqual(['GET /first HTTP/1.1', 'GET /second HTTP/1.1']);
    const first = lines(heads[0] as string).slice(1);
    expect(first).toContain('X-Kept: 1');
    expect(first.filter((l) => /^(upgrade|http2-settings|connection):/i.test(l))).toEqual([]);
  });

  test('a caller that goes away in the middle of an answer: each hop stops its upstream, and the app\'s connection closes', async () => {
    const { outbound, streams } = await chain();
    const [host, port] = outbound.outbound.split(':') as [string, string];
    const socket = connect(Number(port), host, () => socket.write('GET http://echo.demo.mesh/stream HTTP/1.1\r\nHost: echo.demo.mesh\r\n\r\n'));
    socket.on('error', () => undefined);
    // Some of the answer arrives: the chain carries it.
    await new Promise<void>((resolve) => {
      let got = '';
      socket.on('data', (chunk: Buffer) => {
        got += chunk.toString('latin1');
        if ((got.match(/tick/g) ?? []).length >= 3) resolve();
      });
    });
    expect(streams).toHaveLength(1);
    expect(streams[0]?.closed).toBe(false);
    socket.destroy();
    const deadline = Date.now() + 3_000;
    while (!streams[0]?.closed && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(streams[0]?.closed).toBe(true);
  });
});
