import { createServer, type Http2Server } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, test } from 'vitest';
import { echoFrame, formatGrpcRows, grpcCaller, grpcRatios, grpcRows, parseGrpcBenchArgs } from './grpc.js';
import { LatencySample } from './latency-sample.js';
import type { OpenLoopResult } from './open-loop.js';
import { renderNginxInbound, renderNginxOutbound } from './peer-config.js';

const tls = { certChain: '/t/chain.pem', key: '/t/key.pem', rootCa: '/t/root.pem' };
const lines = (text: string) => text.split('\n').map((l) => l.trim());

describe('the peer chain carrying gRPC (npm run bench:grpc)', () => {
  const outbound = renderNginxOutbound({
    prefix: '/t/out', listen: '127.0.60.2:4001', grpcListen: '127.0.60.2:4009', tls, keepalive: 64,
    routes: [
      { host: 'ledger.demo.mesh', upstream: '127.0.61.2:4003', sniName: 'ledger.demo.mesh' },
      { host: 'grpc-echo.demo.mesh', upstream: '127.0.61.2:4003', sniName: 'grpc-echo.demo.mesh', grpc: true },
    ],
  });
  const inbound = renderNginxInbound({ prefix: '/t/in', listen: '127.0.61.2:4004', serverName: 'grpc-echo.demo.mesh', tls, origin: '127.0.61.1:18086', keepalive: 32, grpc: true });

  test('the outbound serves a gRPC route as h2c on its own listener and passes it on with gRPC over the same mutual TLS', () => {
    const grpcServer = outbound.slice(outbound.indexOf('listen 127.0.60.2:4009 http2;'));
    for (const line of ['grpc_pass grpcs://route_1;', 'grpc_ssl_name grpc-echo.demo.mesh;', 'grpc_ssl_protocols TLSv1.3;', 'grpc_ssl_verify on;',
      'grpc_ssl_certificate /t/chain.pem;', 'grpc_ssl_trusted_certificate /t/root.pem;', 'grpc_ssl_session_reuse on;']) expect(lines(grpcServer)).toContain(line);
    // The HTTP route is untouched, on the plain listener.
    expect(lines(outbound)).toContain('proxy_pass https://route_0;');
    expect(outbound).not.toContain('proxy_pass https://route_1;');
  });
  test('a gRPC route without a gRPC listener is refused', () => {
    expect(() => renderNginxOutbound({ prefix: '/t', listen: 'a:1', tls, keepalive: 1, routes: [{ host: 'g', upstream: 'b:2', sniName: 'g', grpc: true }] })).toThrow(/grpcListen/);
  });
  test('the inbound takes HTTP/2 over its mutual TLS and hands calls to the app with grpc_pass, the caller in x-forwarded-client-cert', () => {
    expect(lines(inbound)).toEqual(expect.arrayContaining([
      'listen 127.0.61.2:4004 ssl http2;', 'ssl_verify_client on;', 'grpc_pass grpc://origin;', 'server 127.0.61.1:18086;',
      'grpc_set_header x-forwarded-client-cert "Hash=$ssl_client_fingerprint;Subject=\\"$ssl_client_s_dn\\"";',
    ]));
    expect(inbound).not.toContain('proxy_pass');
  });
});

describe('npm run bench:grpc, its figures', () => {
  const result = (values: number[], failed = 0): OpenLoopResult => {
    const latency = new LatencySample();
    for (const v of values) latency.record(v);
    return { rate: 1000, scheduled: values.length, sent: values.length, ok: values.length - failed, failed, failures: {}, latency, sendLag: new LatencySample(), elapsedSeconds: 1, bytes: 0 };
  };
  const spread = (low: number) => Array.from({ length: 100 }, (_, i) => low + i / 100);
  const points = [
    { side: 'origin' as const, round: 1, result: result(spread(1)), cpuSeconds: Number.NaN, peakRssBytes: Number.NaN, processes: [] },
    { side: 'isthmus' as const, round: 1, result: result(spread(4)), cpuSeconds: 0.2, peakRssBytes: 200 * 2 ** 20, processes: [] },
    { side: 'peer' as const, round: 1, result: result(spread(2), 1), cpuSeconds: 0.05, peakRssBytes: 40 * 2 ** 20, processes: [] },
    { side: 'origin' as const, round: 2, result: result(spread(2)), cpuSeconds: Number.NaN, peakRssBytes: Number.NaN, processes: [] },
    { side: 'isthmus' as const, round: 2, result: result(spread(5)), cpuSeconds: 0.3, peakRssBytes: 210 * 2 ** 20, processes: [] },
    { side: 'peer' as const, round: 2, result: result(spread(3)), cpuSeconds: 0.05, peakRssBytes: 40 * 2 ** 20, processes: [] },
  ];

  test('added figures are against the baseline of the same round; each figure the median over the rounds (the lower middle for two)', () => {
    const rows = grpcRows(points);
    expect(rows.map((r) => r.side)).toEqual(['origin', 'isthmus', 'peer']);
    const ours = rows[1]!;
    expect(ours.addedP50Ms).toBeCloseTo(3, 5);
    expect(ours.p50Ms).toBeCloseTo(4.49, 5);
    expect(ours.cpuSecondsPer1000).toBeCloseTo(2, 5);
    expect(rows[2]).toMatchObject({ errors: 1, calls: 200 });
    expect(grpcRatios(rows)).toMatchObject({ addedP50: expect.closeTo(3, 5), cpu: expect.closeTo(4, 5) });
    expect(formatGrpcRows(rows).split('\n').at(-1)).toMatch(/^isthmus\/peer\s+3\.00×\s+\d/);
  });

  test('flags: defaults, limits named, help', () => {
    expect(parseGrpcBenchArgs([])).toEqual({ rate: 1000, seconds: 5, warmup: 2, rounds: 2, sessions: 8, hostBase: 56, output: 'table' });
    expect(parseGrpcBenchArgs(['--help'])).toBe('help');
    expect(() => parseGrpcBenchArgs(['--rate', '0'])).toThrow(/--rate must be an integer from 1 to 5000, not "0"/);
    expect(() => parseGrpcBenchArgs(['-o', 'yaml'])).toThrow(/--output must be table or json/);
  });
});

describe('the generator\'s gRPC caller', () => {
  let server: Http2Server | undefined;
  afterEach(async () => { await new Promise((r) => server?.close(r)); });

  test('sends a unary call of about 1 KiB and counts grpc-status 0 as success, any other status as a failure', async () => {
    let seen: Buffer | undefined;
    let calls = 0;
    server = createServer();
    server.on('stream', (stream, headers) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        seen = Buffer.concat(chunks);
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        calls += 1;
        // The first call succeeds if it carried its deadline; the second is UNAVAILABLE.
        const status = calls === 1 ? (headers['grpc-timeout'] === '5000m' ? '0' : '13') : '14';
        stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': status }));
        stream.end(seen);
      });
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    const caller = grpcCaller(`127.0.0.1:${(server.address() as AddressInfo).port}`, 2);
    try {
      expect(await caller.send()).toEqual({ status: 200, bytes: echoFrame.length });
      expect(seen?.equals(echoFrame)).toBe(true);
      expect(echoFrame.length).toBeGreaterThan(1000);
      expect(await caller.send()).toEqual({ status: 514, bytes: echoFrame.length });
    } finally {
      caller.close();
    }
  });
});
