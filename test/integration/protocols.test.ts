import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { connect as http2Connect } from 'node:http2';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import WebSocket from 'ws';
import { startDevMesh, type DevMesh } from '../../src/dev/dev-mesh.js';
import { patternChunk } from '../../src/dev/sample-service.js';
import { waitFor } from '../helpers/cli.js';
import { viaProxy } from '../helpers/proxy.js';

let mesh: DevMesh;
let stateDir: string;
const east = () => mesh.file.clusters.east!;
const split = (address: string) => ({ host: address.slice(0, address.lastIndexOf(':')), port: Number(address.slice(address.lastIndexOf(':') + 1)) });

// `isthmus dev up` with its sample apps (echo, bytes, WebSocket) on 127.0.92.1 / 127.0.93.1.
beforeAll(async () => {
  stateDir = mkdtempSync(join(tmpdir(), 'isthmus-protocols-'));
  mesh = await startDevMesh({ clusters: ['east', 'west'], stateDir, trustDomain: 'proto.test', gateways: 1, hostBase: 91, progress: () => undefined });
  await waitFor(async () => (await viaProxy(east().client.proxy, 'http://ledger.demo.mesh/')).status === 200, 15_000, 'ledger reachable from east');
}, 120_000);

afterAll(async () => {
  await mesh?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

/** The SHA-256 of `bytes` bytes of the samples' pattern (byte i is i mod 251), made in blocks. */
function patternHash(bytes: number): string {
  const hash = createHash('sha256');
  const block = patternChunk(0, 251 * 261);
  for (let sent = 0; sent < bytes; sent += block.length) hash.update(bytes - sent >= block.length ? block : block.subarray(0, bytes - sent));
  return hash.digest('hex');
}

/** Highest RSS of this process (where the whole dev mesh runs) while `work` runs, sampled every 100 ms. */
async function peakRss<T>(work: () => Promise<T>): Promise<{ result: T; before: number; peak: number }> {
  global.gc?.();
  const before = process.memoryUsage.rss();
  let peak = before;
  const timer = setInterval(() => { peak = Math.max(peak, process.memoryUsage.rss()); }, 100);
  try {
    const result = await work();
    return { result, before, peak };
  } finally {
    clearInterval(timer);
  }
}

/**
 * curl with the given arguments; `upload` bytes of the pattern are fed to its standard input
 * as it reads them, and what it prints is hashed as it arrives: neither side holds a body.
 */
function curl(args: string[], upload = 0): Promise<{ code: number | null; sha256: string; bytes: number; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('curl', ['-sS', '--fail-with-body', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    const hash = createHash('sha256');
    let bytes = 0;
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => { hash.update(c); bytes += c.length; });
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, sha256: hash.digest('hex'), bytes, stderr }));
    if (upload === 0) return void child.stdin.end();
    const block = patternChunk(0, 251 * 261);
    let sent = 0;
    const more = () => {
      while (sent < upload) {
        const size = Math.min(block.length, upload - sent);
        sent += size;
        if (!child.stdin.write(size === block.length ? block : block.subarray(0, size))) return void child.stdin.once('drain', more);
      }
      child.stdin.end();
    };
    child.stdin.on('error', () => undefined);
    more();
  });
}

