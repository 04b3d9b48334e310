import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import WebSocket from 'ws';
import { startDevMesh, type DevMesh } from '../../src/dev/dev-mesh.js';
import { patternChunk } from '../../src/dev/sample-service.js';
import { hostPort } from '../../src/sidecar/listen.js';
import { waitFor } from '../helpers/cli.js';
import { viaProxy } from '../helpers/proxy.js';
import { chunkedUpload, sha256 as trailersSha } from '../helpers/trailers.js';

// `isthmus dev up --upgrade-to-http2` in this process, on 127.0.106.1 / 127.0.107.1: every
// sidecar sends the apps' HTTP/1.1 requests to other sidecars as HTTP/2 streams
// (outbound.upgradeToHttp2), and writes an access log that names each hop's protocol.
let mesh: DevMesh;
let stateDir: string;
const east = () => mesh.file.clusters.east!;
const west = () => mesh.file.clusters.west!;

beforeAll(async () => {
  stateDir = mkdtempSync(join(tmpdir(), 'isthmus-h2-upgrade-'));
  mesh = await startDevMesh({
    clusters: ['east', 'west'], stateDir, trustDomain: 'upgrade.test', gateways: 1, hostBase: 106, traffic: 0, versions: false,
    accessLog: 'json', upgradeToHttp2: true, progress: () => undefined,
  });
  await waitFor(async () => (await viaProxy(east().client.proxy, 'http://ledger.demo.mesh/')).status === 200, 15_000, 'ledger reachable from east');
}, 120_000);

afterAll(async () => {
  await mesh?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

interface Answer { status: number; body: Buffer; headers: Record<string, string | string[] | undefined>; trailers: Record<string, string | undefined> }

/** One HTTP/1.1 request to east's client sidecar, as an app behind HTTP_PROXY sends it. */
function send(method: string, url: string, body?: Buffer | ((write: (b: Buffer) => boolean, end: () => void) => void), headers: Record<string, string> = {}): Promise<Answer> {
  const [host, port] = hostPort(east().client.proxy);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host, port, method, path: url, headers: { host: new URL(url).host, ...headers }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), headers: res.headers, trailers: res.trailers }));
      res.on('error', reject);
    });
    req.setTimeout(60_000, () => req.destroy(new Error(`no answer to ${method} ${url} within 60 s`)));
    req.on('error', reject);
    if (typeof body === 'function') body((b) => req.write(b), () => req.end());
    else req.end(body);
  });
}

/** Established TCP connections from this host to `address` (the mesh runs in this process: these are its sidecars'). */
function connectionsTo(address: string): number {
  const [host, port] = hostPort(address);
  return execFileSync('ss', ['-Htn', 'state', 'established', 'dst', `${host}:${port}`], { encoding: 'utf8' }).split('\n').filter((l) => l.trim() !== '').length;
}

