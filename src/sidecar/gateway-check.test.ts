import { createServer as createNetServer, type Socket } from 'node:net';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { clientContext, echoId, listen, serverTls, testPki, type TestPki } from '../../test/helpers/sidecar-fixtures.js';
import { tcpProbe } from '../federation/health-checker.js';
import { GatewayCheck } from './gateway-check.js';
import { failureKind } from './retry-policy.js';
import { Upstreams } from './upstreams.js';

/**
 * A gateway that hangs (SIGSTOP: the kernel still completes TCP handshakes, nothing answers) must
 * fail the sidecar's check of it, and the requests waiting on kept connections to it must end at
 * once as resets when it does, so that the attempt layer retries the idempotent ones elsewhere.
 */

let pki: TestPki;
/** Accepts connections and never sends a byte: what a stopped process looks like from outside. */
const hung = createNetServer(() => undefined);
const held: Socket[] = [];
hung.on('connection', (s) => held.push(s));
let hungAddress: string;

beforeAll(async () => {
  pki = testPki();
  hungAddress = await listen(hung);
});

afterAll(async () => {
  for (const s of held) s.destroy();
  await new Promise((r) => hung.close(r));
});

describe('the active check of a gateway', () => {
  test('a TCP connect calls a hung gateway healthy; the handshake check does not', async () => {
    expect(await tcpProbe(hungAddress, 1000)).toBe(true);
    const check = new GatewayCheck(() => 'north', 300);
    expect(await check.probe(hungAddress, 1000)).toBe(false);
  });

  test('a gateway whose far side completes the handshake is healthy, and the next check resumes the session', async () => {
    const sni: string[] = [];
    const resumed: boolean[] = [];
    const server = createTlsServer({ cert: pki.echo.certPem + pki.west.certPem, key: pki.echo.keyPem, minVersion: 'TLSv1.3' });
    server.on('secureConnection', (socket: TLSSocket) => {
      sni.push(String((socket as TLSSocket & { servername?: string }).servername));
      resumed.push(socket.isSessionReused());
      socket.on('error', () => undefined);
    });
    const address = await listen(server);
    try {
      const check = new GatewayCheck((a) => (a === address ? 'north' : undefined), 2000);
      expect(await check.probe(address, 1000)).toBe(true);
      expect(await check.probe(address, 1000)).toBe(true);
      expect(sni).toEqual(['health.gateway.north.isthmus', 'health.gateway.north.isthmus']);
      expect(resumed).toEqual([false, true]);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  test('a gateway that closes the connection is alive (no certificate yet, or too old to know the name); a closed port is not', async () => {
    const closing = createNetServer((socket) => socket.once('data', () => socket.destroy()));
    const address = await listen(closing);
    const check = new GatewayCheck(() => 'north', 2000);
    try {
      expect(await check.probe(address, 1000)).toBe(true);
    } finally {
      await new Promise((r) => closing.close(r));
    }
    expect(await check.probe(address, 1000)).toBe(false);
  });

  test('an address that is no gateway gets a TCP connect', async () => {
    const check = new GatewayCheck(() => undefined, 300);
    expect(await check.probe(hungAddress, 1000)).toBe(true);
  });
});

describe('closing the connections to an endpoint found unhealthy', () => {
  test('a request waiting on a kept connection ends at once as a reset; the next one opens a new connection', async () => {
    let answer = false;
    const connections: Socket[] = [];
    const server = createHttpsServer(serverTls(pki), (_req, res) => {
      if (answer) res.end('ok');
      // otherwise: never answers, as a hung peer behind a live gateway
    });
    server.on('secureConnection', (s: Socket) => connections.push(s));
    const address = await listen(server);
    const upstreams = new Upstreams(() => clientContext(pki), { connectTimeoutMs: 2000 });
    const key = { address, sni: 'echo.demo.svc.west.isthmus', identities: [echoId], id: `${address}|echo.demo.svc.west.isthmus|${echoId}` };
    try {
      const waiting = upstreams.get(key).request({ path: '/', method: 'GET', headersTimeout: 60_000 });
      // The request is on the wire, on a kept connection, and nothing answers.
      for (let i = 0; connections.length === 0 && i < 100; i += 1) await new Promise((r) => setTimeout(r, 20));
      upstreams.closeTo('127.0.0.2:1', 'another address'); // leaves this pool alone
      expect(connections.length).toBe(1);
      upstreams.closeTo(address, 'its active health check failed');
      const err = await waiting.then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toContain(`connection to ${address} closed: its active health check failed`);
      expect(failureKind(err)).toBe('reset');
      answer = true;
      const next = await upstreams.get(key).request({ path: '/', method: 'GET' });
      expect(await next.body.text()).toBe('ok');
      expect(connections.length).toBe(2);
    } finally {
      await upstreams.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});
