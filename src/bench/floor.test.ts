import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { isChunked, originForm, requestHead, responseHead } from './floor-chain.js';
import { floorRows, formatFloorRows, parseFloorBenchArgs, startFloorHop, type FloorPoint } from './floor.js';
import { LatencySample } from './latency-sample.js';
import type { OpenLoopResult } from './open-loop.js';
import { writePeerCertificates, type PeerCertificates } from './peer-certs.js';

// The floor chains stand for "the least a Node proxy does in a sidecar's place": they must carry
// requests end to end over mutual TLS, the http one must really rewrite heads, and the in-hops
// must refuse a caller without a certificate, or the bench's comparison means nothing.
const host = '127.0.48.2';
const script = new URL('../../dist/bench/floor-chain.js', import.meta.url);

interface Seen { method: string; url: string; headers: IncomingHttpHeaders; body: string }

describe('the bench\'s bare Node chains (dist/bench/floor-chain.js)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'isthmus-floor-chain-test-'));
  const children: ChildProcess[] = [];
  const seen: Seen[] = [];
  let app: Server;
  let certs: PeerCertificates;
  const firstHops: Record<'relay' | 'http', string> = { relay: '', http: '' };
  const inHops: Record<'relay' | 'http', string> = { relay: '', http: '' };

  beforeAll(async () => {
    app = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => { body += c.toString(); });
      req.on('end', () => {
        seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end(`answer to ${req.method} ${req.url} with ${body.length} bytes`);
      });
    });
    await new Promise<void>((resolve) => app.listen(0, host, resolve));
    const origin = `${host}:${(app.address() as AddressInfo).port}`;
    certs = writePeerCertificates(join(dir, 'certs'), { trustDomain: 'test.isthmus', namespace: 'demo', clientCluster: 'east', inbounds: [{ service: 'floor', cluster: 'east', sniName: 'floor' }] });
    const inbound = certs.inbound.floor as { certChain: string; key: string };
    for (const kind of ['relay', 'http'] as const) {
      const inHop = await startFloorHop(`${kind}-in`, { host, to: origin, ca: certs.rootCa, cert: inbound.certChain, key: inbound.key }, script);
      const outHop = await startFloorHop(`${kind}-out`, { host, to: inHop.listen, ca: certs.rootCa, cert: certs.outbound.certChain, key: certs.outbound.key }, script);
      children.push(inHop.child, outHop.child);
      firstHops[kind] = outHop.listen;
      inHops[kind] = inHop.listen;
    }
  });

  afterAll(async () => {
    for (const child of children) child.kill();
    await new Promise((resolve) => app?.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  /** Two requests on one kept connection to the chain's first hop, absolute-form as to a proxy: a GET, then a chunked POST. */
  async function twoRequests(firstHop: string): Promise<string[]> {
    const [h, p] = firstHop.split(':') as [string, string];
    const answers: string[] = [];
    const { Agent } = await import('node:http');
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      for (const [method, body] of [['GET', undefined], ['POST', 'x'.repeat(5000)]] as const) {
        answers.push(await new Promise<string>((resolve, reject) => {
          const req = request({ host: h, port: Number(p), method, path: 'http://hello.demo.mesh/path?q=1', headers: { host: 'hello.demo.mesh' }, agent }, (res) => {
            let text = '';
            res.on('data', (c: Buffer) => { text += c.toString(); });
            res.on('end', () => resolve(`${res.statusCode} ${text}`));
          });
          req.on('error', reject);
          if (body) req.write(body);
          req.end();
        }));
      }
    } finally {
      agent.destroy();
    }
    return answers;
  }

  test('the byte relay carries requests over mutual TLS to the app as the client wrote them', async () => {
    seen.length = 0;
    expect(await twoRequests(firstHops.relay)).toEqual(['200 answer to GET http://hello.demo.mesh/path?q=1 with 0 bytes', '200 answer to POST http://hello.demo.mesh/path?q=1 with 5000 bytes']);
    expect(seen.map((s) => s.headers.connection)).toEqual(['keep-alive', 'keep-alive']);
  });

  test('the http chain writes each head anew: origin-form target, no connection field; bodies pass whole', async () => {
    seen.length = 0;
    expect(await twoRequests(firstHops.http)).toEqual(['200 answer to GET /path?q=1 with 0 bytes', '200 answer to POST /path?q=1 with 5000 bytes']);
    expect(seen.map((s) => [s.method, s.url, s.headers.connection, s.headers.host])).toEqual([['GET', '/path?q=1', undefined, 'hello.demo.mesh'], ['POST', '/path?q=1', undefined, 'hello.demo.mesh']]);
    expect(seen[1]?.body).toBe('x'.repeat(5000));
  });

  test.each(['relay', 'http'] as const)('the %s chain\'s in-hop refuses a TLS client without a certificate', async (kind) => {
    const [h, p] = inHops[kind].split(':') as [string, string];
    const outcome = await new Promise<string>((resolve) => {
      const socket = tls.connect({ host: h, port: Number(p), ca: readFileSync(certs.rootCa), checkServerIdentity: () => undefined }, () => socket.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n'));
      let answered = '';
      socket.on('data', (c: Buffer) => { answered += c.toString(); });
      socket.on('error', (err: NodeJS.ErrnoException) => resolve(`error ${err.code ?? err.message}`));
      socket.on('close', () => resolve(answered ? `answered ${answered.slice(0, 12)}` : 'closed'));
    });
    expect(outcome).toBe('error ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED');
  });
});

describe('the http hop\'s heads', () => {
  test('an absolute-form target becomes origin-form; connection-specific fields go', () => {
    expect(originForm('http://a.b/c?d')).toBe('/c?d');
    expect(originForm('http://a.b')).toBe('/');
    expect(originForm('/already')).toBe('/already');
    expect(requestHead('GET', 'http://a.b/c', ['Host', 'a.b', 'Connection', 'keep-alive', 'Keep-Alive', 'timeout=5', 'X-Y', '1'])).toBe('GET /c HTTP/1.1\r\nHost: a.b\r\nX-Y: 1\r\n\r\n');
    expect(responseHead(200, 'OK', ['content-length', '2', 'connection', 'close'])).toBe('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n');
    expect([isChunked(['Transfer-Encoding', 'gzip, chunked']), isChunked(['content-length', '5']), isChunked(['transfer-encoding', 'chunked, gzip'])]).toEqual([true, false, false]);
  });
});

describe('npm run bench:floor, its figures', () => {
  const result = (p50: number, n = 100, failed = 0): OpenLoopResult => {
    const latency = new LatencySample();
    for (let i = 0; i < n; i += 1) latency.record(p50);
    return { rate: 1000, scheduled: n, sent: n, ok: n - failed, failed, failures: {}, latency, sendLag: new LatencySample(), elapsedSeconds: 1, bytes: 0 };
  };
  // Two rounds; CPU seconds for 100 requests each, so µs/request = cpuSeconds × 10⁴.
  const points: FloorPoint[] = [
    { chain: 'baseline', round: 1, result: result(1.0), cpuSeconds: Number.NaN },
    { chain: 'peer', round: 1, result: result(1.2), cpuSeconds: 0.02 },
    { chain: 'isthmus', round: 1, result: result(1.4), cpuSeconds: 0.04 },
    { chain: 'node relay', round: 1, result: result(1.1), cpuSeconds: 0.021 },
    { chain: 'node http', round: 1, result: result(1.3), cpuSeconds: 0.03 },
    { chain: 'baseline', round: 2, result: result(2.0), cpuSeconds: Number.NaN },
    { chain: 'peer', round: 2, result: result(2.2), cpuSeconds: 0.02 },
    { chain: 'isthmus', round: 2, result: result(2.6, 100, 2), cpuSeconds: 0.05 },
    { chain: 'node relay', round: 2, result: result(2.1), cpuSeconds: 0.019 },
    { chain: 'node http', round: 2, result: result(2.3), cpuSeconds: 0.03 },
  ];

  test('each chain\'s CPU per request and added p50 (against the app in the same round), the median of the rounds, over the peer\'s', () => {
    const rows = floorRows(points);
    const row = (chain: string) => rows.find((r) => r.chain === chain)!;
    expect(rows.map((r) => r.chain)).toEqual(['baseline', 'peer', 'isthmus', 'node relay', 'node http']);
    expect(row('peer').cpuMicrosPerRequest).toBeCloseTo(200, 6);
    // The lower of the two middles: 400 of 400 and 500.
    expect(row('isthmus').cpuMicrosPerRequest).toBeCloseTo(400, 6);
    expect(row('isthmus').cpuRatio).toBeCloseTo(2, 6);
    expect(row('isthmus').addedP50Ms).toBeCloseTo(0.4, 6);
    expect(row('isthmus').addedP50Ratio).toBeCloseTo(2, 6);
    expect(row('isthmus').errors).toBe(2);
    expect(row('node relay').cpuRatio).toBeCloseTo(0.95, 6);
    expect(row('node http').addedP50Ratio).toBeCloseTo(1.5, 6);
    expect(Number.isNaN(row('peer').cpuRatio)).toBe(true);
    expect(Number.isNaN(row('baseline').cpuMicrosPerRequest)).toBe(true);
  });

  test('the table names each chain with its figures and ratios', () => {
    const table = formatFloorRows(floorRows(points)).split('\n').map((l) => l.replace(/\s+/g, ' ').trim());
    expect(table).toEqual([
      'chain CPU µs/request ÷ peer added p50 ms ÷ peer errors/requests',
      'baseline (the app) — — 0/200',
      'peer 200 1 0.20 1 0/200',
      'isthmus 400 2.00× 0.40 2.00× 2/200',
      'node relay 190 0.95× 0.10 0.50× 0/200',
      'node http 300 1.50× 0.30 1.50× 0/200',
    ]);
  });

  test('flags: defaults, and a wrong one named', () => {
    expect(parseFloorBenchArgs([])).toEqual({ rate: 1000, seconds: 10, warmup: 2, rounds: 3, hostBase: 66, output: 'table' });
    expect(parseFloorBenchArgs(['--rounds', '5', '-o', 'json'])).toMatchObject({ rounds: 5, output: 'json' });
    expect(() => parseFloorBenchArgs(['--rounds', '0'])).toThrow(/--rounds/);
    expect(() => parseFloorBenchArgs(['--bogus'])).toThrow(/bogus/);
  });
});
