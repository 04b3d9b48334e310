import { createServer, request, type Server } from 'node:http';
import { connect } from 'node:http2';
import { afterEach, beforeAll, describe, expect, test } from 'vitest';
import { clientContext, echoId, listen, routingTo, testPki, type TestPki } from '../../test/helpers/sidecar-fixtures.js';
import { silentLogger } from '../core/log.js';
import { Inbound } from './inbound.js';
import { createOutbound } from './outbound.js';
import { defaultTimeouts } from './timeouts.js';
import { Upstreams } from './upstreams.js';

/**
 * Server-sent events, a watch: an answer of no stated length may stay silent between events for
 * longer than `timeouts.streamIdle`, up to `tunnelIdle`, at both sidecars. An answer with a
 * content-length that stops moving is a stalled download and is still cut after `streamIdle`.
 * The chain is real: an app caller → outbound → inbound (mTLS) → an HTTP/1.1 app.
 */

let pki: TestPki;
const closers: (() => Promise<void>)[] = [];
beforeAll(() => {
  pki = testPki();
});
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

/** Silence between the two events: three times streamIdle, well inside tunnelIdle. */
const gapMs = 600;
const timeouts = { ...defaultTimeouts, streamIdleMs: 200, tunnelIdleMs: 10_000 };

/** The chain; the app answers /events with server-sent events and /download with the same bytes and a length. */
async function chain(): Promise<string> {
  const app = createServer((req, res) => {
    const first = 'data: first\n\n';
    const second = 'data: second\n\n';
    res.writeHead(200, req.url === '/download'
      ? { 'content-type': 'application/octet-stream', 'content-length': first.length + second.length }
      : { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.write(first);
    const timer = setTimeout(() => res.end(second), gapMs);
    res.on('close', () => clearTimeout(timer));
  });
  const appAddress = await listen(app);
  const inbound = new Inbound({ certPem: pki.echo.certPem, chainPem: [pki.west.certPem], keyPem: pki.echo.keyPem, trustBundle: [pki.root.certPem], identity: echoId },
    appAddress, silentLogger, {}, timeouts);
  const inboundAddress = await listen(inbound.server as unknown as Server);
  const upstreams = new Upstreams(() => clientContext(pki));
  const outbound = createOutbound({ cluster: 'west', routing: routingTo([inboundAddress]), upstreams, logger: silentLogger, timeouts });
  const outboundAddress = await listen(outbound);
  closers.push(async () => {
    outbound.closeAllConnections();
    await new Promise<void>((resolve) => outbound.close(() => resolve()));
    await upstreams.close();
    await inbound.close();
    app.closeAllConnections();
    await new Promise<void>((resolve) => app.close(() => resolve()));
  });
  return outboundAddress;
}

interface Got { status: number; body: string; cut: boolean }

/** An HTTP/1.1 GET to the outbound, as an app sends it: the body it got and whether it was cut short. */
function http1Get(outbound: string, path: string): Promise<Got> {
  const [host, port] = outbound.split(':') as [string, string];
  return new Promise((resolve, reject) => {
    const req = request({ host, port: Number(port), path, headers: { host: 'echo.demo.mesh', accept: 'text/event-stream' } }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => { body += c.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, cut: false }));
      res.on('error', () => resolve({ status: res.statusCode ?? 0, body, cut: true }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The same from an h2c app (prior knowledge): a reset stream is a cut. */
async function h2cGet(outbound: string, path: string): Promise<Got> {
  const session = connect(`http://${outbound}`);
  session.on('error', () => undefined);
  try {
    const stream = session.request({ ':method': 'GET', ':path': path, ':authority': 'echo.demo.mesh', accept: 'text/event-stream' });
    return await new Promise<Got>((resolve) => {
      let status = 0;
      let body = '';
      stream.on('response', (h) => { status = Number(h[':status']); });
      stream.on('data', (c: Buffer) => { body += c.toString(); });
      stream.on('error', () => undefined);
      stream.on('close', () => resolve({ status, body, cut: stream.rstCode !== 0 }));
    });
  } finally {
    session.close();
  }
}

describe.each([
  ['HTTP/1.1', http1Get],
  ['h2c', h2cGet],
])('an app speaking %s through the outbound and an inbound to an HTTP/1.1 app', (_protocol, get) => {
  test('server-sent events silent for three times streamIdle between two events: both arrive, the answer ends whole', async () => {
    const outbound = await chain();
    expect(await get(outbound, '/events')).toEqual({ status: 200, body: 'data: first\n\ndata: second\n\n', cut: false });
  });

  test('the same silence in an answer with a content-length: a stalled download, cut after streamIdle', async () => {
    const outbound = await chain();
    expect(await get(outbound, '/download')).toEqual({ status: 200, body: 'data: first\n\n', cut: true });
  });
});
