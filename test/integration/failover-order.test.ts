import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startDevMesh, type DevMesh } from '../../src/dev/dev-mesh.js';
import { isthmusOk, waitFor } from '../helpers/cli.js';
import { viaProxy } from '../helpers/proxy.js';
import { etcdEnv } from '../helpers/etcd.js';

// Three clusters on 127.0.231.1 (east), 127.0.232.1 (west), 127.0.233.1 (north), each its own
// region, so by default west and north are both P3 for east. East's own hello instances are
// stopped first: east's client then reaches hello only in other clusters, and a FailoverPolicy's
// `order` decides which.
let mesh: DevMesh;
let stateDir: string;
const env = () => (etcdEnv(mesh.file));
const proxy = () => mesh.file.clusters.east!.client.proxy;

async function applyOrder(name: string, order: string[]): Promise<void> {
  const file = join(stateDir, `${name}.yaml`);
  writeFileSync(file, `apiVersion: isthmus.dev/v1alpha1
kind: FailoverPolicy
metadata: { name: hello-order, namespace: demo }
spec: { service: hello, order: [${order.join(', ')}] }
`);
  await isthmusOk(['policy', 'apply', '-f', file], env());
}

/** The clusters that answered `count` requests to hello from east's client, with their statuses. */
async function answeredBy(count: number): Promise<Map<string, number>> {
  const seen = new Map<string, number>();
  for (let i = 0; i < count; i += 1) {
    const res = await viaProxy(proxy(), 'http://hello.demo.mesh/', 5000);
    const key = `${res.status} ${res.body?.cluster ?? '?'}`;
    seen.set(key, (seen.get(key) ?? 0) + 1);
  }
  return seen;
}

/** Until every one of `count` requests in a row is answered by `cluster`. */
async function onlyFrom(cluster: string, what: string): Promise<void> {
  await waitFor(async () => {
    const seen = await answeredBy(10);
    return seen.size === 1 && seen.get(`200 ${cluster}`) === 10 ? true : undefined;
  }, 20_000, what);
}

beforeAll(async () => {
  stateDir = mkdtempSync(join(tmpdir(), 'isthmus-order-'));
  mesh = await startDevMesh({ clusters: ['east', 'west', 'north'], stateDir, trustDomain: 'dev.test', hostBase: 231, gateways: 1, progress: () => undefined });
  for (const w of mesh.workloads.filter((x) => x.spec.cluster === 'east' && x.spec.service === 'hello')) await w.stop();
}, 180_000);

afterAll(async () => {
  await mesh?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

describe('a FailoverPolicy order decides which cluster takes over, and spills down the list', () => {
  test('without an order west and north share east\'s traffic; [north, west] sends it all to north, [west, north] all to west', async () => {
    await waitFor(async () => {
      const seen = await answeredBy(40);
      return (seen.get('200 west') ?? 0) > 0 && (seen.get('200 north') ?? 0) > 0 && (seen.get('200 west') ?? 0) + (seen.get('200 north') ?? 0) === 40 ? true : undefined;
    }, 30_000, 'east answered by both west and north');

    await applyOrder('north-first', ['north', 'west']);
    await onlyFrom('north', 'north first');
    expect(await answeredBy(40)).toEqual(new Map([['200 north', 40]]));

    await applyOrder('west-first', ['west', 'north']);
    await onlyFrom('west', 'west first');
    expect(await answeredBy(40)).toEqual(new Map([['200 west', 40]]));

    // isthmus explain's data: one priority level per listed cluster, after east's own two.
    const route = await (await fetch(`http://${mesh.file.clusters.east!.client.admin}/routes/demo/hello`)).json() as { localities: { priority: number; cluster: string }[] };
    expect([...new Set(route.localities.map((l) => `P${l.priority} ${l.cluster}`))]).toEqual(['P0 east', 'P1 east', 'P2 west', 'P3 north']);
  }, 90_000);

  test('when the first listed cluster cannot be reached, traffic spills to the next one in the order', async () => {
    for (const g of mesh.gateways.filter((x) => x.cluster === 'west')) await g.stop();
    await onlyFrom('north', 'spill from west to north');
    expect(await answeredBy(40)).toEqual(new Map([['200 north', 40]]));
  }, 60_000);
});
