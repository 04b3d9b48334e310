import { afterAll, beforeAll, expect, test } from 'vitest';
import { keys } from '../../src/core/keys.js';
import { createLogger } from '../../src/core/log.js';
import { loadClusterConfig } from '../../src/federation/config.js';
import { runFederation, type RunningFederation } from '../../src/federation/server.js';
import type { StoreEvent } from '../../src/federation/store.js';
import { isthmusOk, waitFor } from '../helpers/cli.js';
import { etcdArgs } from '../helpers/etcd.js';
import { TestMesh } from '../helpers/mesh.js';

/**
 * A burst of store changes (a thousand exports arrive in a few watch responses, and the
 * federation's own writes come back through the watch) is handled in batches: the changes that
 * queued while the federation was busy go into its copy of etcd together, and the catalog is
 * rebuilt once for them. Rebuilt once per watch response, a federation with 1000 services kept
 * its event loop busy for seconds and missed its lease keep-alives (seen in the memory bench).
 * The federation runs in this process so the test can hand it changes faster than it handles them.
 */
let mesh: TestMesh;
let running: RunningFederation;

beforeAll(async () => {
  mesh = await TestMesh.create();
  const ca = await mesh.caInit('ca', 'burst.test');
  const east = await mesh.join('east', { index: 47, ca });
  const address = await mesh.workload('east');
  await isthmusOk(['register', 'hello', '-n', 'demo', '-c', east.config, '--address', address]);
  await isthmusOk(['export', 'hello', '-n', 'demo', '--cluster', 'east', ...etcdArgs(mesh.etcd)]);
  running = await runFederation(loadClusterConfig(east.config), createLogger({ name: 'federation-burst', level: 'silent' }));
}, 60_000);

afterAll(async () => {
  await running?.stop();
  await mesh?.close();
});

test('fifty store changes queued at once rebuild the catalog at most twice, and every change is in it', async () => {
  const { federation } = running;
  const exportKey = keys.export('east', 'demo', 'hello');
  const { value: template } = await waitFor(async () => federation.mirror.get(exportKey), 15_000, 'east\'s export of hello in its own mirror');
  let rebuilt = 0;
  federation.on('catalog', () => { rebuilt += 1; });
  const base = federation.mirror.revision;
  for (let i = 1; i <= 50; i += 1) {
    const key = keys.export('east', 'demo', `svc-${i}`);
    const events: StoreEvent[] = [{ type: 'put', record: { key, value: template, modRevision: base + i, createRevision: base + i, lease: '0' } }];
    federation.enqueue({ type: 'store-changes', events, revision: base + i });
  }
  const names = (): string[] => federation.catalog.services.map((s) => s.name);
  await waitFor(async () => names().length === 51, 15_000, 'all 51 services in the catalog');
  expect(names()).toEqual(expect.arrayContaining(['hello', 'svc-1', 'svc-25', 'svc-50']));
  // The first change is handled alone (nothing else was queued yet), the other 49 together;
  // handled one by one, the catalog would have been rebuilt 50 times.
  expect(rebuilt).toBeGreaterThanOrEqual(1);
  expect(rebuilt).toBeLessThanOrEqual(2);
});
