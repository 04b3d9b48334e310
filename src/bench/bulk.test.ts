import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, test } from 'vitest';
import { bulkRatios, bulkRows, formatBulkRows, parseBulkBenchArgs, transfer, type BulkPoint, type Transfer } from './bulk.js';
import { renderNginxInbound, renderNginxOutbound } from './peer-config.js';

const tls = { certChain: '/t/chain.pem', key: '/t/key.pem', rootCa: '/t/root.pem' };
const lines = (text: string) => text.split('\n').map((l) => l.trim());

describe('the peer chain streaming bodies (npm run bench:bulk)', () => {
  const streaming = ['client_max_body_size 0;', 'proxy_request_buffering off;', 'proxy_buffering off;'];
  test('with streamBodies the outbound and the inbound take a body of any size and pass both directions as they stream', () => {
    const outbound = renderNginxOutbound({ prefix: '/t/out', listen: 'a:1', tls, keepalive: 1, streamBodies: true, routes: [{ host: 'ledger.demo.mesh', upstream: 'b:2', sniName: 'ledger.demo.mesh' }] });
    const inbound = renderNginxInbound({ prefix: '/t/in', listen: 'b:2', serverName: 'ledger.demo.mesh', tls, origin: 'c:3', keepalive: 1, streamBodies: true });
    expect(lines(outbound)).toEqual(expect.arrayContaining(streaming));
    expect(lines(inbound)).toEqual(expect.arrayContaining(streaming));
  });
  test('without it (npm run bench) the configuration is nginx\'s defaults, as before', () => {
    const outbound = renderNginxOutbound({ prefix: '/t/out', listen: 'a:1', tls, keepalive: 1, routes: [{ host: 'ledger.demo.mesh', upstream: 'b:2', sniName: 'ledger.demo.mesh' }] });
    for (const line of streaming) expect(lines(outbound)).not.toContain(line);
  });
});

describe('npm run bench:bulk, its figures', () => {
  const moved = (bytes: number, seconds: number, error?: string): Transfer => ({ seconds, bytes, ...(error ? { error } : {}) });
  const point = (side: BulkPoint['side'], kind: BulkPoint['kind'], round: number, t: Transfer, cpuSeconds: number): BulkPoint => ({ side, kind, round, transfer: t, cpuSeconds, peakRssBytes: 100e6, processes: [] });
  const points: BulkPoint[] = [
    point('origin', 'download', 1, moved(1e9, 1), Number.NaN),
    point('isthmus', 'download', 1, moved(1e9, 4), 6),
    point('peer', 'download', 1, moved(1e9, 2), 3),
    point('isthmus', 'download', 2, moved(1e9, 5), 8),
    point('peer', 'download', 2, moved(1e9, 2), 3),
    point('isthmus', 'upload', 1, moved(5e8, 5), 2),
    point('peer', 'upload', 1, moved(5e8, 2), 1),
    point('peer', 'upload', 2, moved(5e8, 1, 'status 413'), 0.1),
  ];

  test('MB/s and CPU per GB of the body moved; medians over the rounds; a failed transfer in no figure', () => {
    const rows = bulkRows(points);
    const ours = rows.find((r) => r.side === 'isthmus' && r.kind === 'download')!;
    // Two rounds: the lower middle, 200 MB/s (of 250 and 200) and 6 s per GB (of 6 and 8).
    expect(ours.megabytesPerSecond).toBeCloseTo(200, 5);
    expect(ours.cpuSecondsPerGb).toBeCloseTo(6, 5);
    const up = rows.find((r) => r.side === 'isthmus' && r.kind === 'upload')!;
    expect(up.megabytesPerSecond).toBeCloseTo(100, 5);
    expect(up.cpuSecondsPerGb).toBeCloseTo(4, 5);
    expect(rows.find((r) => r.side === 'peer' && r.kind === 'upload')).toMatchObject({ failed: 1, transfers: 2, megabytesPerSecond: 250, cpuSecondsPerGb: 2 });
    const ratios = bulkRatios(rows);
    expect(ratios.download.throughput).toBeCloseTo(0.4, 5);
    expect(ratios.download.cpu).toBeCloseTo(2, 5);
    expect(ratios.upload.cpu).toBeCloseTo(2, 5);
    expect(formatBulkRows(rows)).toMatch(/download isthmus\/peer\s+0\.40×\s+2\.00×/);
  });

  test('flags: defaults, limits named, help', () => {
    expect(parseBulkBenchArgs([])).toEqual({ megabytes: 256, rounds: 2, hostBase: 86, gatewayRelay: 'native', output: 'table' });
    expect(parseBulkBenchArgs(['--gateway-relay', 'node'])).toMatchObject({ gatewayRelay: 'node' });
    expect(() => parseBulkBenchArgs(['--gateway-relay', 'fast'])).toThrow(/--gateway-relay must be native or node, not "fast"/);
    expect(parseBulkBenchArgs(['-h'])).toBe('help');
    expect(() => parseBulkBenchArgs(['--megabytes', '0'])).toThrow(/--megabytes must be an integer from 1 to 4096, not "0"/);
    expect(() => parseBulkBenchArgs(['--rate', '5'])).toThrow(/Unknown option '--rate'/);
  });
});

