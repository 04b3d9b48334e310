import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as h2Connect, type IncomingHttpHeaders } from 'node:http2';
import { connect as tlsConnect } from 'node:tls';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startDevMesh, type DevMesh } from '../../src/dev/dev-mesh.js';
import { EchoClient, type EchoReply } from '../../src/dev/grpc-echo.js';
import { patternChunk } from '../../src/dev/sample-service.js';
import { sidecarStateDir } from '../../src/dev/sample-workload.js';
import { keys } from '../../src/core/keys.js';
import { FederationStore } from '../../src/federation/store.js';
import type { TrafficRecord } from '../../src/model/records.js';
import { waitFor } from '../helpers/cli.js';
import { storeOptions } from '../helpers/etcd.js';
import { viaProxy } from '../helpers/proxy.js';

const run = promisify(execFile);
let mesh: DevMesh;
let stateDir: string;
let echo: InstanceType<typeof EchoClient>;
const east = () => mesh.file.clusters.east!;
const grpcListener = () => east().client.listeners['demo/grpc-echo']!;

type Unary = (request: { message: string }, metadata: grpc.Metadata, callback: (err: grpc.ServiceError | null, reply?: EchoReply) => void) => void;
function unary(client: InstanceType<typeof EchoClient>, message: string, metadata = new grpc.Metadata()): Promise<EchoReply> {
  return new Promise((resolve, reject) => {
    (client as unknown as { Echo: Unary }).Echo({ message }, metadata, (err, reply) => (err ? reject(err) : resolve(reply!)));
  });
}

// `isthmus dev up` with the gRPC echo sample in west, on 127.0.172.1 (east) / 127.0.173.1 (west).
beforeAll(async () => {
  stateDir = mkdtempSync(join(tmpdir(), 'isthmus-http2-'));
  mesh = await startDevMesh({ clusters: ['east', 'west'], stateDir, trustDomain: 'h2.test', gateways: 1, hostBase: 171, grpcEcho: true, reportIntervalMs: 1000, progress: () => undefined });
  await waitFor(async () => (await viaProxy(east().client.proxy, 'http://ledger.demo.mesh/')).status === 200, 15_000, 'ledger reachable from east');
  echo = new EchoClient(grpcListener(), grpc.credentials.createInsecure());
  await waitFor(async () => (await unary(echo, 'ready?').catch(() => undefined))?.cluster === 'west', 15_000, 'grpc-echo reachable from east');
}, 120_000);

