import { afterAll, beforeAll, expect, test } from 'vitest';
import { etcdHttpGet, loadEtcdTls } from '../../src/federation/etcd-tls.js';
import { startEtcd, type TestEtcd } from './etcd.js';

let etcd: TestEtcd;
beforeAll(async () => { etcd = await startEtcd(); });
afterAll(async () => { await etcd?.destroy(); });

test('the test etcd answers health checks over TLS with a client certificate and comes back after a restart', async () => {
  const tls = loadEtcdTls([etcd.url], etcd.tls);
  const health = async () => (JSON.parse((await etcdHttpGet(etcd.url, '/health', tls, 2_000)).body) as { health: string }).health;
  expect(etcd.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
  expect(await health()).toBe('true');
  await etcd.stop();
  await expect(health()).rejects.toThrow();
  await etcd.start();
  expect(await health()).toBe('true');
});
