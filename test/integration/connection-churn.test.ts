import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, expect, test } from 'vitest';
import WebSocket from 'ws';
import { startDevMesh, type DevMesh } from '../../src/dev/dev-mesh.js';
import { EchoClient } from '../../src/dev/grpc-echo.js';
import { hostPort } from '../../src/sidecar/listen.js';
import { waitFor } from '../helpers/cli.js';
import { viaProxy } from '../helpers/proxy.js';

/**
 * Connections that come and go, of every kind the data plane carries, leave nothing behind in the
 * proxies. The whole two-cluster mesh runs in this process (127.0.104.1 / 127.0.105.1, used by no
 * other test), so its heap is the proxies' heap: after a few hundred connections opened and closed
 * (cross-cluster: a cut upload or a dropped tunnel also ends connections between the sidecars,
 * through the gateway and to the app), or refused at every port, a full collection must bring it
 * back to where it was.
 *
 * Until 2026-12-06 every HTTP/1.1 connection a sidecar served or opened stayed in memory after it
 * closed (Node's native parser was freed but never closed; parser-release.test.ts): 120 rounds of
 * this test left about 30 MB behind (5 MB of heap, 25 MB of Buffers).
 */

let mesh: DevMesh;
let stateDir: string;
const east = () => mesh.file.clusters.east!;
const split = (address: string) => {
  const [host, port] = hostPort(address);
  return { host, port };
};

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

beforeAll(async () => {
  stateDir = mkdtempSync(join(tmpdir(), 'isthmus-churn-'));
  mesh = await startDevMesh({ clusters: ['east', 'west'], stateDir, trustDomain: 'churn.test', gateways: 1, hostBase: 104, grpcEcho: true, progress: () => undefined });
  await waitFor(async () => (await viaProxy(east().client.proxy, 'http://ledger.demo.mesh/')).status === 200, 15_000, 'ledger reachable from east');
}, 120_000);

afterAll(async () => {
  await mesh?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

/** What the process holds after full collections, in MB: V8's heap in use and the memory outside it that JavaScript objects own (Buffers, native parsers). */
async function heapAfterCollection(): Promise<number> {
  for (let i = 0; i < 3; i += 1) {
    // Parsers and sockets are let go on the turn after their close.
    await new Promise((resolve) => setTimeout(resolve, 50));
    await nextTurn();
    gc();
  }
  const m = process.memoryUsage();
  return (m.heapUsed + m.external) / 1048576;
}

/** A GET through east's proxy on a connection of its own, closed after the answer. */
function getOnNewConnection(): Promise<number> {
  const { host, port } = split(east().client.proxy);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host, port, path: 'http://ledger.demo.mesh/', agent: false, headers: { connection: 'close' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

/** A POST that promises 100 kB and goes away after 20 kB. */
function postCutShort(): Promise<void> {
  const { host, port } = split(east().client.proxy);
  return new Promise((resolve) => {
    const req = httpRequest({ host, port, method: 'POST', path: 'http://ledger.demo.mesh/echo', agent: false, headers: { 'content-length': 100_000 } });
    req.on('error', () => resolve());
    req.on('close', () => resolve());
    req.write(Buffer.alloc(20_000));
    setTimeout(() => req.destroy(), 10);
  });
}

/** A WebSocket to ledger through east's fixed listener: one echo, then dropped without a close frame. */
function webSocketDropped(): Promise<string> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://${east().client.listeners['demo/ledger']}/ws`);
    ws.on('open', () => ws.send('churn'));
    ws.on('message', (m) => {
      ws.terminate();
      resolve(String(m));
    });
    ws.on('error', reject);
  });
}

/** A CONNECT tunnel to ledger, one request through it, then the tunnel cut. */
function tunnelCut(): Promise<string> {
  const { host, port } = split(east().client.proxy);
  return new Promise((resolve, reject) => {
    const socket = netConnect(port, host, () => socket.write('CONNECT ledger.demo.mesh:80 HTTP/1.1\r\nhost: ledger.demo.mesh:80\r\n\r\n'));
    let got = '';
    socket.on('data', (chunk: Buffer) => {
      got += chunk.toString('latin1');
      if (/^HTTP\/1\.1 200[^]*\r\n\r\n$/.test(got)) socket.write('GET / HTTP/1.1\r\nhost: ledger.demo.mesh\r\n\r\n');
      else if (got.includes('"service":"ledger"')) {
        socket.destroy();
        resolve('ledger');
      }
    });
    socket.on('error', reject);
  });
}

/** A gRPC client of its own: a unary call, a bidirectional stream cancelled after two answers, then closed. */
async function grpcClient(): Promise<string> {
  const client = new EchoClient(east().client.listeners['demo/grpc-echo']!, grpc.credentials.createInsecure());
  const serialize = (v: unknown) => Buffer.from(JSON.stringify(v));
  const deserialize = (b: Buffer) => JSON.parse(b.toString()) as { cluster: string };
  try {
    const reply = await new Promise<{ cluster: string }>((resolve, reject) => {
      client.makeUnaryRequest('/isthmus.dev.Echo/Echo', serialize, deserialize, { message: 'churn' }, (err, r) => (err ? reject(err) : resolve(r!)));
    });
    await new Promise<void>((resolve) => {
      const stream = client.makeBidiStreamRequest('/isthmus.dev.Echo/EchoStream', serialize, deserialize);
      let answers = 0;
      stream.on('data', () => {
        answers += 1;
        if (answers === 2) stream.cancel();
        else stream.write({ message: `m${answers}` });
      });
      stream.on('error', () => resolve());
      stream.on('end', () => resolve());
      stream.write({ message: 'm0' });
    });
    return reply.cluster;
  } finally {
    client.close();
  }
}

/** redis in west through east's fixed TCP listener: a PING, then the connection dropped. */
function redisDropped(): Promise<string> {
  const { host, port } = split(east().client.listeners['demo/redis']!);
  return new Promise((resolve, reject) => {
    const socket = netConnect(port, host, () => socket.write('PING\r\n'));
    socket.on('data', (chunk: Buffer) => {
      socket.destroy();
      resolve(chunk.toString().trim());
    });
    socket.on('error', reject);
  });
}

/** Writes `bytes` on a new plain connection to `address` and resolves with what came back once the other side closed. */
function rawExchange(address: string, bytes: Buffer | string): Promise<string> {
  const { host, port } = split(address);
  return new Promise((resolve, reject) => {
    const socket = netConnect(port, host, () => socket.write(bytes));
    let got = '';
    socket.on('data', (chunk: Buffer) => { got += chunk.toString('latin1'); });
    const timer = setTimeout(() => socket.destroy(), 5_000);
    socket.on('error', reject);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
  });
}

/** A TLS handshake to `address` that the other side refuses: an unknown SNI at a gateway, no client certificate at an inbound. */
function tlsRefused(address: string, servername: string): Promise<string> {
  const { host, port } = split(address);
  return new Promise((resolve) => {
    const socket = tlsConnect({ host, port, servername, rejectUnauthorized: false });
    socket.on('secureConnect', () => socket.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n'));
    socket.on('data', () => undefined);
    socket.on('error', (err: Error & { code?: string }) => resolve(err.code ?? err.message));
    socket.on('close', () => resolve('closed'));
  });
}

async function refusedRound(): Promise<string[]> {
  const west = mesh.file.clusters.west!;
  const ledgerInbound = mesh.workloads.find((w) => w.spec.service === 'ledger')!.inbound;
  return [
    // The outbound's own error answers.
    String(await new Promise<number>((resolve, reject) => {
      const { host, port } = split(east().client.proxy);
      httpRequest({ host, port, path: 'http://nope.demo.mesh/', agent: false, headers: { connection: 'close' } }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode ?? 0)); }).on('error', reject).end();
    })),
    (await rawExchange(east().client.proxy, 'NOT HTTP AT ALL\r\n\r\n')).slice(0, 12),
    // An h2c preface, then garbage.
    (await rawExchange(east().client.listeners['demo/ledger']!, Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), Buffer.alloc(64, 0xff)]))).length > 0 ? 'goaway' : 'nothing',
    // Refused TLS: unknown SNI at west's gateway, no client certificate at ledger's inbound.
    (await tlsRefused(west.gateways[0]!, 'nobody.example')).length > 0 ? 'refused' : '',
    (await tlsRefused(ledgerInbound, 'ledger')).length > 0 ? 'refused' : '',
  ];
}

