import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { rawEtcd, startEtcd, storeOptions, type TestEtcd } from '../../test/helpers/etcd.js';
import { FederationStore, type StoredRecord, type StoreEvent } from './store.js';

let etcd: TestEtcd;
let watching: FederationStore;
let writer: FederationStore; // another client, as another cluster would be
let raw: Etcd3;

beforeAll(async () => {
  etcd = await startEtcd();
  watching = await FederationStore.connect(storeOptions(etcd));
  writer = await FederationStore.connect(storeOptions(etcd));
  raw = rawEtcd(etcd);
});
afterAll(async () => {
  raw?.close();
  await watching?.close();
  await writer?.close();
  await etcd?.destroy();
});

type Call = { kind: 'reset'; records: StoredRecord[]; revision: number } | { kind: 'events'; events: StoreEvent[]; revision: number };

/**
 * Records every call and keeps the mirror a consumer would build from them. What the watch
 * promises its handlers (one call at a time, revisions never going back, nothing after close) is
 * checked here and kept in `broken`, which every test asserts empty: an expect() inside a handler
 * would only throw into the watch, which reports it to onError and goes on.
 */
function recorder() {
  const calls: Call[] = [];
  const errors: Error[] = [];
  const broken: string[] = [];
  const mirror = new Map<string, unknown>();
  let inside = false;
  let closed = false;
  const handle = (what: Call['kind'], revision: number, fn: () => void) => {
    const last = calls.at(-1)?.revision ?? 0;
    if (inside) broken.push(`${what} at ${revision} was called while another handler ran`);
    if (closed) broken.push(`${what} at ${revision} came after close`);
    if (revision < last || (what === 'events' && revision === last)) broken.push(`${what} at ${revision} came after revision ${last}`);
    inside = true;
    try {
      fn();
    } finally {
      inside = false;
    }
  };
  return {
    calls,
    errors,
    broken,
    mirror,
    /** From now on any call is a broken promise. */
    closed: () => { closed = true; },
    resets: () => calls.filter((c) => c.kind === 'reset').length,
    events: () => calls.flatMap((c) => (c.kind === 'events' ? c.events : [])),
    handlers: {
      onReset: (records: StoredRecord[], revision: number) => handle('reset', revision, () => {
        calls.push({ kind: 'reset', records, revision });
        mirror.clear();
        for (const r of records) mirror.set(r.key, r.value);
      }),
      onEvents: (events: StoreEvent[], revision: number) => handle('events', revision, () => {
        calls.push({ kind: 'events', events, revision });
        for (const e of events) {
          if (e.type === 'put') mirror.set(e.record.key, e.record.value);
          else mirror.delete(e.key);
        }
      }),
      onError: (err: Error) => errors.push(err),
    },
  };
}

/** Revisions only ever go forward, and every event is at or below the revision reported with it. */
function expectOrdered(calls: Call[]): void {
  let last = 0;
  for (const call of calls) {
    if (call.kind === 'events') {
      for (const e of call.events) {
        const rev = e.type === 'put' ? e.record.modRevision : e.modRevision;
        expect(rev).toBeGreaterThan(last);
        expect(rev).toBeLessThanOrEqual(call.revision);
      }
    }
    expect(call.revision).toBeGreaterThanOrEqual(last);
    last = call.revision;
  }
}

async function current(prefix: string): Promise<Map<string, unknown>> {
  const { records } = await writer.list(prefix);
  return new Map(records.map((r) => [r.key, r.value]));
}