describe('bodies of any size stream through the mesh', () => {
  const size = 512 * 1024 * 1024;

  test('a 512 MiB upload crosses to west and its echo comes back byte for byte, with the mesh\'s memory flat', async () => {
    const { result, before, peak } = await peakRss(() => curl(['-x', `http://${east().client.proxy}`, '-X', 'POST', '-T', '-', '-H', 'content-type: application/octet-stream', 'http://ledger.demo.mesh/echo'], size));
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.bytes).toBe(size);
    expect(result.sha256).toBe(patternHash(size));
    // Buffering the body anywhere in the chain would add at least its size.
    expect(peak - before).toBeLessThan(160 * 1024 * 1024);
  }, 180_000);

  test('a 512 MiB download from west arrives whole (hash checked), with the mesh\'s memory flat', async () => {
    const { result, before, peak } = await peakRss(() => curl(['-x', `http://${east().client.proxy}`, `http://ledger.demo.mesh/bytes?n=${size}`]));
    expect(result.code).toBe(0);
    expect(result.bytes).toBe(size);
    expect(result.sha256).toBe(patternHash(size));
    expect(peak - before).toBeLessThan(160 * 1024 * 1024);
  }, 180_000);

  test('a 512 MiB download with no length (chunked, as an app that streams what it does not measure sends it) arrives whole, with the mesh\'s memory flat', async () => {
    const { result, before, peak } = await peakRss(() => curl(['-x', `http://${east().client.proxy}`, `http://ledger.demo.mesh/bytes?n=${size}&chunked=1`]));
    expect(result.code).toBe(0);
    expect(result.bytes).toBe(size);
    expect(result.sha256).toBe(patternHash(size));
    expect(peak - before).toBeLessThan(160 * 1024 * 1024);
  }, 180_000);

  test('a 3 MB POST within one cluster (east hello), sent with Expect: 100-continue, is echoed whole', async () => {
    const bytes = 3 * 1000 * 1000;
    const result = await curl(['-x', `http://${east().client.proxy}`, '--data-binary', '@-', 'http://hello.demo.mesh/echo'], bytes);
    expect(result.code).toBe(0);
    expect(result.sha256).toBe(patternHash(bytes));
  }, 60_000);
});

describe('one kept connection, bodies of many sizes', () => {
  test('POSTs of 0 B to 1 MB and GETs between them, one after another on one connection to the outbound, cross-cluster and within east: each answered whole', async () => {
    const agent = new HttpAgent({ keepAlive: true, maxSockets: 1 });
    const { host, port } = split(east().client.proxy);
    const send = (url: string, body?: Buffer) => new Promise<{ status: number; echoed: Buffer; reused: boolean }>((resolve, reject) => {
      const req = httpRequest({ host, port, agent, method: body ? 'POST' : 'GET', path: url, headers: { host: new URL(url).host } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, echoed: Buffer.concat(chunks), reused: req.reusedSocket }));
      });
      // A request the connection never reads hangs: fail it instead of the whole test's timeout.
      req.setTimeout(10_000, () => req.destroy(new Error(`no answer to ${url} within 10 s`)));
      req.on('error', reject);
      req.end(body);
    });
    try {
      let reused = 0;
      for (const service of ['ledger', 'hello']) {
        for (const size of [0, 1, 16_383, 16_384, 16_385, 20_000, 65_536, 300_000, 1_000_000]) {
          const body = patternChunk(0, size);
          const posted = await send(`http://${service}.demo.mesh/echo`, body);
          expect({ service, size, status: posted.status, same: posted.echoed.equals(body) }).toEqual({ service, size, status: 200, same: true });
          const got = await send(`http://${service}.demo.mesh/`);
          expect({ service, size, status: got.status }).toEqual({ service, size, status: 200 });
          reused += Number(posted.reused) + Number(got.reused);
        }
      }
      // Every request but the first went on the connection the first opened.
      expect(reused).toBe(2 * 2 * 9 - 1);
    } finally {
      agent.destroy();
    }
  }, 120_000);
});

