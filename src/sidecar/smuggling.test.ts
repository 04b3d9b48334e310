import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http';
import { connect as tcpConnect, type Server } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { clientContext, echoId, listen, routingTo, serverTls, testPki, type TestPki } from '../../test/helpers/sidecar-fixtures.js';
import { silentLogger } from '../core/log.js';
import { createMetrics, type Metrics } from '../telemetry/metrics.js';
import { Inbound } from './inbound.js';
import { createOutbound } from './outbound.js';
import { defaultTimeouts } from './timeouts.js';
import { Upstreams } from './upstreams.js';

/**
 * Request smuggling: heads that two HTTP parsers could frame differently. Each is sent as raw
 * bytes (nothing normalises them on the way) to a real outbound → inbound (mTLS) → app chain,
 * and to the inbound directly with a mesh certificate. The first sidecar must refuse it with 400
 * (431 for a head too large) and close the connection; the app must see nothing, the smuggled
 * request included; the refusal is counted in isthmus_requests_refused_total.
 */

let pki: TestPki;
let app: HttpServer;
let inbound: Inbound;
let inboundAddress: string;
let outbound: HttpServer;
let outboundAddress: string;
let upstreams: Upstreams;
let metrics: Metrics;
/** What the app received: one line per request. */
const seen: string[] = [];

beforeAll(async () => {
  pki = testPki();
  app = createHttpServer((req: IncomingMessage, res) => {
    let body = '';
    req.on('data', (c: Buffer) => { body += c.toString('latin1'); });
    req.on('end', () => {
      seen.push(`${req.method} ${req.url} ${body}`);
      res.end('app answered');
    });
  });
  const appAddress = await listen(app);
  inbound = new Inbound({ certPem: pki.echo.certPem, chainPem: [pki.west.certPem], keyPem: pki.echo.keyPem, trustBundle: [pki.root.certPem], identity: echoId },
    appAddress, silentLogger, {}, defaultTimeouts);
  inboundAddress = await listen(inbound.server as unknown as Server);
  upstreams = new Upstreams(() => clientContext(pki));
  const routing = routingTo([inboundAddress]);
  outbound = createOutbound({ cluster: 'west', routing, upstreams, logger: silentLogger, timeouts: defaultTimeouts });
  outboundAddress = await listen(outbound);
  metrics = createMetrics('sidecar', { cluster: 'west' }, { origins: [routing, inbound] });
});

afterAll(async () => {
  metrics?.close();
  outbound?.closeAllConnections();
  await new Promise((resolve) => outbound?.close(resolve));
  await upstreams?.close();
  await inbound?.close();
  await new Promise((resolve) => app?.close(resolve));
});

/** Writes `bytes` and returns all that came back before the other side closed (or 5 s passed). */
async function send(listener: 'outbound' | 'inbound', bytes: string): Promise<string> {
  const [host, port] = (listener === 'outbound' ? outboundAddress : inboundAddress).split(':') as [string, string];
  const socket = listener === 'outbound'
    ? tcpConnect({ host, port: Number(port) })
    : tlsConnect({ host, port: Number(port), ...serverTls(pki, pki.client), ca: pki.root.certPem, ALPNProtocols: ['http/1.1'], checkServerIdentity: () => undefined });
  return await new Promise((resolve, reject) => {
    let got = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the ${listener} neither answered nor closed within 5 s; it sent ${JSON.stringify(got.slice(0, 200))}`));
    }, 5000);
    socket.on('data', (c: Buffer) => { got += c.toString('latin1'); });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
    socket.once(listener === 'outbound' ? 'connect' : 'secureConnect', () => socket.write(bytes, 'latin1'));
  });
}

async function refusedCount(listener: string, reason: string): Promise<number> {
  const { body } = await metrics.exposition();
  const line = body.split('\n').find((l) => l.startsWith(`isthmus_requests_refused_total{cluster="west",listener="${listener}",reason="${reason}"}`));
  return line ? Number(line.split(' ').pop()) : 0;
}

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
    seen.length = 0;
    const before = await refusedCount(listener, reason);
    const answered = await send(listener, head.replace('{T}', target[listener]));
    expect(answered.split('\r\n')[0]).toBe(`HTTP/1.1 ${status} ${status === 400 ? 'Bad Request' : 'Request Header Fields Too Large'}`);
    expect(answered).toContain('x-isthmus-error: ISTHMUS_ERR_DATAPLANE_REQUEST_MALFORMED');
    // One answer and a closed connection: whatever followed the bad head was never read as a request.
    expect(answered.match(/HTTP\/1\.1 \d{3}/g)).toHaveLength(1);
    expect(seen).toEqual([]);
    expect(await refusedCount(listener, reason)).toBe(before + 1);
  });

  test('two Host fields: refused with 400, never forwarded, counted (a WebSocket upgrade too)', async () => {
    seen.length = 0;
    const before = await refusedCount(listener, 'malformed');
    const plain = await send(listener, `GET ${target[listener]}/a HTTP/1.1\r\nhost: echo.demo.mesh\r\nhost: other.demo.mesh\r\n\r\n`);
    expect(plain.split('\r\n')[0]).toBe('HTTP/1.1 400 Bad Request');
    const upgrade = await send(listener, `GET ${target[listener]}/ws HTTP/1.1\r\nhost: echo.demo.mesh\r\nhost: other.demo.mesh\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`);
    expect(upgrade.split('\r\n')[0]).toBe('HTTP/1.1 400 Bad Request');
    expect(upgrade).toContain('two Host fields');
    expect(seen).toEqual([]);
    expect(await refusedCount(listener, 'malformed')).toBe(before + 2);
  });

  test('the control: a well-framed chunked request and a pipelined second one both reach the app, each once', async () => {
    seen.length = 0;
    const t = target[listener];
    const answered = await send(listener, `POST ${t}/one HTTP/1.1\r\nhost: echo.demo.mesh\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET ${t}/two HTTP/1.1\r\nhost: echo.demo.mesh\r\nconnection: close\r\n\r\n`);
    expect(answered.match(/HTTP\/1\.1 200 OK/g)).toHaveLength(2);
    // The outbound may carry the two over two pooled connections, so they can arrive in either order.
    expect(seen.sort()).toEqual(['GET /two ', 'POST /one abc']);
  });
});
