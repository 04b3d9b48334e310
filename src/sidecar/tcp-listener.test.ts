import { createHash, randomBytes } from 'node:crypto';
import { createServer as createHttpServer } from 'node:http';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, createSecureContext, type ConnectionOptions } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { silentLogger } from '../core/log.js';
import { createIntermediateCa, createRootCa, issueCertificate } from '../trust/ca.js';
import { clientContext, echoId, listen, routingTo, testPki, trustDomain, type TestPki } from '../../test/helpers/sidecar-fixtures.js';
import type { RoutingTable } from './routing.js';
import { TcpInbound } from './tcp-inbound.js';
import { TcpListener } from './tcp-listener.js';
import { Upstreams } from './upstreams.js';

/**
 * A TCP service within one cluster, with real sockets and real certificates: app ← TCP inbound
 * (mTLS, ALPN isthmus-tcp) ← TCP fixed listener (routing, identity check) ← a plain TCP client.
 * The app answers only once the client has half-closed, so every test that gets an answer
 * shows that a half-close travels through both sidecars while the other direction stays open.
 */

let pki: TestPki;
let app: Server;
let appConnections = 0;
let inbound: TcpInbound;
const closers: (() => Promise<void>)[] = [];

/** Reads everything until the caller's FIN, then answers `echo:<sha256 of what came>` and ends. */
function startApp(): Promise<string> {
  app = createServer({ allowHalfOpen: true }, (socket) => {
    appConnections += 1;
    const hash = createHash('sha256');
    socket.on('data', (chunk: Buffer) => hash.update(chunk));
    socket.on('end', () => socket.end(`echo:${hash.digest('hex')}`));
    socket.on('error', () => socket.destroy());
  });
  return listen(app);
}

async function startListener(routing: RoutingTable, idleTimeoutMs?: number): Promise<string> {
  const upstreams = new Upstreams(() => clientContext(pki));
  const listener = new TcpListener({ routing, upstreams, logger: silentLogger, idleTimeoutMs }, { namespace: 'demo', service: 'echo' }, () => 'tcp');
  closers.push(async () => { await listener.close(); await upstreams.close(); });
  return await listen(listener.server);
}

/** Sends `payload`, half-closes, and returns what came back before the connection closed. */
async function exchange(address: string, payload: Buffer): Promise<string> {
  const [host, port] = address.split(':') as [string, string];
  return await new Promise((resolve) => {
    const socket: Socket = connect({ host, port: Number(port), allowHalfOpen: true });
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(Buffer.concat(chunks).toString()));
    socket.end(payload);
  });
}

beforeAll(async () => {
  pki = testPki();
  const appAddress = await startApp();
  inbound = new TcpInbound({ certPem: pki.echo.certPem, chainPem: [pki.west.certPem], keyPem: pki.echo.keyPem, trustBundle: [pki.root.certPem] }, appAddress, silentLogger);
  await listen(inbound.server as unknown as Server);
});

afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

afterAll(async () => {
  await inbound?.close();
  await new Promise((resolve) => app?.close(resolve));
});

const inboundAddress = () => `127.0.0.1:${(inbound.server.address() as AddressInfo).port}`;