describe('kept connections under a mix of requests', () => {
  test('echo POSTs (with a length, chunked, or after 100-continue), downloads read fast or slowly or chunked, and HEADs, at random sizes around the buffers\' limits, on three kept connections at once: every answer whole', async () => {
    const { host, port } = split(east().client.proxy);
    // A fixed sequence (a linear congruential generator), so that a failure can be run again.
    let seed = 20261206;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
    const sizes = [0, 1, 16_383, 16_384, 16_385, 65_535, 65_536, 65_537, 300_000];
    const kinds = ['echo', 'echo-chunked', 'echo-expect', 'bytes-fast', 'bytes-slow', 'bytes-chunked', 'head'] as const;
    const outcomes: string[] = [];
    const one = (agent: HttpAgent, service: string) => new Promise<void>((resolve) => {
      const kind = kinds[Math.floor(random() * kinds.length)] as (typeof kinds)[number];
      const size = sizes[Math.floor(random() * sizes.length)] as number;
      const echo = kind.startsWith('echo');
      const body = echo ? patternChunk(size % 251, size) : undefined;
      const headers: Record<string, string> = { host: `${service}.demo.mesh` };
      if (kind === 'echo' || kind === 'echo-expect') headers['content-length'] = String(size);
      if (kind === 'echo-expect') headers.expect = '100-continue';
      const req = httpRequest({
        host, port, agent, headers, method: kind === 'head' ? 'HEAD' : echo ? 'POST' : 'GET',
        path: `http://${service}.demo.mesh${echo ? '/echo' : `/bytes?n=${size}${kind === 'bytes-chunked' ? '&chunked=1' : ''}`}`,
      }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => {
          chunks.push(c);
          if (kind === 'bytes-slow') {
            res.pause();
            setTimeout(() => res.resume(), 1);
          }
        });
        res.on('end', () => {
          const got = Buffer.concat(chunks);
          const whole = echo ? got.equals(body as Buffer) : kind === 'head' ? got.length === 0 : got.equals(patternChunk(0, size));
          outcomes.push(`${kind} ${size}: ${res.statusCode}${whole ? '' : ` with ${got.length} bytes, not the answer`}`);
          resolve();
        });
      });
      req.setTimeout(10_000, () => req.destroy(new Error('no answer within 10 s')));
      req.on('error', (err) => {
        outcomes.push(`${kind} ${size}: ${err.message}`);
        resolve();
      });
      if (kind === 'echo-expect') return void req.on('continue', () => req.end(body));
      if (kind !== 'echo-chunked' || !body) return void req.end(body);
      // Chunked, in pieces of up to 40 KB.
      for (let at = 0; at < body.length;) {
        const piece = 1 + Math.floor(random() * 40_000);
        req.write(body.subarray(at, at + piece));
        at += piece;
      }
      req.end();
    });
    await Promise.all(['ledger', 'hello', 'ledger'].map(async (service) => {
      const agent = new HttpAgent({ keepAlive: true, maxSockets: 1 });
      try {
        for (let i = 0; i < 30; i += 1) await one(agent, service);
      } finally {
        agent.destroy();
      }
    }));
    expect(outcomes.filter((o) => !/: 200$/.test(o))).toEqual([]);
    expect(outcomes).toHaveLength(90);
  }, 120_000);
});

/** Sends a raw request head to `address` and reads until the end of the response head. */
function rawExchange(address: string, head: string): Promise<{ socket: Socket; head: string; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    const socket = netConnect(split(address), () => socket.write(head));
    let buffered = Buffer.alloc(0);
    const onData = (c: Buffer) => {
      buffered = Buffer.concat([buffered, c]);
      const end = buffered.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.removeListener('data', onData);
      socket.pause();
      resolve({ socket, head: buffered.subarray(0, end).toString('latin1'), rest: buffered.subarray(end + 4) });
    };
    socket.on('data', onData);
    socket.once('error', reject);
    setTimeout(() => reject(new Error(`no response head from ${address}`)), 10_000).unref();
  });
}

function readAll(socket: Socket, first: Buffer): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks = [first];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.once('end', () => resolve(Buffer.concat(chunks)));
    socket.once('close', () => resolve(Buffer.concat(chunks)));
    socket.resume();
  });
}

describe('curl --http2 on an http:// URL (an upgrade to h2c)', () => {
  test.each([
    ['east\'s fixed listener for ledger', () => [`http://${east().client.listeners['demo/ledger']!}/`]],
    ['the proxy port', () => ['-x', `http://${east().client.proxy}`, 'http://ledger.demo.mesh/']],
  ])('through %s: answered over HTTP/1.1 by west\'s ledger, the upgrade ignored', async (_where, args) => {
    const run = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
      const child = spawn('curl', ['-sS', '-m', '10', '--http2', '-w', '\n%{http_code} %{http_version}', ...args()], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
      child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stdout, stderr }));
    });
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const [body, status] = run.stdout.split('\n') as [string, string];
    expect(status).toBe('200 1.1');
    expect(JSON.parse(body)).toMatchObject({ service: 'ledger', cluster: 'west' });
  });
});

