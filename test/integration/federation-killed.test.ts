import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { keys } from '../../src/core/keys.js';
import { startDevMesh, type DevMesh } from '../../src/dev/dev-mesh.js';
import type { Catalog } from '../../src/model/catalog.js';
import { apiClient, waitFor } from '../helpers/cli.js';
import { rawEtcd, startEtcd, type TestEtcd } from '../helpers/etcd.js';
import { killProcess, printFigure, trafficFigure } from '../helpers/faults.js';
import { testOperator } from '../helpers/mesh.js';
import { steadyTraffic, viaProxy } from '../helpers/proxy.js';

// Two clusters on 127.0.94.1 (east) and 127.0.95.1 (west), each federation an `isthmus
// federation` process of its own. West's own hello instances are stopped, so west's client
// reaches hello in east only; ledger runs only in west, so east's client crosses the other way.
// Then east's federation is SIGKILLed and restarted after 3 s, well within its 15 s lease.
let etcd: TestEtcd;
let mesh: DevMesh;
let stateDir: string;
const client = (cluster: string) => mesh.file.clusters[cluster]!.client.proxy;
const downMs = 3000;

beforeAll(async () => {
  stateDir = mkdtempSync(join(tmpdir(), 'isthmus-federation-killed-'));
  etcd = await startEtcd({ host: '127.0.96.1' });
  mesh = await startDevMesh({ clusters: ['east', 'west'], stateDir, trustDomain: 'dev.test', hostBase: 94, etcd: etcd.url, etcdTls: etcd.tls, gateways: 1, federationProcesses: true, progress: () => undefined });
  for (const w of mesh.workloads.filter((x) => x.spec.cluster === 'west' && x.spec.service === 'hello')) await w.stop();
}, 180_000);

afterAll(async () => {
  await mesh?.stop();
  await etcd?.destroy();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

/** What a catalog snapshot says of east's hello: absent, or present with its healthy endpoints and gateways. */
function eastHello(catalog: Catalog): string {
  const entry = catalog.services.find((s) => s.namespace === 'demo' && s.name === 'hello')?.clusters.find((c) => c.cluster === 'east');
  if (!entry) return 'absent';
  const healthy = entry.zones.reduce((n, z) => n + z.healthy, 0);
  return healthy > 0 && entry.gateways.length > 0 ? 'routable' : `healthy=${healthy} gateways=${entry.gateways.length}`;
}

/**
 * Every catalog version west's federation serves while it runs (its long poll answers each new
 * version), as what it says of east's hello.
 */
function watchWestCatalog() {
  const operator = testOperator(mesh.file.operator);
  const api = apiClient(join(mesh.file.ca, 'root-cert.pem'), operator.tls);
  const url = `https://${mesh.file.clusters.west!.federation}/v1/catalog`;
  const seen: { revision: number; east: string }[] = [];
  let running = true;
  const done = (async () => {
    let version: number | undefined;
    while (running) {
      const res = await api.get(version === undefined ? url : `${url}?version=${version}&wait=2`);
      const catalog = res.body as Catalog;
      if (catalog.revision !== version) seen.push({ revision: catalog.revision, east: eastHello(catalog) });
      version = catalog.revision;
    }
  })();
  return { seen, stop: async () => { running = false; await done; await api.close(); return seen; } };
}

/** Deletes of east's export records etcd reports (a watch on a member, from now on). */
async function watchEastExportDeletes() {
  const client = rawEtcd(etcd);
  const deleted: string[] = [];
  const watcher = await client.watch().prefix(keys.exportsOf('east')).create();
  watcher.on('delete', (kv) => deleted.push(kv.key.toString()));
  return { deleted, stop: async () => { await watcher.cancel(); client.close(); return deleted; } };
}

async function eastAlive(): Promise<{ instance: string; lease: string } | undefined> {
  const client = rawEtcd(etcd);
  try {
    const { kvs } = await client.get(keys.alive('east')).exec();
    const kv = kvs[0];
    return kv ? { instance: (JSON.parse(kv.value.toString()) as { instance: string }).instance, lease: kv.lease } : undefined;
  } finally {
    client.close();
  }
}

describe('a federation service SIGKILLed under traffic', () => {
  test('east\'s traffic flows on; on restart it re-registers; west never sees east\'s hello vanish', async () => {
    const federation = mesh.federationProcesses.find((f) => f.cluster === 'east')!.process;
    await waitFor(async () => (await viaProxy(client('west'), 'http://hello.demo.mesh/')).body?.cluster === 'east', 30_000, 'west\'s client answered by hello in east');
    const before = await eastAlive();
    expect(before).toBeDefined();

    const catalog = watchWestCatalog();
    const deletes = await watchEastExportDeletes();
    const traffic = {
      eastToLedger: steadyTraffic(client('east'), 'http://ledger.demo.mesh/'),
      eastToHello: steadyTraffic(client('east'), 'http://hello.demo.mesh/'),
      westToHello: steadyTraffic(client('west'), 'http://hello.demo.mesh/'),
    };
    await new Promise((r) => setTimeout(r, 2000));
    const killedAt = Date.now();
    await killProcess(federation.pid!);
    await new Promise((r) => setTimeout(r, downMs));
    await federation.start();
    const restartedAt = Date.now();
    // Re-registered: a new instance's heartbeat under a new lease.
    const after = await waitFor(async () => { const a = await eastAlive(); return a && a.instance !== before!.instance ? a : undefined; }, 20_000, 'east\'s restarted federation registered');
    await new Promise((r) => setTimeout(r, 10_000));
    const results = Object.fromEntries(await Promise.all(Object.entries(traffic).map(async ([name, t]) => [name, await t.stop()] as const)));
    const seen = await catalog.stop();
    const deleted = await deletes.stop();

    for (const [name, r] of Object.entries(results)) {
      printFigure(trafficFigure(`federation east SIGKILLed, ${name}`, r, killedAt, { downUntilReady: `${restartedAt - killedAt}ms` }));
    }
    printFigure({ scenario: 'federation east SIGKILLed, west\'s catalog', sent: 0, failed: 0, extra: { versionsSeen: seen.length, eastHelloNotRoutable: seen.filter((s) => s.east !== 'routable').length, exportDeletes: deleted.length } });

    expect(after.value.lease).not.toBe(before!.lease);
    for (const r of Object.values(results)) {
      expect(r.filter((x) => x.at >= killedAt).length).toBeGreaterThan(10);
      expect(r.filter((x) => !x.ok).slice(0, 5)).toEqual([]);
    }
    expect(results.westToHello!.every((x) => x.cluster === 'east')).toBe(true);
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.filter((s) => s.east !== 'routable')).toEqual([]);
    expect(deleted).toEqual([]);
  }, 180_000);
});