describe('a TCP fixed listener and a TCP inbound in one cluster', () => {
  test('1 MiB goes up, the client half-closes, and the app\'s answer still comes back', async () => {
    const listener = await startListener(routingTo([inboundAddress()], [echoId]));
    const payload = randomBytes(1024 * 1024);
    expect(await exchange(listener, payload)).toBe(`echo:${createHash('sha256').update(payload).digest('hex')}`);
  });

  test('an endpoint that refuses connections is skipped: the next one serves, every time', async () => {
    const dead = createServer();
    const deadAddress = await listen(dead);
    await new Promise((resolve) => dead.close(resolve));
    const listener = await startListener(routingTo([deadAddress, inboundAddress()], [echoId]));
    for (let i = 0; i < 6; i += 1) expect(await exchange(listener, Buffer.from(`hello ${i}`))).toMatch(/^echo:/);
  });

  test('a destination whose SPIFFE ID the catalog does not allow gets nothing: the client is closed', async () => {
    const before = appConnections;
    const listener = await startListener(routingTo([inboundAddress()], [`spiffe://${trustDomain}/ns/demo/sa/someone-else`]));
    expect(await exchange(listener, Buffer.from('secret'))).toBe('');
    expect(appConnections).toBe(before);
  });

  test('a service no cluster runs: the client is closed at once', async () => {
    const routing = routingTo([inboundAddress()], [echoId]);
    const upstreams = new Upstreams(() => createSecureContext({ ca: pki.root.certPem }));
    const listener = new TcpListener({ routing, upstreams, logger: silentLogger }, { namespace: 'demo', service: 'nope' }, () => 'tcp');
    closers.push(async () => { await listener.close(); await upstreams.close(); });
    expect(await exchange(await listen(listener.server), Buffer.from('x'))).toBe('');
  });

  test('a connection with no byte either way is closed after the idle timeout', async () => {
    const listener = await startListener(routingTo([inboundAddress()], [echoId]), 300);
    const [host, port] = listener.split(':') as [string, string];
    const socket = connect({ host, port: Number(port) });
    socket.on('error', () => undefined);
    await new Promise<void>((resolve) => socket.on('close', () => resolve()));
    expect(socket.destroyed).toBe(true);
  });

  test('left to the catalog and the catalog says http: the connection goes to the HTTP server', async () => {
    const http = createHttpServer((_req, res) => res.end('served as http'));
    const routing = routingTo([inboundAddress()], [echoId]);
    const upstreams = new Upstreams(() => createSecureContext({ ca: pki.root.certPem }));
    const listener = new TcpListener({ routing, upstreams, logger: silentLogger }, { namespace: 'demo', service: 'echo' }, () => 'http', http);
    closers.push(async () => { await listener.close(); await upstreams.close(); });
    const res = await fetch(`http://${await listen(listener.server)}/`);
    expect(await res.text()).toBe('served as http');
  });
});

describe('the TCP inbound refuses callers before any byte reaches the app', () => {
  const ping = async (options: ConnectionOptions): Promise<string> => {
    const [host, port] = inboundAddress().split(':') as [string, string];
    return await new Promise((resolve) => {
      let received = '';
      const socket = tlsConnect({ host, port: Number(port), servername: 'echo.demo.svc.west.isthmus', checkServerIdentity: () => undefined, ...options });
      socket.once('secureConnect', () => socket.end('hello'));
      socket.on('data', (c: Buffer) => { received += c.toString(); });
      socket.on('error', () => resolve(received));
      socket.on('close', () => resolve(received));
    });
  };
  // Functions: the certificates exist only once beforeAll has run.
  const withCert = () => ({ cert: pki.client.certPem + pki.west.certPem, key: pki.client.keyPem, ca: pki.root.certPem });

  test.each([
    ['no client certificate', () => ({ rejectUnauthorized: false, ALPNProtocols: ['isthmus-tcp'] })],
    ['a certificate from another mesh', () => {
      const other = createRootCa({ trustDomain: 'other.org' });
      const leaf = issueCertificate({ identity: 'spiffe://other.org/ns/demo/sa/client', issuer: createIntermediateCa({ root: other, trustDomain: 'other.org', cluster: 'x' }) });
      return { cert: leaf.certPem, key: leaf.keyPem, rejectUnauthorized: false, ALPNProtocols: ['isthmus-tcp'] };
    }],
    ['a mesh certificate but no isthmus-tcp ALPN', () => ({ ...withCert(), ALPNProtocols: ['http/1.1'] })],
  ])('%s', async (_what, options) => {
    const before = appConnections;
    expect(await ping(options())).toBe('');
    expect(appConnections).toBe(before);
  });

  test('a peer that connects and leaves without a handshake (a TCP health check) is closed at once, not counted as refused', async () => {
    const before = { ...inbound.stats.refused };
    const [host, port] = inboundAddress().split(':') as [string, string];
    await new Promise<void>((resolve) => {
      const socket = connect({ host, port: Number(port), allowHalfOpen: true });
      socket.once('connect', () => socket.end());
      socket.on('error', () => undefined);
      socket.on('close', () => resolve()); // only the inbound closing its side ends this
    });
    expect(inbound.stats.refused).toEqual(before);
  });

  test('the control: a mesh certificate with ALPN isthmus-tcp reaches the app', async () => {
    expect(await ping({ ...withCert(), ALPNProtocols: ['isthmus-tcp'] })).toMatch(/^echo:/);
  });
});
