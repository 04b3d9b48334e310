import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { rawEtcd, startEtcd, storeOptions, type TestEtcd } from '../../test/helpers/etcd.js';
import { FederationStore } from './store.js';

let etcd: TestEtcd;
let store: FederationStore;
let observer: FederationStore; // another client, to see what the rest of the mesh sees
let raw: Etcd3;

beforeAll(async () => {
  etcd = await startEtcd();
  store = await FederationStore.connect(storeOptions(etcd));
  observer = await FederationStore.connect(storeOptions(etcd));
  raw = rawEtcd(etcd);
});
afterAll(async () => {
  raw?.close();
  await store?.close();
  await observer?.close();
  await etcd?.destroy();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('leaseSession', () => {
  test('records carry the lease and vanish as soon as the session is revoked', async () => {
    const p = '/isthmus/v1/test-lease/revoke/';
    const session = await store.leaseSession({ ttlSeconds: 3 });
    await session.put(`${p}a`, { version: 1 });
    await session.put(`${p}b`, { version: 1 });
    expect((await observer.get(`${p}a`))?.lease).toBe(session.id);
    await session.revoke();
    expect((await observer.list(`${p}`)).records).toEqual([]);
    await expect(session.put(`${p}c`, { version: 1 })).rejects.toThrow(/ended/);
  });

  test('records vanish within TTL + 2 s once nobody keeps the lease alive (its store closed without revoking)', async () => {
    const p = '/isthmus/v1/test-lease/abandoned/';
    const ttlSeconds = 2;
    const other = await FederationStore.connect(storeOptions(etcd));
    const session = await other.leaseSession({ ttlSeconds });
    await session.put(`${p}a`, { version: 1 });
    await sleep(ttlSeconds * 1000 + 500); // kept alive past one TTL while the store is open
    expect(await observer.get(`${p}a`)).toBeDefined();
    await other.close();
    const closedAt = Date.now();
    await vi.waitFor(async () => expect(await observer.get(`${p}a`)).toBeUndefined(), { timeout: 10_000, interval: 100 });
    expect(Date.now() - closedAt).toBeLessThan(ttlSeconds * 1000 + 2_000);
  });

  test('a lease revoked by someone else is replaced and every remembered record written again', async () => {
    const p = '/isthmus/v1/test-lease/stolen/';
    const lost: Error[] = [];
    const regranted: [string, string][] = [];
    const session = await store.leaseSession({
      ttlSeconds: 3,
      onLost: (err) => lost.push(err),
      onRegranted: (id, previous) => regranted.push([id, previous]),
    });
    try {
      await session.put(`${p}by-session`, { version: 1, n: 1 });
      await session.put(`${p}by-session`, { version: 1, n: 2 }); // the latest value is the one remembered
      await store.put(`${p}by-store-put`, { version: 1 }, { lease: session });
      await store.transact({ puts: [{ key: `${p}by-transact`, value: { version: 1 }, lease: session }] });
      await session.put(`${p}deleted`, { version: 1 });
      await session.delete(`${p}deleted`);
      await session.put(`${p}deleted-by-store`, { version: 1 });
      await store.delete(`${p}deleted-by-store`);
      await session.put(`${p}failed-delete`, { version: 1 });
      expect(await store.transact({ ifAbsent: [`${p}by-session`], deletes: [`${p}failed-delete`] })).toBe(false);
      const first = session.id;

      await raw.leaseClient.leaseRevoke({ ID: first });
      expect((await observer.list(p)).records).toEqual([]);

      await vi.waitFor(() => expect(regranted).toHaveLength(1), { timeout: 5_000 });
      expect(regranted[0]).toEqual([session.id, first]);
      expect(session.id).not.toBe(first);
      expect(lost).toHaveLength(1);
      const { records } = await observer.list<{ n?: number }>(p);
      expect(records.map((r) => [r.key, r.lease])).toEqual([
        [`${p}by-session`, session.id], [`${p}by-store-put`, session.id], [`${p}by-transact`, session.id], [`${p}failed-delete`, session.id],
      ]);
      expect(records[0]?.value.n).toBe(2);

      // The new lease is kept alive too.
      await sleep(3_500);
      expect((await observer.list(p)).records).toHaveLength(4);
    } finally {
      await session.revoke();
    }
  });

  test('a put that finds the lease gone waits for the new lease and lands under it', async () => {
    const p = '/isthmus/v1/test-lease/put-after-loss/';
    const session = await store.leaseSession({ ttlSeconds: 30 }); // keepalive would notice only after 10 s
    try {
      await session.put(`${p}a`, { version: 1 });
      const first = session.id;
      await raw.leaseClient.leaseRevoke({ ID: first });
      await session.put(`${p}b`, { version: 1 });
      expect(session.id).not.toBe(first);
      const { records } = await observer.list(p);
      expect(records.map((r) => [r.key, r.lease])).toEqual([[`${p}a`, session.id], [`${p}b`, session.id]]);
    } finally {
      await session.revoke();
    }
  });

  test('survives an etcd restart shorter than the TTL: same lease, records kept', async () => {
    const p = '/isthmus/v1/test-lease/short-outage/';
    const session = await store.leaseSession({ ttlSeconds: 3 });
    try {
      await session.put(`${p}a`, { version: 1 });
      const id = session.id;
      await etcd.stop();
      await etcd.start();
      expect((await observer.get(`${p}a`))?.lease).toBe(id);
      // etcd re-arms the lease at TTL + 1 s when it starts; only a resumed keepalive outlives that.
      await sleep(5_500);
      expect((await observer.get(`${p}a`))?.lease).toBe(id);
      expect(session.id).toBe(id);
    } finally {
      await session.revoke();
    }
  });

  test('survives an etcd outage longer than the TTL: records are still there and kept alive afterwards', async () => {
    const p = '/isthmus/v1/test-lease/long-outage/';
    const ttlSeconds = 2;
    const regranted: string[] = [];
    const session = await store.leaseSession({ ttlSeconds, onRegranted: (id) => regranted.push(id) });
    try {
      await session.put(`${p}a`, { version: 1 });
      await etcd.stop();
      await sleep(ttlSeconds * 1000 + 2_500);
      await etcd.start();
      await vi.waitFor(async () => expect((await observer.get(`${p}a`))?.lease).toBe(session.id), { timeout: 5_000 });
      await sleep(ttlSeconds * 1000 + 1_500); // a lease nobody keeps alive would be gone by now
      expect((await observer.get(`${p}a`))?.lease).toBe(session.id);
      // etcd re-arms every lease with a full TTL when it elects a leader, so the old lease
      // normally survives the outage and no re-grant is needed (a re-grant would be fine too).
      expect(regranted).toEqual([]);
    } finally {
      await session.revoke();
    }
  });
});
