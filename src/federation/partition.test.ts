/**
 * A network partition between one client and a running etcd: the only way, with a real etcd, to
 * have others write (and compact) while our watch is away, and to have etcd expire our lease
 * while we are still running. A TCP proxy stands between that client and etcd and can be cut.
 */
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { rawEtcd, startEtcd, storeOptions, type TestEtcd } from '../../test/helpers/etcd.js';
import { LinkProxy } from '../../test/helpers/faults.js';
import { FederationStore, type StoredRecord, type StoreEvent } from './store.js';

let etcd: TestEtcd;
let proxy: LinkProxy;
let partitioned: FederationStore; // talks to etcd through the proxy
let others: FederationStore; // the rest of the mesh, straight to etcd
let raw: Etcd3;

beforeAll(async () => {
  etcd = await startEtcd();
  // TLS passes through untouched: etcd's certificate names 127.0.0.1, where the link listens too.
  proxy = await LinkProxy.start(new URL(etcd.url).host);
  partitioned = await FederationStore.connect({ endpoints: `${new URL(etcd.url).protocol}//${proxy.address}`, tls: etcd.tls, callTimeoutMs: 2_000 });
  others = await FederationStore.connect(storeOptions(etcd));
  raw = rawEtcd(etcd);
});
afterAll(async () => {
  raw?.close();
  await partitioned?.close();
  await others?.close();
  await proxy?.cut();
  await etcd?.destroy();
});

function recorder() {
  const resets: { records: StoredRecord[]; revision: number }[] = [];
  const events: StoreEvent[] = [];
  const mirror = new Map<string, unknown>();
  return {
    resets,
    events,
    mirror,
    handlers: {
      onReset: (records: StoredRecord[], revision: number) => {
        resets.push({ records, revision });
        mirror.clear();
        for (const r of records) mirror.set(r.key, r.value);
      },
      onEvents: (batch: StoreEvent[]) => {
        events.push(...batch);
        for (const e of batch) {
          if (e.type === 'put') mirror.set(e.record.key, e.record.value);
          else mirror.delete(e.key);
        }
      },
    },
  };
}

async function current(prefix: string): Promise<Map<string, unknown>> {
  const { records } = await others.list(prefix);
  return new Map(records.map((r) => [r.key, r.value]));
}

describe('while partitioned from etcd', () => {
  test('a watch resumes after the partition and delivers every change made meanwhile, in order, without a re-list', async () => {
    const p = '/isthmus/v1/test-partition/resume/';
    await others.put(`${p}a`, { version: 1 });
    const rec = recorder();
    const watch = partitioned.watchPrefix(p, rec.handlers);
    try {
      await vi.waitFor(() => expect(rec.resets).toHaveLength(1));
      await proxy.cut();
      const r1 = await others.put(`${p}b`, { version: 1 });
      const r2 = await others.put(`${p}a`, { version: 1, n: 2 });
      const r3 = (await others.delete(`${p}b`), (await others.status()).revision);
      await proxy.heal();
      await vi.waitFor(() => expect(watch.revision).toBe(r3), { timeout: 10_000 });
      expect(rec.resets).toHaveLength(1);
      expect(rec.events.map((e) => (e.type === 'put' ? [e.type, e.record.key, e.record.modRevision] : [e.type, e.key, e.modRevision]))).toEqual([
        ['put', `${p}b`, r1], ['put', `${p}a`, r2], ['delete', `${p}b`, r3],
      ]);
      expect(rec.mirror).toEqual(await current(p));
    } finally {
      await watch.close();
    }
  });

  test('a watch whose resume revision was compacted away re-lists and calls onReset with the current state', async () => {
    const p = '/isthmus/v1/test-partition/compacted/';
    await others.put(`${p}keep`, { version: 1, n: 1 });
    await others.put(`${p}gone`, { version: 1 });
    const rec = recorder();
    const watch = partitioned.watchPrefix(p, rec.handlers);
    try {
      await vi.waitFor(() => expect(rec.resets).toHaveLength(1));
      await proxy.cut();
      for (let n = 2; n <= 5; n++) await others.put(`${p}keep`, { version: 1, n });
      await others.delete(`${p}gone`);
      const latest = await others.put(`${p}new`, { version: 1 });
      await raw.kv.compact({ revision: latest, physical: true });
      await proxy.heal();

      await vi.waitFor(() => expect(rec.resets).toHaveLength(2), { timeout: 10_000 });
      const reset = rec.resets[1]!;
      expect(reset.revision).toBeGreaterThanOrEqual(latest);
      expect(reset.records.map((r) => [r.key, r.value])).toEqual([[`${p}keep`, { version: 1, n: 5 }], [`${p}new`, { version: 1 }]]);
      expect(rec.events).toEqual([]); // nothing from the compacted history leaked through

      // And the watch goes on from the re-list.
      const after = await others.put(`${p}after`, { version: 1 });
      await vi.waitFor(() => expect(watch.revision).toBe(after));
      expect(rec.mirror).toEqual(await current(p));
    } finally {
      await watch.close();
    }
  });

  test('a lease that etcd expired during the partition is replaced after it, and its records come back', async () => {
    const p = '/isthmus/v1/test-partition/lease/';
    const ttlSeconds = 2;
    const lost: Error[] = [];
    const regranted: [string, string][] = [];
    const session = await partitioned.leaseSession({
      ttlSeconds,
      onLost: (err) => lost.push(err),
      onRegranted: (id, previous) => regranted.push([id, previous]),
    });
    try {
      await session.put(`${p}a`, { version: 1 });
      await session.put(`${p}b`, { version: 1 });
      const first = session.id;
      await proxy.cut();
      // The rest of the mesh sees the records go: etcd expired the lease.
      await vi.waitFor(async () => expect((await others.list(p)).records).toEqual([]), { timeout: ttlSeconds * 1000 + 3_000, interval: 200 });
      await proxy.heal();

      await vi.waitFor(() => expect(regranted).toHaveLength(1), { timeout: 10_000 });
      expect(regranted[0]).toEqual([session.id, first]);
      expect(lost).toHaveLength(1);
      const { records } = await others.list(p);
      expect(records.map((r) => [r.key, r.lease])).toEqual([[`${p}a`, session.id], [`${p}b`, session.id]]);
    } finally {
      await session.revoke();
    }
  });
});