describe('the bench\'s transfers', () => {
  let server: Server | undefined;
  afterEach(async () => { await new Promise((r) => server?.close(r)); });

  async function app(handler: (req: IncomingMessage, body: Buffer) => { status: number; body: Buffer }): Promise<string> {
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const answer = handler(req, Buffer.concat(chunks));
        res.writeHead(answer.status);
        res.end(answer.body);
      });
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    return `127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  test('a download asks /bytes?n= (absolute-form through a proxy) and checks the length of what came', async () => {
    const seen: string[] = [];
    const address = await app((req) => {
      seen.push(`${req.method} ${req.url} ${req.headers.host}`);
      const n = Number(new URL(req.url!, 'http://x').searchParams.get('n'));
      return { status: 200, body: Buffer.alloc(req.url!.startsWith('http') ? n : n - 1) };
    });
    expect(await transfer(address, true, 'download', 300_000)).toMatchObject({ bytes: 300_000 });
    expect((await transfer(address, false, 'download', 1000)).error).toBe('999 of 1000 bytes came');
    expect(seen).toEqual(['GET http://ledger.demo.mesh/bytes?n=300000 ledger.demo.mesh', 'GET /bytes?n=1000 ledger.demo.mesh']);
  });

  test('an upload sends its body with a length to /upload and reads the app\'s count; a short count or a refusal is named', async () => {
    let lie = 0;
    const address = await app((req, body) => ({
      status: req.url === '/upload' && req.headers['content-length'] === String(body.length) ? 200 : 411,
      body: Buffer.from(JSON.stringify({ bytes: body.length - lie })),
    }));
    expect(await transfer(address, false, 'upload', 1_000_000)).toMatchObject({ bytes: 1_000_000 });
    lie = 1;
    expect((await transfer(address, false, 'upload', 1000)).error).toBe('the app read 999 of 1000 bytes');
    server?.removeAllListeners('request');
    server?.on('request', (_req, res) => { res.writeHead(413); res.end(); });
    expect((await transfer(address, false, 'upload', 10)).error).toBe('status 413');
  });

  test('a chunked upload sends the same body with no length, chunked, and reads the app\'s count', async () => {
    const address = await app((req, body) => ({
      status: req.url === '/upload' && req.headers['content-length'] === undefined && req.headers['transfer-encoding'] === 'chunked' ? 200 : 411,
      body: Buffer.from(JSON.stringify({ bytes: body.length })),
    }));
    expect(await transfer(address, false, 'chunked upload', 1_000_000)).toMatchObject({ bytes: 1_000_000 });
  });
});
