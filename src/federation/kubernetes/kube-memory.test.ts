import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { FakeKubeApiServer, type KubeObject } from '../../../test/helpers/fake-kube-api-server.js';
import { waitFor } from '../../../test/helpers/cli.js';
import { testKubePlatform } from '../../../test/helpers/kube-platform.js';
import type { KubernetesPlatform } from './kube-platform.js';

// 10,000 Services listed, 10,000 more arriving by watch, then all 20,000 modified by watch, from
// FakeKubeApiServer on 127.0.168.2. The fake runs in this process too, so the adapter's share is
// measured as what the heap gives back when the adapter is stopped and dropped.
let fake: FakeKubeApiServer;

beforeAll(async () => {
  fake = await FakeKubeApiServer.start({ host: '127.0.168.2', maxHistory: 1000 });
  fake.apply('namespaces', { metadata: { name: 'bulk' } });
});

afterAll(async () => {
  await fake?.stop();
});

const service = (i: number, generation: number): KubeObject => {
  const spec = { type: 'ClusterIP', clusterIP: `10.96.${(i >> 8) & 255}.${i & 255}`, selector: { app: `svc-${i}` }, ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }] };
  return {
    metadata: {
      namespace: 'bulk', name: `svc-${i}`, labels: { app: `svc-${i}`, team: 'load', generation: String(generation) },
      annotations: { 'kubectl.kubernetes.io/last-applied-configuration': JSON.stringify({ metadata: { namespace: 'bulk', name: `svc-${i}` }, spec }) },
    },
    spec,
  };
};

test('10,000 Services listed and 10,000 more watched, then all changed: what the adapter keeps stays bounded by its summaries', async () => {
  for (let i = 0; i < 10_000; i += 1) fake.apply('services', service(i, 1));
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  let p: KubernetesPlatform | undefined = testKubePlatform(fake, '  namespaces: [bulk]\n');
  await p.start(() => undefined);
  expect(p.services()).toHaveLength(10_000);
  for (let i = 10_000; i < 20_000; i += 1) fake.apply('services', service(i, 1));
  await waitFor(async () => p?.services().length === 20_000, 60_000, '10,000 Services added by the watch');
  for (let i = 0; i < 20_000; i += 1) fake.apply('services', { ...service(i, 2), spec: { ...service(i, 2).spec as object, ports: [{ name: 'http', port: 81, protocol: 'TCP' }] } });
  await waitFor(async () => p?.services().every((s) => s.ports[0]?.port === 81) === true, 60_000, '20,000 Services modified by the watch');
  gc();
  const held = process.memoryUsage().heapUsed;
  await p.stop();
  p = undefined;
  await new Promise((resolve) => setTimeout(resolve, 100));
  gc();
  const kept = held - process.memoryUsage().heapUsed;
  console.log(`heap the adapter held with 20,000 Services (10,000 listed, 10,000 watched, all modified): ${(kept / 1024 / 1024).toFixed(1)} MiB (${Math.round(kept / 20_000)} bytes per Service)`);
  // What the API's objects alone take, parsed from JSON as a watch delivers them.
  gc();
  const bare = process.memoryUsage().heapUsed;
  const objects = Array.from({ length: 20_000 }, (_, i) => JSON.parse(JSON.stringify({ kind: 'Service', apiVersion: 'v1', ...service(i, 2) })) as unknown);
  gc();
  const raw = process.memoryUsage().heapUsed - bare;
  console.log(`the same 20,000 Services as parsed objects: ${(raw / 1024 / 1024).toFixed(1)} MiB (${Math.round(raw / 20_000)} bytes each)`);
  expect(objects).toHaveLength(20_000);
  // Measured on Node 20: ~860 bytes per Service held (the watch's summary, the federation's
  // LocalService view, map keys, the client's fixed costs), the parsed objects ~690 bytes each.
  // The bound, 1,280 bytes per Service, leaves half again as much room, and an adapter that
  // also kept each object the API sent (860 + 690) would exceed it: the second check says so.
  expect(kept).toBeGreaterThan(0);
  expect(kept + raw).toBeGreaterThan(20_000 * 1280);
  expect(kept).toBeLessThan(20_000 * 1280);
}, 180_000);
