import { createServer } from 'node:https';
import { describe, expect, it, test } from 'vitest';
import { silentLogger } from '../core/log.js';
import { createIntermediateCa, createRootCa, issueCertificate } from '../trust/ca.js';
import { clusterRoleId } from '../trust/spiffe.js';
import { GatewayProber, probeWindow, summarize, type ProbeSample } from './gateway-prober.js';

const ok = (ms: number, handshakeMs?: number): ProbeSample => ({ ok: true, ms, ...(handshakeMs === undefined ? {} : { handshakeMs }) });
const fail = (error: string, handshakeMs?: number): ProbeSample => ({ ok: false, error, ...(handshakeMs === undefined ? {} : { handshakeMs }) });
const range = (n: number) => Array.from({ length: n }, (_, i) => ok(i + 1));

describe('summarize (window → published summary)', () => {
  it.each<[string, ProbeSample[], object]>([
    ['an empty window', [], { p50Ms: null, p99Ms: null, minMs: null, maxMs: null, samples: 0, failures: 0, handshakeP50Ms: null }],
    ['one sample', [ok(2.5)], { p50Ms: 2.5, p99Ms: 2.5, minMs: 2.5, maxMs: 2.5, samples: 1, failures: 0, handshakeP50Ms: null }],
    ['two samples: nearest rank, never an interpolation', [ok(3), ok(1)], { p50Ms: 1, p99Ms: 3, minMs: 1, maxMs: 3, samples: 2, failures: 0, handshakeP50Ms: null }],
    ['1..100 ms', range(100), { p50Ms: 50, p99Ms: 99, minMs: 1, maxMs: 100, samples: 100, failures: 0, handshakeP50Ms: null }],
    ['1..60 ms (a full window)', range(probeWindow), { p50Ms: 30, p99Ms: 60, minMs: 1, maxMs: 60, samples: 60, failures: 0, handshakeP50Ms: null }],
    ['rounded to the microsecond', [ok(1.23456789)], { p50Ms: 1.235, p99Ms: 1.235, minMs: 1.235, maxMs: 1.235, samples: 1, failures: 0, handshakeP50Ms: null }],
    ['failures only', [fail('connect ECONNREFUSED'), fail('timeout')], { p50Ms: null, p99Ms: null, minMs: null, maxMs: null, samples: 0, failures: 2, lastError: 'timeout', handshakeP50Ms: null }],
    ['failures among samples: lastError is the latest failure', [ok(4), fail('alert 112'), ok(2), fail('ECONNRESET'), ok(6)], { p50Ms: 4, p99Ms: 6, minMs: 2, maxMs: 6, samples: 3, failures: 2, lastError: 'ECONNRESET', handshakeP50Ms: null }],
    // The round trip never includes the handshake: a first probe that opened the connection
    // counts its request like any other, and its handshake goes to handshakeP50Ms alone.
    ['one opened connection, then reuse', [ok(2, 40), ok(3), ok(1)], { p50Ms: 2, p99Ms: 3, minMs: 1, maxMs: 3, samples: 3, failures: 0, handshakeP50Ms: 40 }],
    ['handshakes: nearest-rank p50 of those in the window', [ok(1, 30), ok(1), fail('ECONNRESET'), ok(2, 50.00049), ok(1, 20)], { p50Ms: 1, p99Ms: 2, minMs: 1, maxMs: 2, samples: 4, failures: 1, lastError: 'ECONNRESET', handshakeP50Ms: 30 }],
    ['a handshake whose request then failed still counts as a handshake', [fail('/healthz answered 503', 25)], { p50Ms: null, p99Ms: null, minMs: null, maxMs: null, samples: 0, failures: 1, lastError: '/healthz answered 503', handshakeP50Ms: 25 }],
  ])('%s', (_what, window, expected) => {
    expect(summarize(window)).toEqual(expected);
  });
});

describe('the kept probe connections when the catalog changes', () => {
  test('a gateway that left the catalog (withdrawn while it drains) loses its probe connection at once, not at the next round', async () => {
    const trustDomain = 'example.org';
    const root = createRootCa({ trustDomain });
    const north = createIntermediateCa({ root, trustDomain, cluster: 'north' });
    const leaf = issueCertificate({ identity: clusterRoleId(trustDomain, 'north', 'federation'), issuer: north });
    // North's federation behind its gateway, as far as a probe can tell: /healthz over TLS.
    const server = createServer({ cert: leaf.certPem + north.certPem, key: leaf.keyPem }, (_req, res) => res.end('ok'));
    let open = 0;
    server.on('secureConnection', (socket) => {
      open += 1;
      socket.once('close', () => { open -= 1; });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    const cluster = (gateways: { id: string; address: string; port: number; zone: string }[]) => ({
      name: 'north', region: 'north', zones: ['north-a'], trustDomain, federation: '127.0.0.1:1', joinedAt: '', alive: true, gateways,
    });
    let catalog = { revision: 1, invalidKeys: [], services: [], clusters: [cluster([{ id: 'gw-1', address: '127.0.0.1', port, zone: 'north-a' }])] };
    const prober = new GatewayProber({
      cluster: 'south', intervalMs: 60_000, catalog: () => catalog as never, trustBundle: () => [root.certPem], publish: () => undefined, logger: silentLogger,
    });
    try {
      await prober.round();
      expect(prober.records()[0]?.gateways).toEqual([expect.objectContaining({ id: 'gw-1', ok: true })]);
      expect(open).toBe(1);
      // Still in the catalog: kept.
      await prober.forgetGone();
      expect(open).toBe(1);
      catalog = { ...catalog, revision: 2, clusters: [cluster([])] };
      await prober.forgetGone();
      const until = Date.now() + 2000;
      while (open > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
      expect(open).toBe(0);
    } finally {
      await prober.stop();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});
