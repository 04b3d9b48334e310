import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { connect as netConnect, createServer as createNetServer } from 'node:net';
import { connect as h2Connect } from 'node:http2';
import type { AddressInfo, Server } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { afterEach, beforeAll, describe, expect, test } from 'vitest';
import { h2Get } from '../../test/helpers/h2.js';
import { echoId, testPki, type TestPki } from '../../test/helpers/sidecar-fixtures.js';
import { silentLogger } from '../core/log.js';
import { policyRecordFromDocument } from '../model/policy-kinds.js';
import type { PolicyRecord } from '../model/policy-records.js';
import { InboundAuthorization } from './authz-layer.js';
import { Inbound } from './inbound.js';
import { TcpInbound } from './tcp-inbound.js';
import { tcpAlpn } from './tcp-protocol.js';

/**
 * The inbound's drain, the first step of a sidecar stopping on SIGTERM: real TLS from our CA,
 * a real app behind it, callers on kept HTTP/1.1 connections and on an HTTP/2 session.
 */
// 127.0.119.4: this area's loopback range (inbound-authz.test.ts has 127.0.119.1)
const host = '127.0.119.4';
let pki: TestPki;
let app: HttpServer;
let inbound: Inbound | undefined;

beforeAll(async () => {
  pki = testPki();
  // `/slow?ms=N` answers after N ms; anything else at once.
  app = createHttpServer((req, res) => {
    const ms = Number(new URL(req.url ?? '/', 'http://app').searchParams.get('ms') ?? 0);
    setTimeout(() => res.end(`answered ${req.url}`), ms);
  });
  await new Promise<void>((resolve) => app.listen(0, host, resolve));
  return async () => { await new Promise((resolve) => app.close(resolve)); };
});

afterEach(async () => {
  await inbound?.close();
  inbound = undefined;
});

async function startInbound(authz?: InboundAuthorization): Promise<number> {
  inbound = new Inbound({ certPem: pki.echo.certPem, chainPem: [pki.west.certPem], keyPem: pki.echo.keyPem, trustBundle: [pki.root.certPem], identity: echoId },
    `${host}:${(app.address() as AddressInfo).port}`, silentLogger, {}, undefined, 'http', authz);
  await new Promise<void>((resolve) => (inbound?.server as unknown as Server).listen(0, host, resolve));
  return ((inbound.server as unknown as Server).address() as AddressInfo).port;
}

const tlsOptions = (port: number, alpn: string) => ({
  host, port, cert: pki.client.certPem + pki.west.certPem, key: pki.client.keyPem, ca: pki.root.certPem, checkServerIdentity: () => undefined, ALPNProtocols: [alpn],
});

/** A kept HTTP/1.1 connection, over mTLS or (`plain`) in plain text: send a GET, read the answers as text. */
async function keptConnection(port: number, plain = false): Promise<{ socket: TLSSocket; text: () => string; closed: Promise<void>; get(path: string): void }> {
  const socket = plain ? netConnect(port, host) as TLSSocket : tlsConnect(tlsOptions(port, 'http/1.1'));
  await new Promise<void>((resolve, reject) => { socket.once(plain ? 'connect' : 'secureConnect', resolve); socket.once('error', reject); });
  let text = '';
  socket.on('data', (c: Buffer) => { text += c.toString(); });
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return { socket, text: () => text, closed, get: (path) => socket.write(`GET ${path} HTTP/1.1\r\nhost: echo.demo.mesh\r\n\r\n`) };
}