describe('watchPrefix', () => {
  test('calls onReset with the listed records, then onEvents in revision order', async () => {
    const p = '/isthmus/v1/test-watch/order/';
    await writer.put(`${p}a`, { version: 1, n: 1 });
    await writer.put(`${p}b`, { version: 1, n: 1 });
    await writer.put('/isthmus/v1/test-watch/orderly-sibling', { version: 1 }); // outside the prefix
    const rec = recorder();
    const watch = watching.watchPrefix(p, rec.handlers);
    try {
      await vi.waitFor(() => expect(rec.resets()).toBe(1));
      const reset = rec.calls[0]!;
      expect(reset.kind === 'reset' && reset.records.map((r) => r.key)).toEqual([`${p}a`, `${p}b`]);
      expect(watch.revision).toBe(reset.revision);

      const r1 = await writer.put(`${p}c`, { version: 1, n: 1 });
      await writer.put(`${p}a`, { version: 1, n: 2 });
      await writer.delete(`${p}b`);
      await writer.transact({ puts: [{ key: `${p}d`, value: { version: 1 } }, { key: `${p}e`, value: { version: 1 } }] });
      const last = await writer.put(`${p}a`, { version: 1, n: 3 });

      await vi.waitFor(() => expect(watch.revision).toBe(last));
      expect(rec.events().map((e) => (e.type === 'put' ? `put ${e.record.key}` : `delete ${e.key}`))).toEqual([
        `put ${p}c`, `put ${p}a`, `delete ${p}b`, `put ${p}d`, `put ${p}e`, `put ${p}a`,
      ]);
      const firstEvent = rec.events()[0];
      expect(firstEvent?.type === 'put' && firstEvent.record.modRevision).toBe(r1);
      expectOrdered(rec.calls);
      expect(rec.mirror).toEqual(await current(p));
      expect(rec.resets()).toBe(1);
      expect(rec.errors).toEqual([]);
      expect(rec.broken).toEqual([]);
    } finally {
      await watch.close();
    }
  });

  test('a record that is not valid is left out of the reset, becomes a delete event, and is reported', async () => {
    const p = '/isthmus/v1/test-watch/invalid/';
    await writer.put(`${p}good`, { version: 1 });
    await raw.put(`${p}bad`).value('not json');
    const rec = recorder();
    const watch = watching.watchPrefix(p, rec.handlers);
    try {
      await vi.waitFor(() => expect(rec.resets()).toBe(1));
      expect([...rec.mirror.keys()]).toEqual([`${p}good`]);
      expect(rec.errors.map((e) => (e as { code?: string }).code)).toEqual(['ISTHMUS_ERR_ETCD_RECORD_INVALID']);

      await raw.put(`${p}good`).value('{"no":"version"}');
      await vi.waitFor(() => expect(rec.events()).toHaveLength(1));
      expect(rec.events()[0]).toMatchObject({ type: 'delete', key: `${p}good` });
      expect(rec.errors[1]?.message).toContain(`${p}good`);
      expect(rec.errors).toHaveLength(2);
      expect(rec.broken).toEqual([]);
    } finally {
      await watch.close();
    }
  });

  test('a handler that throws is reported and the watch goes on', async () => {
    const p = '/isthmus/v1/test-watch/throws/';
    const errors: Error[] = [];
    const seen: string[] = [];
    const watch = watching.watchPrefix(p, {
      onReset: () => undefined,
      onEvents: (events) => {
        for (const e of events) seen.push(e.type === 'put' ? e.record.key : e.key);
        if (seen.length === 1) throw new Error('boom');
      },
      onError: (err) => errors.push(err),
    });
    try {
      await vi.waitFor(() => expect(watch.revision).toBeGreaterThan(0));
      await writer.put(`${p}1`, { version: 1 });
      await writer.put(`${p}2`, { version: 1 });
      await vi.waitFor(() => expect(seen).toEqual([`${p}1`, `${p}2`]));
      expect(errors).toHaveLength(1);
      expect(errors[0]?.message).toBe(`a watch handler for ${p} threw`);
      expect((errors[0]?.cause as Error).message).toBe('boom');
    } finally {
      await watch.close();
    }
  });

  test('after close no handler is called again', async () => {
    const p = '/isthmus/v1/test-watch/closed/';
    const rec = recorder();
    const watch = watching.watchPrefix(p, rec.handlers);
    await vi.waitFor(() => expect(rec.resets()).toBe(1));
    await watch.close();
    rec.closed();
    await writer.put(`${p}x`, { version: 1 });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(rec.calls).toHaveLength(1);
    expect(rec.broken).toEqual([]);
    expect(rec.errors).toEqual([]);
  });

  test('survives an etcd restart: resumes from the last revision (no re-list) and delivers what is written right after', async () => {
    const p = '/isthmus/v1/test-watch/restart/';
    await writer.put(`${p}before`, { version: 1 });
    const rec = recorder();
    const watch = watching.watchPrefix(p, rec.handlers);
    try {
      await vi.waitFor(() => expect(rec.resets()).toBe(1));
      const seen = await writer.put(`${p}during`, { version: 1 });
      await vi.waitFor(() => expect(watch.revision).toBe(seen));

      await etcd.stop();
      await new Promise((resolve) => setTimeout(resolve, 5_000)); // the contract's outage
      await etcd.start();
      // Written at once: the watch may not have reconnected yet, and must still deliver it.
      const afterRestart = await writer.put(`${p}after`, { version: 1, n: 1 });
      await writer.delete(`${p}before`);
      const last = await writer.put(`${p}after`, { version: 1, n: 2 });

      await vi.waitFor(() => expect(watch.revision).toBe(last), { timeout: 10_000 });
      expect(rec.resets()).toBe(1); // resumed, not re-listed
      expect(rec.events().map((e) => (e.type === 'put' ? e.record.modRevision : e.modRevision))).toEqual([seen, afterRestart, afterRestart + 1, last]);
      expectOrdered(rec.calls);
      expect(rec.mirror).toEqual(await current(p));
      expect(rec.broken).toEqual([]);
      // The outage may be reported (a failed reconnect); nothing else may.
      expect(rec.errors.filter((e) => (e as { code?: string }).code === 'ISTHMUS_ERR_ETCD_RECORD_INVALID' || /watch handler/.test(e.message))).toEqual([]);
    } finally {
      await watch.close();
    }
  });
});
