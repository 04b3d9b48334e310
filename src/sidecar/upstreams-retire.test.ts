import { createSecureServer, type Http2SecureServer } from 'node:http2';
import { createServer as createHttpsServer, type Server } from 'node:https';
import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { clientContext, echoId, listen, serverTls, testPki, type TestPki } from '../../test/helpers/sidecar-fixtures.js';
import { Upstreams, type UpstreamKey } from './upstreams.js';

/**
 * When an address leaves the catalog (a gateway withdrawn while it drains, an instance
 * deregistered), the sidecar lets go of its connections there: idle ones at once, from its own
 * side, and busy ones after their answer, so that nothing in flight is cut and the destination
 * is not held until `timeouts.connectionIdle`. Pools to addresses still in the catalog stay.
 */

let pki: TestPki;
/** An mTLS HTTP/1.1 server per address; `?ms=N` answers after N ms. Counts its open connections. */
interface Upstream { server: Server; address: string; open: Set<Socket> }
const upstreams: Upstream[] = [];
let h2: Http2SecureServer;
let h2Address: string;

async function upstream(): Promise<Upstream> {
  const open = new Set<Socket>();
  const server = createHttpsServer(serverTls(pki), (req, res) => {
    const ms = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('ms') ?? 0);
    setTimeout(() => res.end('answered'), ms);
  });
  server.on('connection', (socket: Socket) => {
    open.add(socket);
    socket.once('close', () => open.delete(socket));
  });
  const made = { server, address: await listen(server), open };
  upstreams.push(made);
  return made;
}

const keyOf = (address: string): UpstreamKey => ({ address, sni: 'echo.demo.mesh', identities: [echoId], id: `${address}|echo.demo.mesh|${echoId}` });

async function get(pools: Upstreams, address: string, path = '/'): Promise<{ status: number; body: string }> {
  const res = await pools.get(keyOf(address)).request({ method: 'GET', path });
  return { status: res.statusCode, body: await res.body.text() };
}

async function waitUntil(check: () => boolean, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
  return true;
}

beforeAll(async () => {
  pki = testPki();
  h2 = createSecureServer({ ...serverTls(pki), allowHTTP1: false }, (req, res) => {
    const ms = Number(new URL(req.url, 'http://x').searchParams.get('ms') ?? 0);
    setTimeout(() => res.end('answered over h2'), ms);
  });
  h2Address = await listen(h2);
});

afterAll(async () => {
  for (const u of upstreams) {
    u.server.closeAllConnections();
    await new Promise((r) => u.server.close(r));
  }
  await new Promise((r) => h2.close(r));
});

describe('connections to addresses that left the catalog', () => {
  test('an idle pooled connection to a gone address closes at once; one to an address still routable stays open', async () => {
    const [gone, kept] = [await upstream(), await upstream()];
    const pools = new Upstreams(() => clientContext(pki), { idleMs: 60_000 });
    try {
      expect(await get(pools, gone.address)).toEqual({ status: 200, body: 'answered' });
      expect(await get(pools, kept.address)).toEqual({ status: 200, body: 'answered' });
      expect([gone.open.size, kept.open.size]).toEqual([1, 1]);

      expect(pools.retireExcept(new Set([kept.address]))).toBe(1);
      expect(await waitUntil(() => gone.open.size === 0, 2000)).toBe(true);
      expect(kept.open.size).toBe(1);
      // Nothing left to retire: the same set again closes nothing.
      expect(pools.retireExcept(new Set([kept.address]))).toBe(0);
      // The address comes back (re-registered): a new pool serves it.
      expect(await get(pools, gone.address)).toEqual({ status: 200, body: 'answered' });
    } finally {
      await pools.close();
    }
  });

  test('a request in flight on a retired pool gets its whole answer, and only then does its connection close', async () => {
    const gone = await upstream();
    const pools = new Upstreams(() => clientContext(pki), { idleMs: 60_000 });
    try {
      const answer = get(pools, gone.address, '/?ms=1500');
      expect(await waitUntil(() => gone.open.size === 1, 2000)).toBe(true);
      await new Promise((r) => setTimeout(r, 100));
      expect(pools.retireExcept(new Set())).toBe(1);
      // Still open while the answer is pending.
      await new Promise((r) => setTimeout(r, 100));
      expect(gone.open.size).toBe(1);
      expect(await answer).toEqual({ status: 200, body: 'answered' });
      expect(await waitUntil(() => gone.open.size === 0, 2000)).toBe(true);
    } finally {
      await pools.close();
    }
  });

  test('an HTTP/2 connection to a gone address finishes its open stream, then closes; a new stream opens a new connection', async () => {
    const pools = new Upstreams(() => clientContext(pki), { idleMs: 60_000 });
    try {
      const connection = await pools.h2Connection(keyOf(h2Address));
      let body = '';
      const ended = new Promise<number>((resolve) => {
        connection.request([':method', 'GET', ':scheme', 'https', ':path', '/?ms=800', ':authority', 'x'], true, {
          onHeaders: () => undefined,
          onData: (stream, piece) => { body += piece.toString('utf8'); stream.consumed(piece.length); },
          onClose: (_stream, code) => resolve(code),
        });
      });
      await new Promise((r) => setTimeout(r, 50));
      pools.retireExcept(new Set());
      // Closed gracefully: it takes no new stream, and waits for its stream instead of cutting it.
      expect(connection.usable).toBe(false);
      expect(await ended).toBe(0);
      expect(body).toBe('answered over h2');
      expect(await waitUntil(() => connection.activeStreams === 0, 2000)).toBe(true);
      const next = await pools.h2Connection(keyOf(h2Address));
      expect(next).not.toBe(connection);
    } finally {
      await pools.close();
    }
  });
});
