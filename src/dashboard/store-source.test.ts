import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startEtcd, storeOptions, type TestEtcd } from '../../test/helpers/etcd.js';
import { freePort } from '../../test/helpers/ports.js';
import { isIsthmusError } from '../core/errors.js';
import { keys } from '../core/keys.js';
import { FederationStore } from '../federation/store.js';
import { buildOverview } from './overview.js';
import { StoreSource } from './store-source.js';

let etcd: TestEtcd;
let writer: FederationStore; // plays the federations: the source itself never writes

const cluster = (name: string) => ({
  version: 1, name, region: 'us', zones: ['a'], trustDomain: 'mesh.test', federation: '127.0.0.1:15010', joinedAt: new Date().toISOString(),
});
const alive = () => ({ version: 1, heartbeatAt: new Date().toISOString(), federationVersion: 'test', instance: 'i-1' });
const exported = { version: 1, ports: [{ port: 8080, protocol: 'http' }], identities: ['spiffe://mesh.test/ns/demo/sa/hello'], zones: { a: { healthy: 2, total: 3 } } };

async function until<T>(probe: () => T | undefined | false, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  etcd = await startEtcd();
  writer = await FederationStore.connect(storeOptions(etcd));
  await writer.put(keys.cluster('east'), cluster('east'));
  await writer.put(keys.alive('east'), alive());
  await writer.put(keys.export('east', 'demo', 'hello'), exported);
});
afterAll(async () => {
  await writer?.close();
  await etcd?.destroy();
});

describe('StoreSource: the dashboard straight from etcd', () => {
  test('lists the whole prefix, builds the catalog as a federation does, and follows changes with a catalog event', async () => {
    const source = await StoreSource.open({ endpoints: [etcd.url], tls: etcd.tls });
    try {
      expect(source.cluster).toBe(`isthmus dash (etcd ${etcd.url.replace('https://', '')})`);
      expect(source.catalog.clusters.map((c) => [c.name, c.alive])).toEqual([['east', true]]);
      expect(source.catalog.services.map((s) => `${s.namespace}/${s.name}`)).toEqual(['demo/hello']);
      const overview = buildOverview(source);
      expect(overview.servedBy).toBe(source.cluster);
      expect(overview.services[0]?.clusters).toEqual([{ cluster: 'east', healthy: 2, total: 3 }]);

      // Any key under /isthmus/v1/ reaches the mirror, not only the catalog's.
      await writer.put(`${keys.all}something-new/x`, { version: 1, note: 'read by the overview one day' });
      await until(() => source.mirror.entries(`${keys.all}something-new/`).length === 1, 5_000, 'the new key in the mirror');

      const changed = new Promise<void>((resolve) => source.once('catalog', () => resolve()));
      await writer.put(keys.cluster('west'), cluster('west'));
      await writer.put(keys.alive('west'), alive());
      await changed;
      await until(() => source.catalog.clusters.find((c) => c.name === 'west')?.alive, 5_000, 'west alive in the catalog');
      expect(source.catalog.clusters.map((c) => [c.name, c.alive])).toEqual([['east', true], ['west', true]]);
    } finally {
      await source.close();
      await writer.delete(keys.cluster('west'));
      await writer.delete(keys.alive('west'));
    }
  });

  test('a heartbeat that stops being written goes stale on the tick, with no store event', async () => {
    await writer.put(keys.cluster('quiet'), cluster('quiet'));
    await writer.put(keys.alive('quiet'), alive());
    // leaseTtlSeconds 0: stale after 5 s unseen.
    const source = await StoreSource.open({ endpoints: [etcd.url], tls: etcd.tls, leaseTtlSeconds: 0, tickMs: 200 });
    try {
      expect(source.catalog.clusters.find((c) => c.name === 'quiet')?.alive).toBe(true);
      await until(() => source.catalog.clusters.find((c) => c.name === 'quiet')?.alive === false, 9_000, 'quiet to go stale');
    } finally {
      await source.close();
      await writer.delete(keys.cluster('quiet'));
      await writer.delete(keys.alive('quiet'));
    }
  }, 20_000);

  test('through an etcd outage: keeps the last state (not stale), says so, and follows again after', async () => {
    const source = await StoreSource.open({ endpoints: [etcd.url], tls: etcd.tls, leaseTtlSeconds: 0, tickMs: 200 });
    // Heartbeats keep east alive while etcd is up, as its federation would.
    const beat = setInterval(() => void writer.put(keys.alive('east'), alive()).catch(() => undefined), 500);
    try {
      expect(source.catalog.clusters.find((c) => c.name === 'east')?.alive).toBe(true);
      await etcd.stop();
      await until(() => source.health().etcd === 'unreachable', 10_000, 'the outage to be noticed');
      expect(source.cluster).toMatch(/unreachable since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ; showing the last state\)$/);
      // Longer than the 5 s stale limit: a frozen catalog still shows east as the watch last saw it.
      await new Promise((r) => setTimeout(r, 6_000));
      expect(source.catalog.clusters.find((c) => c.name === 'east')?.alive).toBe(true);
      expect(buildOverview(source).clusters.find((c) => c.name === 'east')?.alive).toBe(true);

      await etcd.start();
      await until(() => source.health().etcd === 'reachable', 15_000, 'etcd to be reachable again');
      expect(source.cluster).not.toMatch(/unreachable/);
      await writer.put(keys.export('east', 'demo', 'ledger'), exported);
      await until(() => source.catalog.services.some((s) => s.name === 'ledger'), 10_000, 'a write after the outage');
      expect(source.catalog.clusters.find((c) => c.name === 'east')?.alive).toBe(true);
    } finally {
      clearInterval(beat);
      await source.close();
    }
  }, 60_000);

  test('an etcd that does not answer fails open() with ISTHMUS_ERR_ETCD_UNREACHABLE, quickly', async () => {
    const url = `http://127.0.0.1:${await freePort()}`;
    const started = Date.now();
    const err = await StoreSource.open({ endpoints: [url], dialTimeoutMs: 1_000 }).catch((e: unknown) => e);
    expect(isIsthmusError(err, 'ISTHMUS_ERR_ETCD_UNREACHABLE')).toBe(true);
    expect((err as Error).message).toContain(url);
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});