describe('WebSocket and CONNECT', () => {
  test('a WebSocket through east\'s fixed listener for ledger echoes messages both ways, and the app learns the caller\'s identity', async () => {
    const listener = east().client.listeners['demo/ledger']!;
    const ws = new WebSocket(`ws://${listener}/ws`);
    const upgrade = await new Promise<Record<string, string | string[] | undefined>>((resolve, reject) => {
      ws.once('upgrade', (res) => resolve(res.headers));
      ws.once('error', reject);
    });
    await new Promise<void>((resolve) => (ws.readyState === WebSocket.OPEN ? resolve() : ws.once('open', () => resolve())));
    expect(upgrade['x-sample-where']).toMatch(/^west\//);
    expect(upgrade['x-sample-caller']).toMatch(/;URI=spiffe:\/\/proto\.test\/ns\/demo\/sa\/client$/);
    const replies: string[] = [];
    ws.on('message', (data) => replies.push(data.toString()));
    const big = 'x'.repeat(200_000);
    for (const text of ['one', 'two', big]) ws.send(text);
    await waitFor(async () => replies.length === 3, 10_000, 'three echoes');
    expect(replies).toEqual(['one', 'two', big]);
    const closed = new Promise((resolve) => ws.once('close', resolve));
    ws.close();
    await closed;
  });

  test('a WebSocket held open shows its bytes in east\'s isthmus_tunnel_bytes_total and ledger\'s isthmus_inbound_tunnel_bytes_total before it closes, each byte once', async () => {
    const ledger = mesh.workloads.find((w) => w.spec.service === 'ledger')!;
    const route = 'source_cluster="east",destination_cluster="west",destination_service="demo/ledger"';
    const caller = 'destination_cluster="west",destination_service="demo/ledger",source_namespace="demo",source_service_account="client"';
    const read = async () => {
      const [e, w] = await Promise.all([east().client.admin, `${ledger.spec.host}:${ledger.spec.adminPort}`].map(async (admin) => (await fetch(`http://${admin}/metrics`)).text())) as [string, string];
      const value = (text: string, name: string, labels: string) => Number(text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(labels))?.split(' ').pop() ?? 0);
      return {
        sent: value(e, 'isthmus_tunnel_bytes_total', `${route},direction="sent"`),
        received: value(e, 'isthmus_tunnel_bytes_total', `${route},direction="received"`),
        appReceived: value(w, 'isthmus_inbound_tunnel_bytes_total', `${caller},direction="received"`),
        appSent: value(w, 'isthmus_inbound_tunnel_bytes_total', `${caller},direction="sent"`),
      };
    };
    const delta = (a: Awaited<ReturnType<typeof read>>, b: Awaited<ReturnType<typeof read>>) => ({ sent: a.sent - b.sent, received: a.received - b.received, appReceived: a.appReceived - b.appReceived, appSent: a.appSent - b.appSent });
    // The starting point is taken once both ends agree: an earlier test's tunnel may still be
    // closing, its last frames counted at one end before this reading and at the other after
    // (ci102), which no later reading could make equal again.
    const { value: before } = await waitFor(async () => {
      const now = await read();
      return now.appReceived === now.sent && now.appSent === now.received ? now : undefined;
    }, 10_000, 'both ends agreeing before the test\'s tunnel opens');
    const ws = new WebSocket(`ws://${east().client.listeners['demo/ledger']!}/ws`);
    await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject); });
    const replies: string[] = [];
    ws.on('message', (data) => replies.push(data.toString()));
    const message = 'y'.repeat(100_000);
    ws.send(message);
    await waitFor(async () => replies.length === 1, 10_000, 'the echo');
    // Open still: 100 kB each way (in WebSocket frames), and the 101 back, are counted already, the
    // same at both ends once no frame is between them (the two scrapes are not one instant).
    const { value: open } = await waitFor(async () => {
      const now = delta(await read(), before);
      return now.appReceived === now.sent && now.appSent === now.received ? now : undefined;
    }, 5_000, 'both ends counting the same bytes');
    expect(open.sent).toBeGreaterThan(100_000);
    expect(open.received).toBeGreaterThan(100_000);
    const closed = new Promise((resolve) => ws.once('close', resolve));
    ws.close();
    await closed;
    // Closed: only the close frames come on top; what was counted while open is not counted again.
    const { value: after } = await waitFor(async () => {
      const now = delta(await read(), before);
      return now.sent > open.sent && now.appSent > open.appSent ? now : undefined;
    }, 10_000, 'the close frames counted');
    expect(after.sent - open.sent).toBeLessThan(64);
    expect(after.received - open.received).toBeLessThan(64);
    await waitFor(async () => {
      const now = delta(await read(), before);
      return now.appReceived === now.sent && now.appSent === now.received;
    }, 5_000, 'both ends counting the same bytes after the close');
  });

  test('an absolute-form WebSocket upgrade through the outbound proxy gets the app\'s 101', async () => {
    const { socket, head } = await rawExchange(east().client.proxy, [
      'GET http://ledger.demo.mesh/ws HTTP/1.1', 'Host: ledger.demo.mesh', 'Upgrade: websocket', 'Connection: Upgrade',
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Version: 13', '', '',
    ].join('\r\n'));
    socket.destroy();
    expect(head).toMatch(/^HTTP\/1\.1 101 /);
    expect(head).toMatch(/sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=/i);
    expect(head).toMatch(/x-sample-where: west\//i);
  });

  test('CONNECT ledger.demo.mesh:80 opens a tunnel to west\'s ledger; a half-closed request still gets its whole answer', async () => {
    const { socket, head, rest } = await rawExchange(east().client.proxy, 'CONNECT ledger.demo.mesh:80 HTTP/1.1\r\nHost: ledger.demo.mesh:80\r\n\r\n');
    expect(head).toMatch(/^HTTP\/1\.1 200 /);
    const body = 'through a tunnel';
    socket.write(`POST /echo HTTP/1.1\r\nHost: ledger.demo.mesh\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
    socket.end(); // our FIN goes through; the answer must still come back
    const answer = (await readAll(socket, rest)).toString('latin1');
    expect(answer).toMatch(/^HTTP\/1\.1 200 /);
    expect(answer).toContain(body);
  });

  test('CONNECT ledger.demo.mesh:80 over HTTP/2 (Node\'s HTTP/2 client as the app, h2c to the proxy port) opens the same tunnel to west\'s ledger', async () => {
    const session = http2Connect(`http://${east().client.proxy}`);
    session.on('error', () => undefined);
    try {
      const stream = session.request({ ':method': 'CONNECT', ':authority': 'ledger.demo.mesh:80' }, { endStream: false });
      const head = await new Promise<Record<string, unknown>>((resolve, reject) => {
        stream.once('response', resolve);
        stream.once('error', reject);
      });
      expect(head[':status']).toBe(200);
      const body = 'through an HTTP/2 tunnel';
      // An HTTP/1.1 exchange inside the tunnel, then the app's END_STREAM: the answer still comes back whole.
      stream.end(`POST /echo HTTP/1.1\r\nHost: ledger.demo.mesh\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      await new Promise((resolve) => stream.once('close', resolve));
      const answer = Buffer.concat(chunks).toString('latin1');
      expect(answer).toMatch(/^HTTP\/1\.1 200 /);
      // The echo app streams the body back chunked, its SHA-256 in a trailer: the same bytes came through.
      const sha256 = createHash('sha256').update(body).digest('hex');
      expect(answer).toContain(`\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\nx-sha256: ${sha256}\r\n\r\n`);
      expect(stream.rstCode).toBe(0);
    } finally {
      session.destroy();
    }
  });

  test('CONNECT to a name that is not in the mesh is refused with a code, at once', async () => {
    const { socket, head, rest } = await rawExchange(east().client.proxy, 'CONNECT nope.demo.mesh:80 HTTP/1.1\r\nHost: nope.demo.mesh:80\r\n\r\n');
    const body = (await readAll(socket, rest)).toString();
    expect(head).toMatch(/^HTTP\/1\.1 503 /);
    expect(head).toMatch(/x-isthmus-error: ISTHMUS_ERR_DATAPLANE_NO_ROUTE/);
    expect(JSON.parse(body).error.message).toMatch(/demo\/nope is not in the mesh/);
  });
});