async function round(): Promise<string[]> {
  return [
    String(await getOnNewConnection()),
    await postCutShort().then(() => 'cut'),
    await webSocketDropped(),
    await tunnelCut(),
    await grpcClient(),
    await redisDropped(),
  ];
}

test('a few hundred connections of every kind, opened and closed, leave the proxies\' memory where it was', async () => {
  // Warm: pools, compiled code and caches reach their working size first.
  for (let i = 0; i < 20; i += 1) expect(await round()).toEqual(['200', 'cut', 'churn', 'ledger', 'west', '+PONG']);
  const before = await heapAfterCollection();
  for (let i = 0; i < 120; i += 1) await round();
  const after = await heapAfterCollection();
  // 720 connections from the test, and about as many between the proxies and to the apps.
  // Kept, they cost tens of megabytes; a few are allowed for what settles late (timers of
  // connections closing, the pools' own turnover). Measured: -0.2 MB with the parsers closed.
  expect(after - before, `heap and Buffers ${before.toFixed(1)} MB before, ${after.toFixed(1)} MB after`).toBeLessThan(8);
}, 180_000);

test('connections refused or answered with an error, at every port, leave the proxies\' memory where it was', async () => {
  for (let i = 0; i < 20; i += 1) expect(await refusedRound()).toEqual(['503', 'HTTP/1.1 400', 'goaway', 'refused', 'refused']);
  const before = await heapAfterCollection();
  for (let i = 0; i < 600; i += 1) await refusedRound();
  // Refused connections are destroyed 1 s after their refusal if the peer has not closed them.
  await new Promise((resolve) => setTimeout(resolve, 1_200));
  const after = await heapAfterCollection();
  // 3000 connections. Measured: +0.4 to +0.8 MB; +3.8 MB when the parsers of the two HTTP/1.1
  // connections in each round were not closed.
  expect(after - before, `heap and Buffers ${before.toFixed(1)} MB before, ${after.toFixed(1)} MB after`).toBeLessThan(2);
}, 180_000);
