import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startEtcd, type TestEtcd } from '../../test/helpers/etcd.js';
import { isIsthmusError } from '../core/errors.js';
import type { FederationStore } from '../federation/store.js';
import { withStore, type EtcdFlags } from './common.js';

let etcd: TestEtcd;
let flags: EtcdFlags;

beforeAll(async () => {
  etcd = await startEtcd();
  flags = { etcd: etcd.url, etcdCa: etcd.tls.ca, etcdCert: etcd.tls.cert, etcdKey: etcd.tls.key };
});
afterAll(async () => {
  await etcd?.destroy();
});

describe('withStore: a command\'s work with etcd', () => {
  test('returns what the work returns, and closes the store after it', async () => {
    let used: FederationStore | undefined;
    const value = await withStore(flags, async (store) => {
      used = store;
      await store.put('/isthmus/v1/test-with-store/a', { version: 1 });
      return (await store.get<{ version: number }>('/isthmus/v1/test-with-store/a'))?.value.version;
    });
    expect(value).toBe(1);
    await expect(used!.get('/isthmus/v1/test-with-store/a')).rejects.toThrow();
  });

  test('work that never ends fails after the deadline with a named error, and the store is closed', async () => {
    let used: FederationStore | undefined;
    const started = Date.now();
    const err = await withStore(flags, (store) => {
      used = store;
      return new Promise<never>(() => undefined);
    }, 300).catch((e: unknown) => e);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(isIsthmusError(err) && err.code).toBe('ISTHMUS_ERR_ETCD_UNREACHABLE');
    expect((err as Error).message).toContain(`the work with etcd at ${etcd.url} did not finish within 0.3 s`);
    expect((err as Error).message).toContain('run the command again');
    await expect(used!.get('/isthmus/v1/test-with-store/a')).rejects.toThrow();
  });

  test('an error of the work is passed on as it is', async () => {
    await expect(withStore(flags, () => Promise.reject(new Error('the work\'s own failure')), 5000)).rejects.toThrow('the work\'s own failure');
  });
});