afterAll(async () => {
  echo?.close();
  await mesh?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

async function curlH2(args: string[]): Promise<{ version: string; status: string; body: string }> {
  const { stdout } = await run('curl', ['-sS', '--http2-prior-knowledge', '-w', '\n%{http_version} %{http_code}', ...args]);
  const split = stdout.lastIndexOf('\n');
  const [version, status] = stdout.slice(split + 1).split(' ') as [string, string];
  return { version, status, body: stdout.slice(0, split) };
}

describe('HTTP/2 and gRPC from east to services only west runs, through west\'s gateway', () => {
  test('curl --http2-prior-knowledge on east\'s fixed listener and proxy port gets ledger\'s answer over HTTP/2', async () => {
    const listener = await curlH2([`http://${east().client.listeners['demo/ledger']}/h2?x=1`]);
    expect(listener).toMatchObject({ version: '2', status: '200' });
    expect(JSON.parse(listener.body)).toMatchObject({ cluster: 'west', path: '/h2?x=1', caller: expect.stringContaining('URI=spiffe://h2.test/ns/demo/sa/client') });
    const proxy = await curlH2(['-H', 'host: ledger.demo.mesh', `http://${east().client.proxy}/via-proxy`]);
    expect(proxy).toMatchObject({ version: '2', status: '200' });
    expect(JSON.parse(proxy.body)).toMatchObject({ cluster: 'west', path: '/via-proxy' });
    // A body both ways, translated to HTTP/1.1 for ledger's app and back.
    const posted = await curlH2(['--data-binary', 'hello over h2', `http://${east().client.listeners['demo/ledger']}/echo`]);
    expect(posted).toMatchObject({ version: '2', status: '200', body: 'hello over h2' });
    // HTTP/1.1 on the same port still works as before.
    const { stdout } = await run('curl', ['-sS', '-w', '\n%{http_version}', `http://${east().client.listeners['demo/ledger']}/h1`]);
    expect(stdout.endsWith('\n1.1')).toBe(true);
  });

  test('a 24 MiB HTTP/2 upload to ledger\'s /echo (an HTTP/1.1 app) comes back whole, with the x-sha256 trailer the app announced', async () => {
    const body = randomBytes(24 * 1024 * 1024);
    const sent = createHash('sha256').update(body).digest('hex');
    const session = h2Connect(`http://${east().client.listeners['demo/ledger']}`);
    try {
      const answer = await new Promise<{ status: unknown; hash: string; bytes: number; trailers: IncomingHttpHeaders | undefined }>((resolve, reject) => {
        const stream = session.request({ ':method': 'POST', ':path': '/echo', 'content-type': 'application/octet-stream' });
        const hash = createHash('sha256');
        let bytes = 0;
        let status: unknown;
        let trailers: IncomingHttpHeaders | undefined;
        stream.on('response', (headers) => { status = headers[':status']; });
        stream.on('trailers', (t) => { trailers = t; });
        stream.on('data', (chunk: Buffer) => { hash.update(chunk); bytes += chunk.length; });
        stream.on('end', () => resolve({ status, hash: hash.digest('hex'), bytes, trailers }));
        stream.on('error', reject);
        // In 1 MiB writes, so that HTTP/2 flow control and the sidecars' back-pressure are in play.
        let offset = 0;
        const next = () => {
          while (offset < body.length) {
            const chunk = body.subarray(offset, offset + 1024 * 1024);
            offset += chunk.length;
            if (!stream.write(chunk)) return void stream.once('drain', next);
          }
          stream.end();
        };
        next();
      });
      expect(answer).toMatchObject({ status: 200, bytes: body.length, hash: sent });
      expect(answer.trailers?.['x-sha256']).toBe(sent);
    } finally {
      session.close();
    }
  });

  test('a 128 MiB HTTP/2 download read slowly arrives whole (hash checked), and no proxy on the way holds what the reader has not taken', async () => {
    const size = 128 * 1024 * 1024;
    // The reader rests 2 ms after each 64 KiB (at most 32 MB/s), so the app and the proxies
    // would run far ahead of it without back-pressure through HTTP/2's windows and HTTP/1.1's
    // sockets; anything a hop took in and held would show in this process's memory (the whole
    // mesh runs in it).
    const expected = createHash('sha256');
    const block = patternChunk(0, 251 * 261);
    for (let sent = 0; sent < size; sent += block.length) expected.update(size - sent >= block.length ? block : block.subarray(0, size - sent));
    const session = h2Connect(`http://${east().client.listeners['demo/ledger']}`);
    global.gc?.();
    const before = process.memoryUsage.rss();
    let peak = before;
    const sampler = setInterval(() => { peak = Math.max(peak, process.memoryUsage.rss()); }, 100);
    try {
      const answer = await new Promise<{ status: unknown; hash: string; bytes: number }>((resolve, reject) => {
        const stream = session.request({ ':method': 'GET', ':path': `/bytes?n=${size}` });
        const hash = createHash('sha256');
        let bytes = 0;
        let status: unknown;
        stream.on('response', (headers) => { status = headers[':status']; });
        stream.on('error', reject);
        let sinceRest = 0;
        const slow = new Writable({
          highWaterMark: 64 * 1024,
          write(chunk: Buffer, _encoding, done) {
            hash.update(chunk);
            bytes += chunk.length;
            sinceRest += chunk.length;
            if (sinceRest < 64 * 1024) return done();
            sinceRest = 0;
            setTimeout(done, 2);
          },
        });
        slow.on('finish', () => resolve({ status, hash: hash.digest('hex'), bytes }));
        stream.pipe(slow);
      });
      expect(answer).toMatchObject({ status: 200, bytes: size, hash: expected.digest('hex') });
      // Held whole anywhere, the body would add 128 MiB; measured: +38 MiB (the windows, sockets and garbage of six proxies in one process).
      expect(peak - before, `RSS ${Math.round(before / 1048576)} MiB before, at most ${Math.round(peak / 1048576)} MiB during`).toBeLessThan(64 * 1024 * 1024);
    } finally {
      clearInterval(sampler);
      session.close();
    }
  }, 120_000);

  test('a sidecar\'s own error reaches an HTTP/2 client as an HTTP/2 answer with x-isthmus-error', async () => {
    const { stdout } = await run('curl', ['-sS', '-i', '--http2-prior-knowledge', '-H', 'host: nope.demo.mesh', `http://${east().client.proxy}/`]);
    expect(stdout).toMatch(/^HTTP\/2 503/);
    expect(stdout).toContain('x-isthmus-error: ISTHMUS_ERR_DATAPLANE_NO_ROUTE');
  });

  test('gRPC unary: metadata arrives, the caller\'s identity is given, and a non-OK status comes back with its message intact', async () => {
    const metadata = new grpc.Metadata();
    metadata.set('x-echo-request', 'r-42');
    const reply = await unary(echo, 'hi', metadata);
    expect(reply).toMatchObject({ message: 'hi', cluster: 'west', metadata: { 'x-echo-request': 'r-42' } });
    expect(reply.caller).toContain('URI=spiffe://h2.test/ns/demo/sa/client');

    const failing = new grpc.Metadata();
    failing.set('x-echo-status', String(grpc.status.NOT_FOUND));
    const err = await unary(echo, 'no such thing: 100% café\nline 2', failing).then(() => undefined, (e: grpc.ServiceError) => e);
    expect(err?.code).toBe(grpc.status.NOT_FOUND);
    expect(err?.details).toBe('no such thing: 100% café\nline 2');
    expect(err?.metadata.get('x-echo-where')).toEqual(['west/grpc-echo-west-1']);
  });

  test('gRPC bidirectional streaming: 2000 messages each way, all answered in order', async () => {
    const call = (echo as unknown as { EchoStream: () => grpc.ClientDuplexStream<{ message: string }, EchoReply> }).EchoStream();
    const received: string[] = [];
    const ended = new Promise<void>((resolve, reject) => {
      call.on('data', (reply: EchoReply) => received.push(reply.message));
      call.on('end', resolve);
      call.on('error', reject);
    });
    for (let i = 0; i < 2000; i += 1) {
      if (!call.write({ message: `m${i} ${'x'.repeat(i % 300)}` })) await new Promise((r) => call.once('drain', r));
    }
    call.end();
    await ended;
    expect(received).toHaveLength(2000);
    expect(received.every((m, i) => m.startsWith(`m${i} `))).toBe(true);
  });

  test('a gRPC stream cancelled by the client is cancelled at the server in west too (RST_STREAM passed on)', async () => {
    const before = (await unary(echo, 'count')).cancelledStreams;
    const call = (echo as unknown as { EchoStream: () => grpc.ClientDuplexStream<{ message: string }, EchoReply> }).EchoStream();
    call.on('error', () => undefined); // CANCELLED, as asked
    const first = new Promise((resolve) => call.once('data', resolve));
    call.write({ message: 'then cancel' });
    await first;
    call.cancel();
    await waitFor(async () => (await unary(echo, 'count')).cancelledStreams === before + 1, 5_000, 'the server saw the cancel');
  });

  test('gRPC to an app that speaks HTTP/1.1 is refused with UNIMPLEMENTED naming inbound.appProtocol', async () => {
    const ledger = new EchoClient(east().client.listeners['demo/ledger']!, grpc.credentials.createInsecure());
    try {
      const err = await unary(ledger, 'x').then(() => undefined, (e: grpc.ServiceError) => e);
      expect(err?.code).toBe(grpc.status.UNIMPLEMENTED);
      expect(err?.details).toContain('inbound.appProtocol: h2c');
      expect(err?.metadata.get('x-isthmus-error')).toEqual(['ISTHMUS_ERR_DATAPLANE_PROTOCOL_UNSUPPORTED']);
    } finally {
      ledger.close();
    }
  });

  test('the gRPC requests crossed west\'s gateway, and the two sidecars chose h2 by ALPN', async () => {
    const gateway = mesh.gateways.find((g) => g.cluster === 'west')!;
    const admin = gateway.address.replace(/:\d+$/, ':15021');
    const metrics = await (await fetch(`http://${admin}/metrics`)).text();
    const match = /^isthmus_gateway_connections_total\{[^}]*destination_service="demo\/grpc-echo"[^}]*\} (\d+)/m.exec(metrics);
    expect(Number(match?.[1] ?? 0)).toBeGreaterThanOrEqual(1);

    // With east's client certificate, through the gateway as a sidecar connects: h2 is chosen when
    // offered, HTTP/1.1 when it is all that is offered.
    const held = JSON.parse(readFileSync(join(sidecarStateDir(stateDir, 'east', 'client'), 'identity.json'), 'utf8')) as { cert: string; chain: string[]; key: string; trustBundle: string[] };
    const [host, port] = [gateway.address.slice(0, gateway.address.lastIndexOf(':')), Number(gateway.address.slice(gateway.address.lastIndexOf(':') + 1))];
    const alpn = (offered: string[]) => new Promise<string | false | null>((resolve, reject) => {
      const socket = tlsConnect({
        host, port, servername: 'grpc-echo.demo.svc.west.isthmus', ALPNProtocols: offered, ca: held.trustBundle,
        cert: [held.cert, ...held.chain].join('\n'), key: held.key, checkServerIdentity: () => undefined,
      }, () => {
        resolve(socket.alpnProtocol);
        socket.destroy();
      });
      socket.once('error', reject);
    });
    expect(await alpn(['h2', 'http/1.1'])).toBe('h2');
    expect(await alpn(['http/1.1'])).toBe('http/1.1');
  });

  test('a gRPC call is counted when it ends, by its grpc-status, at both sidecars; an UNAVAILABLE from the app counts as failed in the traffic the dashboard shows', async () => {
    const echoAdmin = (() => { const w = mesh.workloads.find((x) => x.spec.service === 'grpc-echo')!; return `${w.spec.host}:${w.spec.adminPort}`; })();
    const count = async (admin: string, metric: string, labels: RegExp) => {
      const text = await (await fetch(`http://${admin}/metrics`)).text();
      const line = text.split('\n').find((l) => l.startsWith(`${metric}{`) && labels.test(l));
      return Number(line?.split(' ').pop() ?? 0);
    };
    const outbound = (status: string) => count(east().client.admin, 'isthmus_grpc_requests_total', new RegExp(`destination_service="demo/grpc-echo",grpc_status="${status}"`));
    const inbound = (status: string) => count(echoAdmin, 'isthmus_inbound_grpc_requests_total', new RegExp(`source_service_account="client",grpc_status="${status}"`));
    const store = await FederationStore.connect(storeOptions(mesh.file));
    try {
      const reported = async () => (await store.get<TrafficRecord>(keys.trafficOf('east')))?.value.routes.find((r) => r.service === 'grpc-echo' && r.to === 'west');
      // The earlier tests' calls are reported first: their counts, once two reads 3.5 s apart
      // agree, are the baseline. A call reaches the record in up to 3 s (the sidecar reports
      // every second, the federation publishes what it got every 2 s), so reads closer than
      // that can agree while a report is still on its way.
      let last = -1;
      await waitFor(async () => {
        const requests = (await reported())?.requests ?? 0;
        const settled = requests === last;
        last = requests;
        if (!settled) await new Promise((r) => setTimeout(r, 3500));
        return settled;
      }, 20_000, 'the earlier calls reported');
      const before = { ok: await outbound('0'), unavailable: await outbound('14'), notFound: await outbound('5'), inbound: await inbound('14'), traffic: await reported() };
      const failing = (status: number) => { const m = new grpc.Metadata(); m.set('x-echo-status', String(status)); return m; };
      for (let i = 0; i < 2; i += 1) await unary(echo, 'fine');
      for (let i = 0; i < 3; i += 1) await expect(unary(echo, 'down', failing(grpc.status.UNAVAILABLE))).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
      await expect(unary(echo, 'nothing', failing(grpc.status.NOT_FOUND))).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
      // Counted once each stream has closed. (Within 5 s in every run but one: a full CI run on the
      // two shared cores, 2026-12-06, where the suite's other files ran beside it; 15 s there.)
      await waitFor(async () => (await outbound('14')) === before.unavailable + 3 && (await inbound('14')) === before.inbound + 3, 15_000, 'the calls counted');
      expect(await outbound('0')).toBe(before.ok + 2);
      expect(await outbound('5')).toBe(before.notFound + 1);
      // Only the three UNAVAILABLE count as failed: NOT_FOUND is the caller's doing, as a 404 would be.
      const { value: traffic } = await waitFor(async () => {
        const now = await reported();
        return now && now.requests >= (before.traffic?.requests ?? 0) + 6 ? now : undefined;
      }, 10_000, 'the calls reported to the federation');
      expect(traffic.requests - (before.traffic?.requests ?? 0)).toBe(6);
      expect(traffic.errors - (before.traffic?.errors ?? 0)).toBe(3);
    } finally {
      await store.close();
    }
  });

  test('with grpc-echo gone, a gRPC call gets UNAVAILABLE (14) from east\'s sidecar, with the error code in its metadata', async () => {
    await mesh.workloads.find((w) => w.spec.service === 'grpc-echo')!.stop();
    const err = await unary(echo, 'anyone?').then(() => undefined, (e: grpc.ServiceError) => e);
    expect(err?.code).toBe(grpc.status.UNAVAILABLE);
    expect(String(err?.metadata.get('x-isthmus-error')[0])).toMatch(/^ISTHMUS_ERR_DATAPLANE_/);
    expect(err?.details).toContain('demo/grpc-echo');
  });
});
