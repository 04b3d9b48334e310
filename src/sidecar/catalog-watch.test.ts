import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { isthmusOk, sleep, waitFor } from '../../test/helpers/cli.js';
import { TestMesh, type TestCluster } from '../../test/helpers/mesh.js';
import { silentLogger } from '../core/log.js';
import { issueCertificate } from '../trust/ca.js';
import { readClusterCa } from '../trust/ca-files.js';
import type { Catalog } from '../model/catalog.js';
import { CatalogWatch, type LocalEndpoints, type SnapshotStatus } from './catalog-watch.js';
import { WorkloadIdentity } from './identity.js';

let mesh: TestMesh;
let cluster: TestCluster;
let identity: WorkloadIdentity;
let stateDir: string;
const watches: CatalogWatch[] = [];

beforeAll(async () => {
  mesh = await TestMesh.create();
  const ca = await mesh.caInit('ca', 'mesh.test');
  cluster = await mesh.join('east', { index: 6, ca, leaseTtl: '3s' });
  const registered = await isthmusOk(['register', 'client', '-n', 'demo', '-c', cluster.config, '--address', '127.0.6.1:1', '-o', 'json']);
  await mesh.startFederation('east');
  stateDir = join(mesh.dir, 'sidecar-state');
  identity = await WorkloadIdentity.start({
    federationUrl: `https://${cluster.apiAddress}`, rootCertPem: readFileSync(cluster.rootCert, 'utf8'), stateDir, logger: silentLogger,
    bootstrapToken: (JSON.parse(registered.stdout) as { token: string }).token,
  });
});

afterAll(async () => {
  for (const watch of watches) await watch.stop();
  await identity?.stop();
  await mesh?.close();
});

function watch(logger = silentLogger, federationUrl = `https://${cluster.apiAddress}`): CatalogWatch {
  const w = new CatalogWatch({ federationUrl, identity, stateDir, logger, waitSeconds: 2 });
  watches.push(w);
  return w;
}

/** A logger whose lines the test can read. */
function capturingLogger(): { logger: typeof silentLogger; lines: { level: number; msg: string }[] } {
  const lines: { level: number; msg: string }[] = [];
  const stream = new Writable({ write(chunk: Buffer, _enc, done) { lines.push(JSON.parse(chunk.toString()) as { level: number; msg: string }); done(); } });
  return { logger: pino({ level: 'debug' }, stream), lines };
}