/** The access log lines of one dev sidecar, parsed. */
function accessLines(sidecar: string): { direction: string; protocol?: string; path?: string; status?: number }[] {
  return readFileSync(join(stateDir, 'logs', `${sidecar}.access.log`), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('HTTP/1.1 from the app, HTTP/2 between sidecars (outbound.upgradeToHttp2)', () => {
  test('100 requests at once cross to west on the connection east already had, each with the caller\'s identity, and west\'s inbound logs them as HTTP/2', async () => {
    const gateway = west().gateways[0]!;
    const before = connectionsTo(gateway);
    const answers = await Promise.all(Array.from({ length: 100 }, (_, i) => send('GET', `http://ledger.demo.mesh/burst?i=${i}`)));
    const during = connectionsTo(gateway);
    expect(answers.map((a) => a.status)).toEqual(Array(100).fill(200));
    for (const a of answers) expect(JSON.parse(a.body.toString()).caller).toContain('URI=spiffe://upgrade.test/ns/demo/sa/client');
    // HTTP/1.1 pools would have opened a connection for most of the requests in flight at once.
    expect(during).toBeLessThanOrEqual(Math.max(before, 1) + 1);
    await waitFor(async () => accessLines('sidecar-west-ledger-west-1').filter((l) => l.path?.startsWith('/burst')).length === 100, 5_000, 'west\'s access log has the burst');
    const inbound = accessLines('sidecar-west-ledger-west-1').filter((l) => l.path?.startsWith('/burst'));
    expect(new Set(inbound.map((l) => `${l.direction} ${l.protocol}`))).toEqual(new Set(['inbound HTTP/2']));
    const outbound = accessLines('sidecar-east-client').filter((l) => l.path?.startsWith('/burst'));
    expect(new Set(outbound.map((l) => `${l.direction} ${l.protocol}`))).toEqual(new Set(['outbound HTTP/1.1']));
  }, 60_000);

  test('a 64 MiB upload to west is echoed byte for byte, a 64 MiB download with a length and one without arrive whole', async () => {
    const size = 64 * 1024 * 1024;
    const block = patternChunk(0, 251 * 261);
    const expected = createHash('sha256');
    const upload = await send('POST', 'http://ledger.demo.mesh/echo', (write, end) => {
      let sent = 0;
      const more = () => {
        while (sent < size) {
          const piece = size - sent >= block.length ? block : block.subarray(0, size - sent);
          sent += piece.length;
          expected.update(piece);
          if (!write(piece)) return void setImmediate(more);
        }
        end();
      };
      more();
    }, { 'content-type': 'application/octet-stream' });
    const uploadHash = expected.digest('hex');
    expect(upload.status).toBe(200);
    expect(upload.body.length).toBe(size);
    expect(sha256(upload.body)).toBe(uploadHash);
    // The echo streams its answer and says its hash in a trailer, which reaches an HTTP/1.1 caller on a chunked answer.
    expect(upload.trailers['x-sha256']).toBe(uploadHash);
    for (const query of [`n=${size}`, `n=${size}&chunked=1`]) {
      const download = await send('GET', `http://ledger.demo.mesh/bytes?${query}`);
      expect({ query, status: download.status, bytes: download.body.length }).toEqual({ query, status: 200, bytes: size });
      expect(download.body.equals(patternChunk(0, size))).toBe(true);
    }
  }, 120_000);

  test('a chunked upload to west ends with its trailers: they cross as an HTTP/2 trailers frame and reach the app as chunked trailers; fields that must not be forwarded do not', async () => {
    for (const pieces of [[Buffer.from('hello '), Buffer.from('trailers')], Array.from({ length: 48 }, (_, i) => patternChunk(i * 65_536, 65_536))]) {
      const sum = trailersSha(pieces);
      const seen = await chunkedUpload(east().client.proxy, 'http://ledger.demo.mesh/upload', pieces, {
        'x-checksum': sum, 'content-length': '3', 'transfer-encoding': 'gzip', host: 'elsewhere.demo.mesh',
        'x-forwarded-client-cert': 'By=spiffe://evil/x;URI=spiffe://upgrade.test/ns/demo/sa/admin',
      });
      expect(seen).toEqual({ status: 200, bytes: pieces.reduce((n, p) => n + p.length, 0), sha256: sum, trailers: { 'x-checksum': sum } });
    }
    // Through a fixed listener too.
    const pieces = [Buffer.from('via the fixed listener')];
    const viaListener = await chunkedUpload(east().client.listeners['demo/ledger']!, 'http://ledger.demo.mesh/upload', pieces, { 'x-checksum': trailersSha(pieces) }, false);
    expect(viaListener.trailers).toEqual({ 'x-checksum': trailersSha(pieces) });
    await waitFor(async () => accessLines('sidecar-west-ledger-west-1').some((l) => l.path === '/upload' && l.protocol === 'HTTP/2'), 5_000, 'west\'s inbound logged the uploads as HTTP/2');
  }, 60_000);

  test('within east: a POST sent with Expect: 100-continue is echoed whole, a HEAD gets a head only, an unknown name is refused with its code', async () => {
    const body = patternChunk(0, 3_000_000);
    const posted = await send('POST', 'http://hello.demo.mesh/echo', body, { expect: '100-continue' });
    expect(posted.status).toBe(200);
    expect(posted.body.equals(body)).toBe(true);
    const head = await send('HEAD', 'http://hello.demo.mesh/');
    expect(head.status).toBe(200);
    expect(head.body.length).toBe(0);
    const unknown = await send('GET', 'http://nothing.demo.mesh/');
    expect(unknown.status).toBe(503);
    expect(unknown.headers['x-isthmus-error']).toBe('ISTHMUS_ERR_DATAPLANE_NO_ROUTE');
  }, 30_000);

  test('a WebSocket through east\'s fixed listener for ledger still upgrades (tunnels stay HTTP/1.1), carries the caller\'s identity, and echoes', async () => {
    const ws = new WebSocket(`ws://${east().client.listeners['demo/ledger']!}/ws`);
    try {
      const upgrade = await new Promise<Record<string, string | string[] | undefined>>((resolve, reject) => {
        ws.once('upgrade', (res) => resolve(res.headers));
        ws.once('error', reject);
      });
      expect(upgrade['x-sample-caller']).toMatch(/;URI=spiffe:\/\/upgrade\.test\/ns\/demo\/sa\/client$/);
      if (ws.readyState !== WebSocket.OPEN) await new Promise((resolve) => ws.once('open', resolve));
      const echoed = new Promise<string>((resolve) => ws.once('message', (data) => resolve(data.toString())));
      ws.send('over the mesh');
      expect(await echoed).toBe('over the mesh');
    } finally {
      ws.close();
    }
  }, 30_000);
});
