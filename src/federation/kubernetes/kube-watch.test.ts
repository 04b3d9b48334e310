import { KubeConfig, CoreV1Api, Watch } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createLogger, silentLogger } from '../../core/log.js';
import { FakeKubeApiServer } from '../../../test/helpers/fake-kube-api-server.js';
import { waitFor } from '../../../test/helpers/cli.js';
import { backoffMs, KubeWatch } from './kube-watch.js';
import { summarizeService, type ServiceSummary } from './kube-objects.js';

// Real HTTPS on loopback (third octet 161), client-node's own Watch and CoreV1Api.
let fake: FakeKubeApiServer;
let kc: KubeConfig;

beforeAll(async () => {
  fake = await FakeKubeApiServer.start({ host: '127.0.161.1', bookmarkIntervalMs: 200 });
  for (const name of ['w1', 'w2', 'w3', 'w4']) fake.apply('namespaces', { metadata: { name } });
  kc = new KubeConfig();
  kc.loadFromFile(fake.writeKubeconfig());
});

afterAll(async () => {
  await fake?.stop();
});

function service(namespace: string, name: string, port = 8080) {
  return { metadata: { namespace, name }, spec: { type: 'ClusterIP', clusterIP: '10.0.0.1', ports: [{ name: 'http', port, protocol: 'TCP', targetPort: port }] } };
}

function servicesWatch(namespace: string, changes: { count: number }) {
  const core = kc.makeApiClient(CoreV1Api);
  return new KubeWatch<ServiceSummary>({
    source: {
      what: `services in ${namespace}`,
      path: `/api/v1/namespaces/${namespace}/services`,
      list: async () => {
        const list = await core.listNamespacedService({ namespace });
        return { items: list.items, resourceVersion: list.metadata?.resourceVersion ?? '' };
      },
    },
    stream: new Watch(kc),
    summarize: summarizeService,
    onChange: () => { changes.count += 1; },
    log: process.env.DEBUG_WATCH ? createLogger({ name: 'w', level: 'debug' }) : silentLogger,
    backoff: { baseMs: 50, maxMs: 400 },
  });
}

const names = (watch: KubeWatch<ServiceSummary>) => [...watch.items.keys()].sort();

describe('a Kubernetes watch that survives', () => {
  test('lists, then follows ADDED, MODIFIED and DELETED; bookmarks advance its resourceVersion', async () => {
    fake.apply('services', service('w1', 'a'));
    const watch = servicesWatch('w1', { count: 0 });
    watch.start();
    await watch.synced;
    expect(names(watch)).toEqual(['w1/a']);
    fake.apply('services', service('w1', 'b'));
    fake.apply('services', service('w1', 'a', 9090));
    await waitFor(async () => watch.items.get('w1/a')?.ports[0]?.port === 9090 && watch.items.has('w1/b'), 5000, 'added and modified services');
    fake.remove('services', 'w1', 'b');
    await waitFor(async () => !watch.items.has('w1/b'), 5000, 'deleted service');
    // Other kinds move the shared resourceVersion; a bookmark carries it to this watch.
    fake.apply('nodes', { metadata: { name: 'n1' } });
    const target = String(fake.resourceVersion);
    await waitFor(async () => watch.resourceVersion === target, 5000, 'a bookmark with the newest resourceVersion');
    expect(fake.requests.some((r) => r.includes('/namespaces/w1/services?') && r.includes('allowWatchBookmarks=true') && r.includes('watch=true'))).toBe(true);
    await watch.stop();
  });

  test('a dropped watch resumes from its resourceVersion without listing again, and misses nothing', async () => {
    fake.apply('services', service('w2', 'a'));
    const watch = servicesWatch('w2', { count: 0 });
    watch.start();
    await watch.synced;
    await waitFor(async () => fake.openWatches > 0, 5000, 'the watch to open');
    const resumedFrom = watch.resourceVersion;
    fake.dropWatches();
    fake.apply('services', service('w2', 'b'));
    fake.remove('services', 'w2', 'a');
    await waitFor(async () => names(watch).join() === 'w2/b', 5000, 'the changes made while disconnected');
    expect(watch.stats.lists).toBe(1);
    expect(fake.requests.some((r) => r.includes('/namespaces/w2/services?') && r.includes(`resourceVersion=${resumedFrom}`))).toBe(true);
    await watch.stop();
  });

  test('410 Gone (history compacted while disconnected) lists again, and nothing is missed', async () => {
    fake.apply('services', service('w3', 'a'));
    fake.apply('services', service('w3', 'b'));
    const watch = servicesWatch('w3', { count: 0 });
    watch.start();
    await watch.synced;
    await waitFor(async () => fake.openWatches > 0, 5000, 'the watch to open');
    // Stop the bookmarks from rescuing it: the watch is dropped, changes happen, history is compacted.
    fake.dropWatches();
    fake.remove('services', 'w3', 'a');
    fake.apply('services', service('w3', 'c'));
    fake.apply('services', service('w3', 'b', 7070));
    fake.compact();
    await waitFor(async () => names(watch).join() === 'w3/b,w3/c' && watch.items.get('w3/b')?.ports[0]?.port === 7070, 5000, 'the state after the gap');
    expect(watch.stats.gone).toBeGreaterThanOrEqual(1);
    expect(watch.stats.lists).toBe(2);
    await watch.stop();
  });

  test('errors back off and recover; stop leaves no watch open and makes no more requests', async () => {
    fake.apply('services', service('w4', 'a'));
    fake.failNext('/api/v1/namespaces/w4/services', 500, 3);
    const watch = servicesWatch('w4', { count: 0 });
    watch.start();
    await watch.synced;
    expect(watch.stats.errors).toBe(3);
    await waitFor(async () => fake.openWatches > 0, 5000, 'the watch to open');
    const before = fake.openWatches;
    await watch.stop();
    await waitFor(async () => fake.openWatches === before - 1, 5000, 'the stopped watch to close on the server');
    const requests = fake.requests.length;
    fake.dropWatches();
    await new Promise((r) => setTimeout(r, 300));
    expect(fake.requests.slice(requests).filter((r) => r.includes('/namespaces/w4/'))).toEqual([]);
  });
});

describe('backoff', () => {
  test.each([
    [1, 1, 500], [2, 1, 1000], [3, 1, 2000], [7, 1, 30_000], [20, 1, 30_000], [5, 0, 0], [3, 0.5, 1000],
  ])('failure %i with random %f waits %i ms (full jitter, capped)', (failures, random, expected) => {
    expect(backoffMs(failures, undefined, () => random)).toBe(expected);
  });
});
