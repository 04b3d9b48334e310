import { createServer, type Server } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, beforeAll, describe, expect, test } from 'vitest';
import { keys } from '../core/keys.js';
import { silentLogger } from '../core/log.js';
import type { Catalog } from '../model/catalog.js';
import type { ProbeRecord } from '../model/records.js';
import { createIntermediateCa, createRootCa, issueCertificate, type CertAndKey } from '../trust/ca.js';
import { GatewayConnection, GatewayProber, type ProbeTarget } from './gateway-prober.js';

/**
 * The probe's connection handling against a real HTTPS server on port 0 standing in for a gateway
 * (which only pipes bytes) and the remote federation behind it: one kept connection across
 * probes, one reconnect when the peer closes it, identity refused, nothing left open.
 */

const west = 'spiffe://example.org/cluster/west/federation';
const east = 'spiffe://example.org/cluster/east/federation';

let root: CertAndKey;
let westCa: CertAndKey;

/** What the fake federation answers to /healthz. */
type Answer = 'ok' | 'chunked' | 'unavailable' | 'close' | 'never';

interface FakeFederation {
  target: ProbeTarget;
  /** TCP connections accepted so far. */
  accepted(): number;
  /** Connections still open on the server side. */
  open(): Set<Socket>;
  answer: Answer;
  close(): Promise<void>;
}

const started: FakeFederation[] = [];

