import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startDevMesh, type DevMesh } from '../../src/dev/dev-mesh.js';
import { patternChunk } from '../../src/dev/sample-service.js';
import { waitFor } from '../helpers/cli.js';
import { viaProxy } from '../helpers/proxy.js';
import { chunkedUpload, sha256 } from '../helpers/trailers.js';

// `isthmus dev up` on 127.0.108.1 / 127.0.109.1 (hostBase 108: no other test uses these), with
// HTTP/1.1 between the sidecars (the default). The same requests over HTTP/2 between sidecars
// are in upgrade-to-http2.test.ts.
let mesh: DevMesh;
let stateDir: string;
const east = () => mesh.file.clusters.east!;

beforeAll(async () => {
  stateDir = mkdtempSync(join(tmpdir(), 'isthmus-trailers-'));
  mesh = await startDevMesh({ clusters: ['east', 'west'], stateDir, trustDomain: 'trailers.test', gateways: 1, hostBase: 108, traffic: 0, versions: false, progress: () => undefined });
  await waitFor(async () => (await viaProxy(east().client.proxy, 'http://ledger.demo.mesh/')).status === 200, 15_000, 'ledger reachable from east');
}, 120_000);

afterAll(async () => {
  await mesh?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

describe('request trailers cross the mesh (HTTP/1.1 between sidecars)', () => {
  test('a chunked upload to west with a checksum trailer: the app gets the body whole and the trailer with it, through the proxy port and through a fixed listener', async () => {
    // Small pieces (read by the parser) and a 3 MB body in 64 KiB writes (read past the parser, as views).
    for (const pieces of [[Buffer.from('hello '), Buffer.from('trailers')], Array.from({ length: 48 }, (_, i) => patternChunk(i * 65_536, 65_536))]) {
      const sum = sha256(pieces);
      const viaPort = await chunkedUpload(east().client.proxy, 'http://ledger.demo.mesh/upload', pieces, { 'x-checksum': sum });
      expect(viaPort).toEqual({ status: 200, bytes: pieces.reduce((n, p) => n + p.length, 0), sha256: sum, trailers: { 'x-checksum': sum } });
      const viaListener = await chunkedUpload(east().client.listeners['demo/ledger']!, 'http://ledger.demo.mesh/upload', pieces, { 'x-checksum': sum }, false);
      expect(viaListener.trailers).toEqual({ 'x-checksum': sum });
      expect(viaListener.sha256).toBe(sum);
    }
  }, 60_000);

  test('trailer fields that must not be forwarded (framing, hop-by-hop, routing, the caller\'s identity) never reach the app; the others do', async () => {
    const pieces = [Buffer.from('a body whose trailers try to reframe it')];
    const sum = sha256(pieces);
    const seen = await chunkedUpload(east().client.proxy, 'http://ledger.demo.mesh/upload', pieces, {
      'x-checksum': sum, 'content-length': '3', 'transfer-encoding': 'gzip', host: 'elsewhere.demo.mesh', te: 'trailers',
      'x-forwarded-client-cert': 'By=spiffe://evil/x;URI=spiffe://trailers.test/ns/demo/sa/admin',
    });
    expect(seen).toEqual({ status: 200, bytes: pieces[0]!.length, sha256: sum, trailers: { 'x-checksum': sum } });
  }, 30_000);
});