const within = <T>(p: Promise<T>, ms: number, what: string) =>
  Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what} not within ${ms} ms`)), ms))]);

describe('Inbound.drain', () => {
  test('a request in flight finishes, its answer says connection: close and the connection closes after it; an idle kept connection closes at once; a new caller is refused', async () => {
    const port = await startInbound();
    const idle = await keptConnection(port);
    idle.get('/');
    await within(new Promise<void>((resolve) => { const t = setInterval(() => { if (idle.text().includes('answered /')) { clearInterval(t); resolve(); } }, 5); }), 3000, 'the first answer');
    expect(idle.text()).toMatch(/connection: keep-alive/i);
    const busy = await keptConnection(port);
    busy.get('/slow?ms=600');
    await new Promise((r) => setTimeout(r, 100));

    const drained = inbound?.drain(5000) as Promise<number>;
    await within(idle.closed, 1000, 'the idle connection closing');
    // The listener is closed: a new caller cannot connect, so it tries another endpoint.
    const refused = await new Promise<string>((resolve) => {
      const s = tlsConnect(tlsOptions(port, 'http/1.1'));
      s.once('secureConnect', () => { s.destroy(); resolve('connected'); });
      s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    });
    expect(refused).toBe('ECONNREFUSED');
    await within(busy.closed, 3000, 'the busy connection closing after its answer');
    expect(busy.text()).toMatch(/^HTTP\/1\.1 200/);
    expect(busy.text()).toMatch(/connection: close/i);
    expect(busy.text()).toContain('answered /slow?ms=600');
    // Nothing left open: it ended with the answer, not at the deadline (which would leave 1).
    expect(await drained).toBe(0);
  });

  test('in a permissive namespace, plain-text callers are drained the same way', async () => {
    const record = (kind: string, name: string, spec: object) => policyRecordFromDocument({ apiVersion: 'isthmus.dev/v1alpha1', kind, metadata: kind === 'MeshNamespace' ? { name } : { name, namespace: 'demo' }, spec }, `${name}.yaml`, new Date()) as PolicyRecord;
    const authz = new InboundAuthorization('demo', 'echo');
    authz.set([record('MeshNamespace', 'demo', { mtls: { mode: 'permissive' } }), record('AuthorizationPolicy', 'echo-anyone', { service: 'echo', allow: [{ name: 'anyone' }] })]);
    const port = await startInbound(authz);
    const idle = await keptConnection(port, true);
    idle.get('/');
    await within(new Promise<void>((resolve) => { const t = setInterval(() => { if (idle.text().includes('answered /')) { clearInterval(t); resolve(); } }, 5); }), 3000, 'the plain-text answer');
    const busy = await keptConnection(port, true);
    busy.get('/slow?ms=400');
    await new Promise((r) => setTimeout(r, 100));
    const drained = inbound?.drain(5000) as Promise<number>;
    await within(idle.closed, 1000, 'the idle plain-text connection closing');
    await within(busy.closed, 3000, 'the busy plain-text connection closing after its answer');
    expect(busy.text()).toMatch(/connection: close/i);
    expect(busy.text()).toContain('answered /slow?ms=400');
    expect(await drained).toBe(0);
  });

  test('a request that outlasts the drain is still open at the deadline: drain says so, and close() ends it', async () => {
    const port = await startInbound();
    const busy = await keptConnection(port);
    busy.get('/slow?ms=5000');
    await new Promise((r) => setTimeout(r, 100));
    const started = performance.now();
    expect(await inbound?.drain(300)).toBe(1);
    expect(performance.now() - started).toBeGreaterThanOrEqual(290);
    expect(busy.text()).toBe('');
    await inbound?.close();
    inbound = undefined;
    await within(busy.closed, 1000, 'the connection closing');
  });

  test('an HTTP/2 session gets a GOAWAY; the stream in flight is answered, no new stream is taken', async () => {
    const port = await startInbound();
    const session = h2Connect(`https://${host}:${port}`, { ...tlsOptions(port, 'h2'), ALPNProtocols: ['h2'] });
    session.on('error', () => undefined);
    const goaway = new Promise<void>((resolve) => session.once('goaway', () => resolve()));
    expect((await h2Get(session, '/')).status).toBe(200);
    const inFlight = h2Get(session, '/slow?ms=500');
    await new Promise((r) => setTimeout(r, 100));
    const drained = inbound?.drain(5000) as Promise<number>;
    await within(goaway, 2000, 'the GOAWAY');
    expect(await inFlight).toEqual({ status: 200, body: 'answered /slow?ms=500' });
    await expect(h2Get(session, '/')).rejects.toThrow();
    session.close();
    expect(await drained).toBe(0);
  });

  test('a TCP inbound takes no new connection; the one open runs on until it ends', async () => {
    // An echo app that ends its side when the caller ends theirs.
    const echo = createNetServer({ allowHalfOpen: true }, (socket) => { socket.pipe(socket); });
    await new Promise<void>((resolve) => echo.listen(0, host, resolve));
    const tcp = new TcpInbound({ certPem: pki.echo.certPem, chainPem: [pki.west.certPem], keyPem: pki.echo.keyPem, trustBundle: [pki.root.certPem] },
      `${host}:${(echo.address() as AddressInfo).port}`, silentLogger);
    await new Promise<void>((resolve) => tcp.server.listen(0, host, resolve));
    const port = (tcp.server.address() as AddressInfo).port;
    try {
      const caller = tlsConnect({ ...tlsOptions(port, tcpAlpn) });
      caller.on('error', () => undefined);
      let got = '';
      caller.on('data', (c: Buffer) => { got += c.toString(); });
      await new Promise<void>((resolve) => caller.once('secureConnect', () => resolve()));
      caller.write('before ');
      await new Promise((r) => setTimeout(r, 100));
      const drained = tcp.drain(5000);
      const refused = await new Promise<string>((resolve) => {
        const s = tlsConnect(tlsOptions(port, tcpAlpn));
        s.once('secureConnect', () => { s.destroy(); resolve('connected'); });
        s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
      });
      expect(refused).toBe('ECONNREFUSED');
      caller.end('during the drain');
      await within(new Promise((resolve) => caller.once('close', resolve)), 3000, 'the session ending');
      expect(got).toBe('before during the drain');
      expect(await drained).toBe(0);
    } finally {
      await tcp.close();
      await new Promise((resolve) => echo.close(resolve));
    }
  });
});