async function fakeFederation(identity = west): Promise<FakeFederation> {
  const leaf = issueCertificate({ identity, issuer: westCa });
  const sockets = new Set<Socket>();
  let accepted = 0;
  const server: Server = createServer({ key: leaf.keyPem, cert: leaf.certPem + westCa.certPem, keepAliveTimeout: 60_000 }, (req, res) => {
    if (req.url !== '/healthz') return void res.writeHead(404).end();
    switch (fake.answer) {
      case 'ok': return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
      case 'chunked': res.writeHead(200, { 'content-type': 'application/json' }); res.write('{"status":'); setTimeout(() => res.end('"ok"}'), 5); return;
      case 'unavailable': return void res.writeHead(503).end('{"status":"starting"}');
      case 'close': return void res.writeHead(200, { connection: 'close' }).end('{"status":"ok"}');
      case 'never': return;
    }
  });
  server.on('connection', (socket: Socket) => {
    accepted += 1;
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const fake: FakeFederation = {
    target: { host: '127.0.0.1', port, servername: 'probe.gateway.west.isthmus', expectedId: west, roots: [root.certPem], timeoutMs: 1000 },
    accepted: () => accepted,
    open: () => sockets,
    answer: 'ok',
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
  started.push(fake);
  return fake;
}

async function until(check: () => boolean, what: string, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

beforeAll(() => {
  root = createRootCa({ trustDomain: 'example.org' });
  westCa = createIntermediateCa({ root, trustDomain: 'example.org', cluster: 'west' });
});

afterEach(async () => {
  await Promise.all(started.splice(0).map((f) => f.close()));
});

describe('GatewayConnection (a kept connection to a real TLS server)', () => {
  test('consecutive probes reuse one connection; only the first carries a handshake', async () => {
    const fake = await fakeFederation();
    const connection = new GatewayConnection(fake.target);
    const samples = [];
    for (let i = 0; i < 4; i++) samples.push(await connection.probe());
    expect(fake.accepted()).toBe(1);
    expect(samples.map((s) => s.ok)).toEqual([true, true, true, true]);
    expect(samples[0]?.handshakeMs).toBeGreaterThan(0);
    expect(samples.slice(1).map((s) => s.handshakeMs)).toEqual([undefined, undefined, undefined]);
    for (const s of samples) if (s.ok) expect(s.ms).toBeGreaterThan(0);
    await connection.close();
    await until(() => fake.open().size === 0, 'the server to see the connection close');
  });

  test('the peer closes the kept connection: exactly one reconnect, and the sample after it succeeds', async () => {
    const fake = await fakeFederation();
    const connection = new GatewayConnection(fake.target);
    expect((await connection.probe()).ok).toBe(true);
    // Closed while idle, and probed at once: whether the client notices the close before it
    // writes or only when its write fails, the probe must not report the path as broken.
    for (const socket of fake.open()) socket.destroy();
    const after = await connection.probe();
    expect(after).toMatchObject({ ok: true });
    expect(after.handshakeMs).toBeGreaterThan(0);
    expect(fake.accepted()).toBe(2);
    // Closed while idle and noticed before the next probe.
    for (const socket of fake.open()) socket.destroy();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await connection.probe()).toMatchObject({ ok: true, handshakeMs: expect.any(Number) });
    expect(await connection.probe()).toEqual({ ok: true, ms: expect.any(Number) });
    expect(fake.accepted()).toBe(3);
    await connection.close();
  });

  test('an answer with "connection: close" is a good sample; the next probe reconnects once', async () => {
    const fake = await fakeFederation();
    fake.answer = 'close';
    const connection = new GatewayConnection(fake.target);
    expect(await connection.probe()).toMatchObject({ ok: true, handshakeMs: expect.any(Number) });
    fake.answer = 'ok';
    expect(await connection.probe()).toMatchObject({ ok: true, handshakeMs: expect.any(Number) });
    expect(await connection.probe()).toEqual({ ok: true, ms: expect.any(Number) });
    expect(fake.accepted()).toBe(2);
    await connection.close();
  });

  test('a chunked body is read to its end; a 503 fails the sample but keeps the connection', async () => {
    const fake = await fakeFederation();
    const connection = new GatewayConnection(fake.target);
    fake.answer = 'chunked';
    const chunked = await connection.probe();
    expect(chunked).toMatchObject({ ok: true });
    if (chunked.ok) expect(chunked.ms).toBeGreaterThanOrEqual(4);
    fake.answer = 'unavailable';
    expect(await connection.probe()).toEqual({ ok: false, error: '/healthz answered 503' });
    fake.answer = 'ok';
    expect(await connection.probe()).toEqual({ ok: true, ms: expect.any(Number) });
    expect(fake.accepted()).toBe(1);
    await connection.close();
  });

  test('a peer with another identity fails, and is not kept', async () => {
    const fake = await fakeFederation(east);
    const connection = new GatewayConnection(fake.target);
    const sample = await connection.probe();
    expect(sample).toEqual({ ok: false, error: `the peer is ${east}, not ${west}` });
    await until(() => fake.open().size === 0, 'the refused connection to close');
    expect((await connection.probe()).ok).toBe(false);
    expect(fake.accepted()).toBe(2);
    await connection.close();
  });

  test('no answer within the timeout fails, drops the connection, and the next probe reconnects', async () => {
    const fake = await fakeFederation();
    const connection = new GatewayConnection(fake.target);
    expect((await connection.probe()).ok).toBe(true);
    fake.answer = 'never';
    expect(await connection.probe()).toEqual({ ok: false, error: 'no answer within 1000 ms' });
    await until(() => fake.open().size === 0, 'the timed-out connection to close');
    fake.answer = 'ok';
    expect(await connection.probe()).toMatchObject({ ok: true, handshakeMs: expect.any(Number) });
    expect(fake.accepted()).toBe(2);
    await connection.close();
  });

  test('nothing listening: a failed sample with the connect error', async () => {
    const fake = await fakeFederation();
    const target = { ...fake.target };
    await fake.close();
    expect(await new GatewayConnection(target).probe()).toEqual({ ok: false, error: expect.stringMatching(/ECONNREFUSED/) });
  });
});

describe('GatewayProber (kept connections across rounds)', () => {
  const catalog = (gateways: { id: string; port: number }[]): Catalog => ({
    revision: 1, services: [], invalidKeys: [],
    clusters: [
      { name: 'east', region: 'east', zones: ['a'], trustDomain: 'example.org', federation: '', joinedAt: '', alive: true, gateways: [] },
      { name: 'west', region: 'west', zones: ['a'], trustDomain: 'example.org', federation: '', joinedAt: '', alive: true, gateways: gateways.map((g) => ({ ...g, address: '127.0.0.1', zone: 'a' })) },
    ],
  });

  let baseline: number;
  const tcpSockets = () => process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length;
  beforeAll(() => { baseline = tcpSockets(); });

  test('rounds reuse one connection per gateway; a gateway that left is closed; stop() leaves no socket open', async () => {
    const [a, b] = [await fakeFederation(), await fakeFederation()];
    let gateways = [{ id: 'gw-1', port: a.target.port }, { id: 'gw-2', port: b.target.port }];
    let published: ProbeRecord | undefined;
    const prober = new GatewayProber({
      cluster: 'east', intervalMs: 1000, catalog: () => catalog(gateways), trustBundle: () => [root.certPem], logger: silentLogger,
      publish: (records) => { published = records.get(keys.probe('east', 'west')); },
    });
    for (let i = 0; i < 3; i++) await prober.round();
    expect([a.accepted(), b.accepted()]).toEqual([1, 1]);
    expect(published).toMatchObject({ from: 'east', to: 'west', samples: 6, failures: 0, handshakeP50Ms: expect.any(Number) });
    expect(published!.p50Ms).toBeLessThanOrEqual(published!.maxMs!);

    gateways = [{ id: 'gw-1', port: a.target.port }];
    await prober.round();
    await until(() => b.open().size === 0, 'the connection to the withdrawn gateway to close');
    expect(a.open().size).toBe(1);

    await prober.stop();
    await until(() => a.open().size === 0, 'the server to see the kept connection close');
    await Promise.all(started.splice(0).map((f) => f.close()));
    await until(() => tcpSockets() <= baseline, 'every TCP socket to be gone');
  });
});
