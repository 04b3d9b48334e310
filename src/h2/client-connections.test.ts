import { connect, createServer, type AddressInfo, type Server } from 'node:net';
import { connect as tlsConnect, createServer as createTlsServer } from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { serverTls, testPki } from '../../test/helpers/sidecar-fixtures.js';
import { H2ClientConnections } from './client-connections.js';
import { H2Connection } from './connection.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const clean of cleanups.splice(0).reverse()) await clean();
});

const listen = (server: Server): Promise<number> => new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));

/** An h2c server of ours answering 200 to everything; counts the connections it accepted. */
async function h2cServer() {
  const connections: H2Connection[] = [];
  const server = createServer((socket) => {
    connections.push(new H2Connection(socket, {
      role: 'server',
      onStream: (stream) => {
        stream.attach({ onHeaders: () => undefined, onData: (s, p) => s.consumed(p.length), onClose: () => undefined });
        stream.sendHeaders([':status', '200'], true);
      },
    }));
  });
  const port = await listen(server);
  cleanups.push(() => new Promise<void>((resolve) => { for (const c of connections) c.destroy(); server.close(() => resolve()); }));
  return { port, connections };
}

const plain = (port: number) => () => connect(port, '127.0.0.1');

/** One GET over `connection`; resolves with its close code. */
const get = (connection: H2Connection) => new Promise<number>((resolve) => {
  connection.request([':method', 'GET', ':scheme', 'http', ':path', '/', ':authority', 'x'], true, {
    onHeaders: () => undefined, onData: (s, p) => s.consumed(p.length), onClose: (_s, code) => resolve(code),
  });
});

function pool(idleMs = 60_000) {
  const connections = new H2ClientConnections(idleMs);
  cleanups.push(() => connections.closeAll(false));
  return connections;
}

describe('H2ClientConnections', () => {
  it('shares one connection per destination among the streams that ask at once', async () => {
    const server = await h2cServer();
    const connections = pool();
    const got = await Promise.all([1, 2, 3].map(() => connections.get('a', plain(server.port), 'connect', 2_000)));
    expect(new Set(got).size).toBe(1);
    expect(await Promise.all(got.map(get))).toEqual([0, 0, 0]);
    expect(server.connections.length).toBe(1);
  });

  it('opens a new connection after the server\'s GOAWAY, and after an idle close', async () => {
    const server = await h2cServer();
    const connections = pool(200);
    const first = await connections.get('a', plain(server.port), 'connect', 2_000);
    await get(first);
    server.connections[0]!.close();
    await waitFor(() => !first.usable);
    const second = await connections.get('a', plain(server.port), 'connect', 2_000);
    expect(second).not.toBe(first);
    expect(await get(second)).toBe(0);
    // Idle for longer than idleMs: closed gracefully, and the next get connects again.
    await waitFor(() => !second.usable, 3_000);
    const third = await connections.get('a', plain(server.port), 'connect', 2_000);
    expect(third).not.toBe(second);
    expect(server.connections.length).toBe(3);
  });

  it('rejects with the socket\'s own error when nothing listens, and connects again on the next ask', async () => {
    const server = createServer();
    const port = await listen(server);
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const connections = pool();
    await expect(connections.get('a', plain(port), 'connect', 2_000)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    await expect(connections.get('a', plain(port), 'connect', 2_000)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });

  it('refuses a TLS destination that does not negotiate h2 by ALPN, and times out one that never completes its handshake', async () => {
    const pki = testPki();
    // A TLS server that takes no part in ALPN (one that offers only http/1.1 fails the handshake itself).
    const accepted: { destroy: () => void }[] = [];
    const http1Only = createTlsServer({ ...serverTls(pki) }, (socket) => { socket.on('error', () => undefined); accepted.push(socket); });
    const port = await listen(http1Only as unknown as Server);
    cleanups.push(() => new Promise<void>((resolve) => { for (const a of accepted) a.destroy(); http1Only.close(() => resolve()); }));
    const tls = (p: number) => () => tlsConnect({ host: '127.0.0.1', port: p, ALPNProtocols: ['h2'], ca: pki.root.certPem, cert: pki.client.certPem + pki.west.certPem, key: pki.client.keyPem, checkServerIdentity: () => undefined });
    const connections = pool();
    await expect(connections.get('a', tls(port), 'secureConnect', 2_000)).rejects.toMatchObject({ code: 'ERR_HTTP2_ALPN' });
    const silent = createServer((socket) => { accepted.push(socket); });
    const silentPort = await listen(silent);
    cleanups.push(() => new Promise<void>((resolve) => { for (const a of accepted) a.destroy(); silent.close(() => resolve()); }));
    await expect(connections.get('b', tls(silentPort), 'secureConnect', 300)).rejects.toMatchObject({ code: 'UND_ERR_CONNECT_TIMEOUT' });
  });

  it('closes the connections to destinations that match, and keeps the others', async () => {
    const server = await h2cServer();
    const connections = pool();
    const a = await connections.get('gone:1', plain(server.port), 'connect', 2_000);
    const b = await connections.get('kept:1', plain(server.port), 'connect', 2_000);
    connections.destroyWhere((id) => id.startsWith('gone'));
    expect([a.usable, b.usable]).toEqual([false, true]);
    expect(await connections.get('kept:1', plain(server.port), 'connect', 2_000)).toBe(b);
    expect(await connections.get('gone:1', plain(server.port), 'connect', 2_000)).not.toBe(a);
  });
});

async function waitFor(check: () => boolean, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 10));
  }
}
