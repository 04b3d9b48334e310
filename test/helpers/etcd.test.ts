import { afterAll, beforeAll, expect, test } from 'vitest';
import { startEtcd, type TestEtcd } from './etcd.js';

let etcd: TestEtcd;
beforeAll(async () => { etcd = await startEtcd(); });
afterAll(async () => { await etcd?.destroy(); });

test('the test etcd answers health checks and comes back after a restart', async () => {
  expect(((await (await fetch(`${etcd.url}/health`)).json()) as { health: string }).health).toBe('true');
  await etcd.stop();
  await expect(fetch(`${etcd.url}/health`)).rejects.toThrow();
  await etcd.start();
  expect(((await (await fetch(`${etcd.url}/health`)).json()) as { health: string }).health).toBe('true');
});
