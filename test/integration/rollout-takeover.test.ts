import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { keys } from '../../src/core/keys.js';
import { FederationStore } from '../../src/federation/store.js';
import { record, type Buckets } from '../../src/model/latency-histogram.js';
import type { TrafficRecord } from '../../src/model/records.js';
import type { RolloutRecord } from '../../src/model/rollout.js';
import { isthmusOk, waitFor } from '../helpers/cli.js';
import { etcdArgs, storeOptions } from '../helpers/etcd.js';
import { TestMesh } from '../helpers/mesh.js';

// Two clusters whose federations run as processes, on 127.0.206.1 and 127.0.207.1, leases of 3 s,
// each as its own etcd user with the roles deploy/etcd/roles.sh gives (docs/security.md, "etcd"):
// whichever drives, it may write the rollout, the driver record and the split.
const rolesScript = fileURLToPath(new URL('../../deploy/etcd/roles.sh', import.meta.url));
let mesh: TestMesh;
let store: FederationStore;
let feeder: NodeJS.Timeout | undefined;

/**
 * No sidecars run here, so the requests that give the objective a verdict (a step waits without
 * one) come as a federation publishes its sidecars' reports: a `/traffic/<cluster>` record whose
 * counters grow, for a traffic source named `loadgen`: 10 quick requests to hello-v2 every 500 ms.
 */
function feedTraffic(): void {
  const buckets: Buckets = [];
  let requests = 0;
  const epoch = `loadgen-${process.pid}`;
  const publish = async () => {
    for (let i = 0; i < 10; i += 1) record(buckets, 2);
    requests += 10;
    const traffic: TrafficRecord = { version: 1, from: 'loadgen', epoch, updatedAt: new Date().toISOString(), routes: [{ namespace: 'demo', service: 'hello-v2', to: 'east', requests, errors: 0, buckets: [...buckets] }] };
    await store.put(keys.trafficOf('loadgen'), traffic).catch(() => undefined);
  };
  feeder = setInterval(() => void publish(), 500);
}

beforeAll(async () => {
  mesh = await TestMesh.create();
  const root = mesh.etcd.client('root');
  await promisify(execFile)(rolesScript, [mesh.etcd.url, root.ca, root.cert, root.key, 'east', 'west']);
  const ca = await mesh.caInit('ca', 'mesh.test');
  await mesh.join('east', { index: 206, ca, region: 'us-east', federationEtcd: mesh.etcd.client('federation-east') });
  await mesh.join('west', { index: 207, ca, region: 'us-west', federationEtcd: mesh.etcd.client('federation-west') });
  await Promise.all(['east', 'west'].map((n) => mesh.startFederation(n)));
  store = await FederationStore.connect(storeOptions(mesh.etcd));
  const slo = join(mesh.dir, 'slo.yaml');
  writeFileSync(slo, 'apiVersion: isthmus.dev/v1alpha1\nkind: ServiceLevelObjective\nmetadata: { name: v2-fast, namespace: demo }\nspec:\n  service: hello-v2\n  latency: { percentile: 99, below: 150ms }\n  window: 1m\n');
  await isthmusOk(['policy', 'apply', '-f', slo, ...etcdArgs(mesh.etcd)]);
  feedTraffic();
}, 60_000);

afterAll(async () => {
  clearInterval(feeder);
  await store?.close();
  await mesh?.close();
});

const rollout = async () => (await store.get<RolloutRecord>(keys.rollout('demo', 'hello')))?.value;

test('a rollout survives its driving federation being SIGKILLed mid-step: the other takes over, no step repeated or skipped', async () => {
  await isthmusOk(['rollout', 'start', 'hello', '-n', 'demo', '--from', 'hello-v1', '--to', 'hello-v2', '--steps', '10,40,70,100', '--interval', '4s', '--objective', 'v2-fast', ...etcdArgs(mesh.etcd)]);
  // Mid-step: the driver has begun step 2 and holds it.
  const { value: driver } = await waitFor(async () => {
    const r = await rollout();
    const held = await store.get<{ cluster: string }>(keys.rolloutDriver);
    return r?.history.length === 2 && held ? held.value.cluster : undefined;
  }, 20_000, 'the second step begun by a driver');
  const survivor = driver === 'east' ? 'west' : 'east';
  await mesh.cluster(driver).federation!.stop('SIGKILL');

  const { value: done } = await waitFor(async () => {
    const r = await rollout();
    return r && r.phase !== 'progressing' ? r : undefined;
  }, 40_000, 'the rollout to end');
  expect(done.phase).toBe('succeeded');
  expect(done.ended?.by).toBe(survivor);
  // Every step once, in order, each begun after the one before had held for the interval.
  expect(done.history.map((s) => [s.step, s.weight])).toEqual([[0, 10], [1, 40], [2, 70], [3, 100]]);
  for (let i = 1; i < done.history.length; i += 1) {
    expect(Date.parse(done.history[i]!.startedAt) - Date.parse(done.history[i - 1]!.startedAt)).toBeGreaterThanOrEqual(4000);
  }
  expect(done.history.slice(0, 2).map((s) => s.by)).toEqual(['cli', driver]);
  expect(done.history.slice(2).map((s) => s.by)).toEqual([survivor, survivor]);
  expect((await store.get<{ cluster: string }>(keys.rolloutDriver))?.value.cluster).toBe(survivor);
  expect(mesh.cluster(survivor).federation!.logs()).not.toMatch(/permission denied|PERMISSION_DENIED/i);
}, 60_000);