describe('the sidecar follows the catalog and keeps the last good one', () => {
  test('receives the catalog and local endpoints from the federation and saves them', async () => {
    const w = watch();
    const catalogs: [Catalog, SnapshotStatus][] = [];
    const endpoints: [LocalEndpoints, SnapshotStatus][] = [];
    w.on('catalog', (c: Catalog, s: SnapshotStatus) => catalogs.push([c, s]));
    w.on('endpoints', (e: LocalEndpoints, s: SnapshotStatus) => endpoints.push([e, s]));
    w.start();
    await waitFor(async () => catalogs.find(([c]) => c.clusters.some((cl) => cl.name === 'east')), 15_000, 'a catalog naming east');
    const [catalog, status] = catalogs[catalogs.length - 1] as [Catalog, SnapshotStatus];
    expect(status).toMatchObject({ version: catalog.revision, source: 'federation' });
    expect(w.status().catalog?.source).toBe('federation');
    await waitFor(async () => JSON.parse(readFileSync(join(stateDir, 'catalog.json'), 'utf8')).revision === w.catalog()?.revision, 5000, 'catalog.json');

    // This federation serves /v1/endpoints: the sidecar's own cluster's instances arrive and are saved.
    await waitFor(async () => endpoints.find(([e]) => e.services.some((s) => s.namespace === 'demo' && s.name === 'client')), 15_000, 'endpoints of demo/client');
    expect(endpoints[0]?.[1].source).toBe('federation');
    const clientEndpoints = w.endpoints()?.services.find((s) => s.namespace === 'demo' && s.name === 'client')?.endpoints;
    expect(clientEndpoints?.map((e) => e.address)).toEqual(['127.0.6.1:1']);
    await waitFor(async () => existsSync(join(stateDir, 'endpoints.json')), 5000, 'endpoints.json');
    expect(JSON.parse(readFileSync(join(stateDir, 'endpoints.json'), 'utf8'))).toEqual(w.endpoints());
    await w.stop();
  });

  test('a snapshot is saved a second after it came, and at once when the watch stops', async () => {
    const dir = join(mesh.dir, 'saved-on-stop');
    const w = new CatalogWatch({ federationUrl: `https://${cluster.apiAddress}`, identity, stateDir: dir, logger: silentLogger, waitSeconds: 2 });
    const first = new Promise((resolve) => w.once('catalog', resolve));
    w.start();
    await first;
    // Not yet: a burst of changes is saved once, after it.
    expect(existsSync(join(dir, 'catalog.json'))).toBe(false);
    await w.stop();
    expect(JSON.parse(readFileSync(join(dir, 'catalog.json'), 'utf8'))).toEqual(w.catalog());
  });

  test('with the federation down, a new watch emits the saved catalog from disk and keeps it, warning once', async () => {
    const saved = JSON.parse(readFileSync(join(stateDir, 'catalog.json'), 'utf8')) as Catalog;
    await cluster.federation?.stop();
    const { logger, lines } = capturingLogger();
    const w = watch(logger);
    const emitted: [Catalog, SnapshotStatus][] = [];
    w.on('catalog', (c: Catalog, s: SnapshotStatus) => emitted.push([c, s]));
    w.start();
    // Emitted during start(), before any network answer.
    expect(emitted).toHaveLength(1);
    expect(emitted[0]?.[0]).toEqual(saved);
    expect(emitted[0]?.[1]).toMatchObject({ version: saved.revision, source: 'disk' });
    await sleep(3500); // retries at 1 s, 2 s
    expect(w.catalog()).toEqual(saved);
    expect(w.status().catalog?.source).toBe('disk');
    const outageWarnings = lines.filter((l) => l.level === 40 && l.msg.startsWith('catalog unavailable'));
    expect(outageWarnings).toHaveLength(1);
    await w.stop();
  });

  test('a malformed catalog from the API is rejected with its reason and the last good one kept', async () => {
    const saved = JSON.parse(readFileSync(join(stateDir, 'catalog.json'), 'utf8')) as Catalog;
    // Stands in for a broken federation: a server the identity trusts that answers nonsense.
    const { ca } = readClusterCa(cluster.dir);
    const serving = issueCertificate({ identity: 'spiffe://mesh.test/cluster/east/federation', issuer: ca, ipAddresses: [cluster.host] });
    const server = createServer({ cert: [serving.certPem, ca.certPem].join('\n'), key: serving.keyPem }, (req, res) => {
      res.setHeader('content-type', 'application/json');
      if (req.url?.startsWith('/v1/endpoints')) res.statusCode = 404;
      res.end(JSON.stringify({ revision: 'latest', clusters: [], services: [] }));
    });
    await new Promise<void>((resolve) => server.listen(0, cluster.host, resolve));
    try {
      const { logger, lines } = capturingLogger();
      const w = watch(logger, `https://${cluster.host}:${(server.address() as { port: number }).port}`);
      w.start();
      const { value: rejected } = await waitFor(async () => lines.find((l) => l.msg.startsWith('rejected a catalog')), 5000, 'a rejection');
      expect(rejected).toMatchObject({ level: 40, reason: '/invalidKeys: expected required property; /revision: expected integer' });
      expect(w.catalog()).toEqual(saved);
      expect(JSON.parse(readFileSync(join(stateDir, 'catalog.json'), 'utf8'))).toEqual(saved);
      await w.stop();
    } finally {
      server.close();
    }
  });
});
