import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { rawEtcd, startEtcd, storeOptions, type TestEtcd } from '../../test/helpers/etcd.js';
import { freePort } from '../../test/helpers/ports.js';
import { isIsthmusError } from '../core/errors.js';
import { FederationStore } from './store.js';

let etcd: TestEtcd;
let store: FederationStore;
let raw: Etcd3; // writes what our store refuses to write

beforeAll(async () => {
  etcd = await startEtcd();
  store = await FederationStore.connect(storeOptions(etcd));
  raw = rawEtcd(etcd);
});
afterAll(async () => {
  raw?.close();
  await store?.close();
  await etcd?.destroy();
});

const base = '/isthmus/v1/test-store';

describe('records', () => {
  test('put, get and list round-trip JSON records with their revisions', async () => {
    const rev1 = await store.put(`${base}/rt/a`, { version: 1, name: 'a', zones: ['z1'] });
    const rev2 = await store.put(`${base}/rt/b`, { version: 1, name: 'b' });
    const rev3 = await store.put(`${base}/rt/a`, { version: 1, name: 'a2' });
    expect(rev2).toBeGreaterThan(rev1);
    expect(rev3).toBeGreaterThan(rev2);

    expect(await store.get(`${base}/rt/a`)).toEqual({
      key: `${base}/rt/a`, value: { version: 1, name: 'a2' }, createRevision: rev1, modRevision: rev3, lease: '0',
    });
    expect(await store.get(`${base}/rt/missing`)).toBeUndefined();

    const { records, revision } = await store.list<{ name: string }>(`${base}/rt/`);
    expect(records.map((r) => [r.key, r.value.name])).toEqual([[`${base}/rt/a`, 'a2'], [`${base}/rt/b`, 'b']]);
    expect(revision).toBeGreaterThanOrEqual(rev3);
  });

  test('a value that is not JSON, or has no numeric version, is ISTHMUS_ERR_ETCD_RECORD_INVALID naming the key', async () => {
    await raw.put(`${base}/bad/not-json`).value('{nope');
    await raw.put(`${base}/bad/no-version`).value(JSON.stringify({ name: 'x' }));
    await raw.put(`${base}/bad/string-version`).value(JSON.stringify({ version: '1' }));
    for (const key of [`${base}/bad/not-json`, `${base}/bad/no-version`, `${base}/bad/string-version`]) {
      const err = await store.get(key).catch((e: unknown) => e);
      expect(isIsthmusError(err, 'ISTHMUS_ERR_ETCD_RECORD_INVALID'), String(err)).toBe(true);
      expect((err as Error).message).toContain(key);
    }
    await expect(store.list(`${base}/bad/`)).rejects.toMatchObject({ code: 'ISTHMUS_ERR_ETCD_RECORD_INVALID' });
  });

  test('writing a value without a numeric version is refused before it reaches etcd', async () => {
    await expect(store.put(`${base}/unversioned`, { name: 'x' })).rejects.toMatchObject({ code: 'ISTHMUS_ERR_ETCD_RECORD_INVALID' });
    expect(await raw.get(`${base}/unversioned`).string()).toBeNull();
  });

  test('delete and deletePrefix remove records; a prefix must end with "/" so it cannot take siblings', async () => {
    await store.put(`${base}/del/east/a`, { version: 1 });
    await store.put(`${base}/del/east/b`, { version: 1 });
    await store.put(`${base}/del/eastern/a`, { version: 1 });
    await store.put(`${base}/del/single`, { version: 1 });
    await expect(store.deletePrefix(`${base}/del/east`)).rejects.toThrow(/must start and end with/);
    expect(await store.deletePrefix(`${base}/del/east/`)).toBe(2);
    await store.delete(`${base}/del/single`);
    expect((await store.list(`${base}/del/`)).records.map((r) => r.key)).toEqual([`${base}/del/eastern/a`]);
  });
});

