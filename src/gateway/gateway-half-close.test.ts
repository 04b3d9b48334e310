import { createHash, randomBytes } from 'node:crypto';
import { connect as tcpConnect, type AddressInfo } from 'node:net';
import { connect, createServer, type Server } from 'node:tls';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { silentLogger } from '../core/log.js';
import { createMetrics } from '../telemetry/metrics.js';
import { createIntermediateCa, createRootCa, issueCertificate } from '../trust/ca.js';
import { Gateway } from './gateway.js';

/**
 * Plain TCP services rely on the gateway passing a half-close through: the caller sends its
 * last bytes and a FIN (a TLS close_notify, then TCP FIN), and the answer must still come back
 * on the other direction. Real TLS end to end through a real gateway, as in a mesh, with each of
 * the gateway's relays: the native module's thread (the default) and JavaScript (`relay: node`).
 */

describe.each(['native', 'node'] as const)('with the %s relay', (relay) => {
  let destination: Server;
  let gateway: Gateway;
  let gatewayPort: number;
  let rootPem: string;

  beforeAll(async () => {
    const root = createRootCa({ trustDomain: 'example.org' });
    const west = createIntermediateCa({ root, trustDomain: 'example.org', cluster: 'west' });
    const leaf = issueCertificate({ identity: 'spiffe://example.org/ns/demo/sa/echo', issuer: west });
    rootPem = root.certPem;
    // Reads to the end of the caller's stream, then answers with the hash of what came.
    destination = createServer({ cert: leaf.certPem + west.certPem, key: leaf.keyPem, allowHalfOpen: true }, (socket) => {
      const hash = createHash('sha256');
      socket.on('data', (chunk: Buffer) => hash.update(chunk));
      socket.on('end', () => socket.end(hash.digest('hex')));
      socket.on('error', () => socket.destroy());
    });
    await new Promise<void>((resolve) => destination.listen(0, '127.0.0.1', resolve));
    const destinationAddress = `127.0.0.1:${(destination.address() as AddressInfo).port}`;

    gateway = new Gateway({
      cluster: 'west', trustDomain: 'example.org', id: 'gw-1', zone: 'west-a', listen: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 },
      federationUrl: 'https://127.0.0.1:1', caDir: '.', clientHelloTimeoutMs: 5_000, connectTimeoutMs: 2_000, idleTimeoutMs: 60_000, drainTimeoutMs: 5_000, relay,
    }, silentLogger);
    gateway.setRoutes({ version: 1, cluster: 'west', services: [{ namespace: 'demo', name: 'echo', identities: [], endpoints: [{ address: destinationAddress, zone: 'west-a', healthy: true }] }] });
    gatewayPort = (await gateway.listen()).port;
  });

  afterAll(async () => {
    await gateway?.close();
    await new Promise((resolve) => destination?.close(resolve));
  });

  test('a caller that half-closes through the gateway still gets the whole answer', async () => {
    const payload = randomBytes(2 * 1024 * 1024);
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect({
        host: '127.0.0.1', port: gatewayPort, servername: 'echo.demo.svc.west.isthmus', ca: rootPem,
        checkServerIdentity: () => undefined, ...({ allowHalfOpen: true } as object),
      });
      let received = '';
      socket.on('data', (chunk: Buffer) => { received += chunk.toString(); });
      socket.once('secureConnect', () => socket.end(payload));
      socket.on('error', reject);
      socket.on('close', () => resolve(received));
    });
    expect(answer).toBe(createHash('sha256').update(payload).digest('hex'));
    expect(gateway.stats.routed).toBeGreaterThanOrEqual(1);
    // The connection log says how it ended and what crossed it: the 2 MiB upload and the
    // 64-character answer, each in TLS records, and the handshakes.
    for (let i = 0; gateway.connections.recent()[0]?.ended === undefined && i < 50; i += 1) await new Promise((r) => setTimeout(r, 20));
    const ended = gateway.connections.recent()[0]?.ended;
    expect(ended?.end).toBe('closed');
    expect(ended?.fromCaller).toBeGreaterThan(payload.length);
    expect(ended?.fromCaller).toBeLessThan(payload.length * 1.01 + 4096);
    expect(ended?.fromEndpoint).toBeGreaterThan(64);
    expect(ended?.fromEndpoint).toBeLessThan(16 * 1024);
    // The connection is over on the gateway's side too: nothing held, nothing counted as active.
    for (let i = 0; (gateway.openConnections > 0 || gateway.stats.active > 0) && i < 50; i += 1) await new Promise((r) => setTimeout(r, 20));
    expect(gateway.openConnections).toBe(0);
    expect(gateway.stats.active).toBe(0);
  });

  test('an open connection\'s bytes so far show in /debug/connections and isthmus_gateway_bytes_total before it ends, and each byte counts once', async () => {
    const metrics = createMetrics('gateway', { cluster: 'west' }, { origins: [gateway] });
    const scrape = async () => {
      const text = await metrics.registry.metrics();
      const value = (direction: string) => Number(new RegExp(`^isthmus_gateway_bytes_total\\{[^}]*destination_service="demo/echo",direction="${direction}"\\} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
      return { fromCaller: value('from_caller'), fromEndpoint: value('from_endpoint') };
    };
    const before = await scrape();
    const payload = randomBytes(256 * 1024);
    const socket = connect({ host: '127.0.0.1', port: gatewayPort, servername: 'echo.demo.svc.west.isthmus', ca: rootPem, checkServerIdentity: () => undefined, ...({ allowHalfOpen: true } as object) });
    let answer = '';
    socket.on('data', (chunk: Buffer) => { answer += chunk.toString(); });
    const closed = new Promise((resolve) => socket.once('close', resolve));
    await new Promise((resolve, reject) => { socket.once('secureConnect', resolve); socket.once('error', reject); });
    socket.write(payload);
    // The destination answers only at the end: once the upload has crossed, nothing moves.
    const settled = async () => {
      let last = -1;
      for (let i = 0; i < 100; i += 1) {
        const now = gateway.connections.recent()[0]?.bytes?.fromCaller ?? 0;
        if (now > payload.length && now === last) return;
        last = now;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`the upload did not settle in the connection log (${last} bytes)`);
    };
    await settled();
    const entry = gateway.connections.recent()[0];
    expect(entry?.ended).toBeUndefined();
    expect(entry?.bytes?.fromCaller).toBeLessThan(payload.length * 1.01 + 4096);
    expect(entry?.bytes?.fromEndpoint).toBeGreaterThan(0); // the server's handshake
    const open = await scrape();
    expect({ fromCaller: open.fromCaller - before.fromCaller, fromEndpoint: open.fromEndpoint - before.fromEndpoint }).toEqual(entry?.bytes);
    socket.end();
    await closed;
    expect(answer).toBe(createHash('sha256').update(payload).digest('hex'));
    for (let i = 0; gateway.connections.recent()[0]?.ended === undefined && i < 50; i += 1) await new Promise((r) => setTimeout(r, 20));
    const ended = gateway.connections.recent()[0]?.ended;
    expect(ended?.end).toBe('closed');
    expect(gateway.connections.recent()[0]?.bytes).toBeUndefined();
    const after = await scrape();
    expect({ fromCaller: after.fromCaller - before.fromCaller, fromEndpoint: after.fromEndpoint - before.fromEndpoint }).toEqual({ fromCaller: ended?.fromCaller, fromEndpoint: ended?.fromEndpoint });
    metrics.close();
  });

  test('the relay is the one configured', () => {
    expect(gateway.relayKind).toBe(relay);
  });

  test('a peer that closes before sending a ClientHello (a TCP health check) is closed at once, not counted as refused', async () => {
    const refusedBefore = { ...gateway.stats.refused };
    await new Promise<void>((resolve) => {
      const socket = tcpConnect({ host: '127.0.0.1', port: gatewayPort, allowHalfOpen: true });
      socket.once('connect', () => socket.end());
      socket.on('error', () => undefined);
      // With allowHalfOpen, only the gateway closing its side ends this.
      socket.on('close', () => resolve());
    });
    expect(gateway.stats.refused).toEqual(refusedBefore);
  });

  test('a gateway that closes closes the connections it carries', async () => {
    const closed = await new Promise<boolean>((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port: gatewayPort, servername: 'echo.demo.svc.west.isthmus', ca: rootPem, checkServerIdentity: () => undefined });
      socket.on('error', () => undefined);
      socket.once('secureConnect', () => {
        socket.write('partial');
        // Give the destination time to read it, then stop the gateway under the open connection.
        setTimeout(() => { void gateway.close().then(() => undefined, reject); }, 50);
      });
      socket.once('close', () => resolve(true));
    });
    expect(closed).toBe(true);
    for (let i = 0; gateway.openConnections > 0 && i < 50; i += 1) await new Promise((r) => setTimeout(r, 20));
    expect(gateway.openConnections).toBe(0);
  });
});
