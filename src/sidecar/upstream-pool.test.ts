import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { createServer as createHttpsServer, type Server } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { channels, type UpstreamConnectMessage } from '../core/channels.js';
import { createIntermediateCa, createRootCa, issueCertificate, type CertAndKey } from '../trust/ca.js';
import { checkDestination } from './peer-identity.js';
import { buildConnector, type Connector, type ConnectorOptions } from '../core/undici.js';
import { UpstreamPool, type UpstreamPoolOptions } from './upstream-pool.js';

/**
 * The upstream pool against a real mTLS server: how many handshakes it runs at once, where a
 * request waits when every connection is busy, what happens to waiting requests when the
 * upstream refuses, and that later connections resume the first one's TLS session.
 */

const trustDomain = 'example.org';
const serverId = `spiffe://${trustDomain}/ns/demo/sa/ledger`;
const clientId = `spiffe://${trustDomain}/ns/demo/sa/client`;
let root: CertAndKey;
let cluster: CertAndKey;
let server: Server;
let address: { host: string; port: number };
/** What the server saw: full and resumed handshakes, connections, requests in flight now and at most. */
const seen = { full: 0, resumed: 0, connections: 0, inFlight: 0, maxInFlight: 0 };

beforeAll(async () => {
  root = createRootCa({ trustDomain });
  cluster = createIntermediateCa({ root, trustDomain, cluster: 'west' });
  server = createHttpsServer({ ...serverTls(), requestCert: true, rejectUnauthorized: true }, (req, res) => {
    seen.inFlight += 1;
    seen.maxInFlight = Math.max(seen.maxInFlight, seen.inFlight);
    // Every answer waits a little, so a burst finds every connection busy.
    setTimeout(() => {
      seen.inFlight -= 1;
      res.end((req.socket as TLSSocket).getPeerCertificate().subjectaltname ?? '');
    }, 15);
  });
  server.on('connection', () => { seen.connections += 1; });
  server.on('secureConnection', (socket: TLSSocket) => {
    if (socket.isSessionReused()) seen.resumed += 1;
    else seen.full += 1;
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  address = { host: '127.0.0.1', port: (server.address() as AddressInfo).port };
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

function serverTls() {
  const leaf = issueCertificate({ identity: serverId, issuer: cluster });
  return { cert: leaf.certPem + cluster.certPem, key: leaf.keyPem, ca: root.certPem, minVersion: 'TLSv1.3' as const };
}

function connectOptions(port = address.port): ConnectorOptions {
  const client = issueCertificate({ identity: clientId, issuer: cluster });
  return {
    host: address.host, port, servername: 'ledger.demo.mesh', timeout: 2_000,
    cert: client.certPem + cluster.certPem, key: client.keyPem, ca: root.certPem,
    checkServerIdentity: checkDestination([serverId]),
  };
}

/** Another mTLS server of the same identity, answering 'late' after `ms`. */
async function slowServer(ms: number): Promise<{ server: Server; port: number; close: () => Promise<void> }> {
  const slow = createHttpsServer({ ...serverTls(), requestCert: true, rejectUnauthorized: true }, (_req, res) => { setTimeout(() => res.end('late'), ms); });
  await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve));
  return {
    server: slow,
    port: (slow.address() as AddressInfo).port,
    close: async () => {
      slow.closeAllConnections();
      if (slow.listening) await new Promise((resolve) => slow.close(resolve));
    },
  };
}

function pool(overrides: Partial<UpstreamPoolOptions> = {}, port = address.port): UpstreamPool {
  return new UpstreamPool(`https://127.0.0.1:${port}`, { connections: 16, maxConnecting: 2, idleMs: 10_000, connect: connectOptions(port), ...overrides });
}

async function get(p: UpstreamPool): Promise<string> {
  const res = await p.request({ method: 'GET', path: '/' });
  return await res.body.text();
}

/** Two requests at once on a pool with one connection up: the first's answer, and how long the second took. */
async function twoAtOnce(p: UpstreamPool): Promise<{ first: string; secondMs: number }> {
  const started = performance.now();
  const [first, secondMs] = await Promise.all([get(p), get(p).then(() => performance.now() - started)]);
  return { first, secondMs };
}

const reset = () => Object.assign(seen, { full: 0, resumed: 0, connections: 0, inFlight: 0, maxInFlight: 0 });

describe('an upstream pool of mTLS connections', () => {
  test('a burst of 60 requests on a cold pool: at most 2 handshakes at once, later ones resume the session, every request answered', async () => {
    reset();
    // The pool announces each connection attempt and its end: the client's view, which is the one
    // the bound applies to (the server sees a handshake end half a round trip later).
    const connecting = { now: 0, max: 0 };
    const p = pool();
    const counted = (m: UpstreamConnectMessage) => {
      if (m.origin !== p) return;
      connecting.now += m.phase === 'start' ? 1 : -1;
      connecting.max = Math.max(connecting.max, connecting.now);
    };
    channels.upstreamConnect.subscribe(counted);
    try {
      const answers = await Promise.all(Array.from({ length: 60 }, () => get(p)));
      expect(answers.every((a) => a === `URI:${clientId}`)).toBe(true);
      expect(connecting.max).toBe(2);
      expect(seen.connections).toBeGreaterThan(2);
      expect(seen.connections).toBeLessThanOrEqual(16);
      // The first two handshakes are full; a connection opened after a ticket arrived resumes.
      expect(seen.resumed).toBeGreaterThan(0);
      expect(seen.full + seen.resumed).toBe(seen.connections);
    } finally {
      channels.upstreamConnect.unsubscribe(counted);
      await p.close();
    }
  });

  test('more requests than connections wait in the pool and each goes to the first connection that frees', async () => {
    reset();
    const p = pool({ connections: 3, maxConnecting: 3 });
    try {
      const answers = await Promise.all(Array.from({ length: 30 }, () => get(p)));
      expect(answers).toHaveLength(30);
      expect(seen.connections).toBe(3);
      expect(seen.maxInFlight).toBe(3);
      expect(p.queued).toBe(0);
    } finally {
      await p.close();
    }
  });

  test('a request that finds every connection busy takes the first that frees, not the slow handshake opened for it', { timeout: 15_000 }, async () => {
    // Connections after the first take 1.5 s to come up (a cold, busy upstream); the server answers
    // in 100 ms, longer than the pool waits (maxGrowDelayMs) before it opens a connection.
    const slow = await slowServer(100);
    const base = buildConnector(connectOptions(slow.port));
    let opened = 0;
    const slowAfterFirst: Connector = (opts, callback) => base(opts, (err, socket) => {
      opened += 1;
      if (opened === 1) callback(err, socket as never);
      else setTimeout(() => callback(err, socket as never), 1500);
    });
    const p = pool({ connect: slowAfterFirst }, slow.port);
    try {
      expect(await get(p)).toBe('late');
      const { first, secondMs } = await twoAtOnce(p);
      expect(first).toBe('late');
      // The second waited for the first's answer, not for the 1.5 s connection opened for it.
      expect(secondMs).toBeLessThan(1000);
      expect(opened).toBe(2);
      // The connection opened for it is kept for the next burst.
      for (let i = 0; i < 150 && p.busy > 0; i += 1) await new Promise((resolve) => setTimeout(resolve, 20));
      expect(p.size).toBe(2);
    } finally {
      await p.close();
      await slow.close();
    }
  });

  test('with a connection up, a burst it clears sooner than a handshake takes opens no other connection', async () => {
    // Answers come at once; every handshake takes 200 ms (a cold upstream), so the pool would wait
    // maxGrowDelayMs before it opened another connection, and the burst is over by then.
    const quick = await slowServer(0);
    const base = buildConnector(connectOptions(quick.port));
    const delayed: Connector = (opts, callback) => base(opts, (err, socket) => { setTimeout(() => callback(err, socket as never), 200); });
    const p = pool({ connect: delayed }, quick.port);
    let attempts = 0;
    const counted = (m: UpstreamConnectMessage) => { if (m.origin === p && m.phase === 'start') attempts += 1; };
    channels.upstreamConnect.subscribe(counted);
    try {
      expect(await get(p)).toBe('late');
      expect(attempts).toBe(1);
      const answers = await Promise.all(Array.from({ length: 5 }, () => get(p)));
      expect(answers).toEqual(Array(5).fill('late'));
      expect(attempts).toBe(1);
      expect(p.size).toBe(1);
    } finally {
      channels.upstreamConnect.unsubscribe(counted);
      await p.close();
      await quick.close();
    }
  });

  test('with a connection up, a request behind a long answer gets a connection of its own after a handshake\'s time', async () => {
    const slow = await slowServer(600);
    const p = pool({}, slow.port);
    try {
      expect(await get(p)).toBe('late');
      const { first, secondMs } = await twoAtOnce(p);
      expect(first).toBe('late');
      // Waiting for the busy connection would have taken two answers (1.2 s); the pool opened a
      // connection for it after at most maxGrowDelayMs instead.
      expect(secondMs).toBeLessThan(1000);
      expect(p.size).toBe(2);
    } finally {
      await p.close();
      await slow.close();
    }
  });

  test('a request handed to a connection the moment it comes up keeps its headers timeout', async () => {
    const slow = await slowServer(400);
    const p = pool({}, slow.port);
    try {
      // The pool's first request waits for the first connection and starts when it is up.
      await expect(p.request({ method: 'GET', path: '/', headersTimeout: 100 })).rejects.toMatchObject({ code: 'UND_ERR_HEADERS_TIMEOUT' });
    } finally {
      await p.destroy();
      await slow.close();
    }
  });

  test('an upstream that refuses connections fails every waiting request with the connect error, not one handshake at a time', async () => {
    const closed = createNetServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const p = pool({ connections: 4, maxConnecting: 1 }, port);
    try {
      const outcomes = await Promise.allSettled(Array.from({ length: 20 }, () => get(p)));
      expect(outcomes.map((o) => (o.status === 'rejected' ? (o.reason as { code?: string }).code : 'answered'))).toEqual(Array(20).fill('ECONNREFUSED'));
      expect(p.queued).toBe(0);
      expect(p.size).toBe(0);
    } finally {
      await p.close();
    }
  });

  test('while one connection is busy and the upstream refuses new ones, each failed handshake fails one waiting request: no reconnecting in a loop', async () => {
    const slow = await slowServer(600);
    const p = pool({}, slow.port);
    let attempts = 0;
    const counted = (m: UpstreamConnectMessage) => { if (m.origin === p && m.phase === 'start') attempts += 1; };
    channels.upstreamConnect.subscribe(counted);
    try {
      const busy = get(p);
      for (let i = 0; i < 100 && p.busy === 0; i += 1) await new Promise((resolve) => setTimeout(resolve, 10));
      await new Promise((resolve) => setTimeout(resolve, 50));
      slow.server.close(); // the connection in use stays; new ones are refused
      // Each fails with the refusal; none waits for the busy connection's answer instead.
      const outcomes = await Promise.allSettled([get(p), get(p), get(p)]);
      expect(outcomes.map((o) => (o.status === 'rejected' ? (o.reason as { code?: string }).code : 'answered'))).toEqual(['ECONNREFUSED', 'ECONNREFUSED', 'ECONNREFUSED']);
      expect(attempts).toBeLessThanOrEqual(4);
      expect(await busy).toBe('late');
    } finally {
      channels.upstreamConnect.unsubscribe(counted);
      await p.close();
      await slow.close();
    }
  });

  test('close() lets waiting and running requests finish, then refuses new ones', async () => {
    const p = pool({ connections: 1, maxConnecting: 1 });
    const pending = Array.from({ length: 5 }, () => get(p));
    const closing = p.close();
    expect(await Promise.all(pending)).toEqual(Array(5).fill(`URI:${clientId}`));
    await closing;
    await expect(get(p)).rejects.toThrow(/closed/);
  });

  test('a connection the server closes leaves the pool, and the next request opens a new one', async () => {
    reset();
    const p = pool({ connections: 1 });
    try {
      expect(await get(p)).toBe(`URI:${clientId}`);
      let socket: Socket | undefined;
      server.once('request', (req) => { socket = req.socket; });
      await get(p);
      expect(p.size).toBe(1);
      socket?.destroy();
      for (let i = 0; i < 100 && p.size > 0; i += 1) await new Promise((resolve) => setTimeout(resolve, 20));
      expect(p.size).toBe(0);
      expect(await get(p)).toBe(`URI:${clientId}`);
      expect(seen.connections).toBe(2);
    } finally {
      await p.close();
    }
  });
});