describe('transact', () => {
  test('an ifAbsent conflict writes nothing, not even the other puts and deletes', async () => {
    const k = (name: string) => `${base}/tx1/${name}`;
    await store.put(k('taken'), { version: 1, owner: 'first' });
    await store.put(k('doomed'), { version: 1 });
    await store.put(k('sub/x'), { version: 1 });
    const ok = await store.transact({
      ifAbsent: [k('free'), k('taken')],
      puts: [{ key: k('free'), value: { version: 1 } }, { key: k('taken'), value: { version: 1, owner: 'second' } }, { key: k('other'), value: { version: 1 } }],
      deletes: [k('doomed')],
      deletePrefixes: [k('sub/')],
    });
    expect(ok).toBe(false);
    expect(await store.get(k('free'))).toBeUndefined();
    expect(await store.get(k('other'))).toBeUndefined();
    expect((await store.get<{ owner: string }>(k('taken')))?.value.owner).toBe('first');
    expect(await store.get(k('doomed'))).toBeDefined();
    expect(await store.get(k('sub/x'))).toBeDefined();
  });

  test('when every compare holds, all puts and deletes apply in one revision', async () => {
    const k = (name: string) => `${base}/tx2/${name}`;
    const rev = await store.put(k('cas'), { version: 1, n: 1 });
    await store.put(k('doomed'), { version: 1 });
    await store.put(k('sub/x'), { version: 1 });
    await store.put(k('sub/y'), { version: 1 });
    const ok = await store.transact({
      ifAbsent: [k('new1'), k('new2')],
      ifModRevision: { [k('cas')]: rev },
      puts: [{ key: k('new1'), value: { version: 1 } }, { key: k('new2'), value: { version: 1 } }, { key: k('cas'), value: { version: 1, n: 2 } }],
      deletes: [k('doomed')],
      deletePrefixes: [k('sub/')],
    });
    expect(ok).toBe(true);
    const { records } = await store.list(`${base}/tx2/`);
    expect(records.map((r) => r.key).sort()).toEqual([k('cas'), k('new1'), k('new2')]);
    expect(new Set(records.map((r) => r.modRevision)).size).toBe(1);
    expect((await store.get<{ n: number }>(k('cas')))?.value.n).toBe(2);
  });

  test('an ifModRevision that no longer matches writes nothing', async () => {
    const key = `${base}/tx3/cas`;
    const rev = await store.put(key, { version: 1, n: 1 });
    await store.put(key, { version: 1, n: 2 });
    expect(await store.transact({ ifModRevision: { [key]: rev }, puts: [{ key, value: { version: 1, n: 3 } }] })).toBe(false);
    expect((await store.get<{ n: number }>(key))?.value.n).toBe(2);
  });
});

describe('health', () => {
  test('ping proves a write round trip and leaves no scratch key behind', async () => {
    // The figure `isthmus check` prints: the time of the round trip, so within the call's own time.
    const started = performance.now();
    const ms = await store.ping();
    expect(ms).toBeGreaterThan(0);
    expect(ms).toBeLessThanOrEqual(performance.now() - started);
    expect((await raw.getAll().prefix('/isthmus/v1/preflight/').keys()).length).toBe(0);
  });

  test('status reports the member version, store revision and leader', async () => {
    const rev = await store.put(`${base}/status`, { version: 1 });
    const status = await store.status();
    expect(status.version).toMatch(/^3\.\d+\.\d+/);
    expect(status.revision).toBeGreaterThanOrEqual(rev);
    expect(status.leader).toMatch(/^\d+$/);
    expect(Math.abs(status.localTime - Date.now())).toBeLessThan(1_000);
  });
});

describe('connect', () => {
  test('an address where nothing listens fails with ISTHMUS_ERR_ETCD_UNREACHABLE within the dial timeout', async () => {
    const port = await freePort();
    const started = Date.now();
    const err = await FederationStore.connect({ endpoints: `http://127.0.0.1:${port}`, dialTimeoutMs: 1_500 }).catch((e: unknown) => e);
    const elapsed = Date.now() - started;
    expect(isIsthmusError(err, 'ISTHMUS_ERR_ETCD_UNREACHABLE'), String(err)).toBe(true);
    expect((err as Error).message).toContain(`127.0.0.1:${port}`);
    expect((err as Error).message).toMatch(/running/);
    expect((err as Error).message).toMatch(/--etcd/);
    expect((err as Error).message).toMatch(/ISTHMUS_ETCD/);
    // A command given a dead etcd must not hang: bounded by the dial timeout, with room.
    expect(elapsed).toBeLessThan(1_500 + 5_000);
  });

  test('with several endpoints, a dead one is skipped for a live one', async () => {
    const dead = `https://127.0.0.1:${await freePort()}`;
    const s = await FederationStore.connect({ endpoints: `${dead},${etcd.url}`, tls: etcd.tls });
    try {
      for (let i = 0; i < 20; i++) expect(await s.get(`${base}/rt/a`)).toBeDefined();
    } finally {
      await s.close();
    }
  });

  test('no address at all is ISTHMUS_ERR_ETCD_NOT_CONFIGURED', async () => {
    await expect(FederationStore.connect({ endpoints: ' , ' })).rejects.toMatchObject({ code: 'ISTHMUS_ERR_ETCD_NOT_CONFIGURED' });
  });

  test('calls to a stopped etcd fail with ISTHMUS_ERR_ETCD_UNREACHABLE, and the first call after it is back succeeds', async () => {
    const other = await startEtcd();
    const s = await FederationStore.connect({ ...storeOptions(other), callTimeoutMs: 1_000 });
    // A watch keeps reconnecting during the outage, which leaves gRPC channels backing off.
    const watch = s.watchPrefix(`${base}/`, { onReset: () => undefined, onEvents: () => undefined });
    try {
      await other.stop();
      await expect(s.get(`${base}/x`)).rejects.toMatchObject({ code: 'ISTHMUS_ERR_ETCD_UNREACHABLE' });
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      await other.start();
      expect(await s.put(`${base}/x`, { version: 1 })).toBeGreaterThan(0);
    } finally {
      await watch.close();
      await s.close();
      await other.destroy();
    }
  });
});
