import { describe, expect, test } from 'vitest';
import { keys } from '../core/keys.js';
import { StoreMirror } from './mirror.js';
import type { StoreEvent, StoredRecord } from './store.js';

let revision = 0;
const record = (key: string, value: unknown): StoredRecord => ({ key, value, modRevision: ++revision, createRevision: revision, lease: '0' });
const put = (key: string, value: unknown): StoreEvent => ({ type: 'put', record: record(key, value) });
const bundle = (td: string, roots: string[]) => put(keys.bundle(td), { version: 1, trustDomain: td, roots });
const alive = (name: string, at: string) => put(keys.alive(name), { version: 1, heartbeatAt: at, federationVersion: '0.1.0', instance: 'i' });

describe('StoreMirror.changesUnder: whether records under a prefix changed', () => {
  const start = () => {
    const mirror = new StoreMirror();
    mirror.reset([record(keys.bundle('a.test'), { version: 1, trustDomain: 'a.test', roots: ['A'] })], ++revision, 0);
    return mirror;
  };

  test.each<[string, StoreEvent[], boolean]>([
    ['a bundle replaced', [bundle('a.test', ['A', 'B'])], true],
    ['a bundle replaced by the same roots (a put is a change)', [bundle('a.test', ['A'])], true],
    ['a bundle added', [bundle('b.test', ['B'])], true],
    ['a bundle deleted', [{ type: 'delete', key: keys.bundle('a.test'), modRevision: ++revision }], true],
    ['a key deleted that was never there', [{ type: 'delete', key: keys.bundle('c.test'), modRevision: ++revision }], false],
    ['a record under another prefix', [put(keys.trafficOf('east'), { version: 1 })], false],
    ['a heartbeat', [alive('east', 't1')], false],
  ])('%s: changed %s', (_, events, changed) => {
    const mirror = start();
    const before = mirror.changesUnder(keys.bundles);
    mirror.apply(events, ++revision, 1000);
    expect(mirror.changesUnder(keys.bundles) !== before).toBe(changed);
  });

  test('a heartbeat rewritten with a new time is no change; one appearing or turning invalid is', () => {
    const mirror = start();
    let last = mirror.changesUnder(keys.clusters);
    const changed = (events: StoreEvent[]) => {
      mirror.apply(events, ++revision, 1000);
      const now = mirror.changesUnder(keys.clusters);
      const moved = now !== last;
      last = now;
      return moved;
    };
    expect(changed([alive('east', 't1')])).toBe(true);
    expect(changed([alive('east', 't2')])).toBe(false);
    expect(changed([put(keys.alive('east'), { version: 1 })])).toBe(true);
    expect(changed([alive('east', 't3')])).toBe(true);
    expect(changed([{ type: 'delete', key: keys.alive('east'), modRevision: ++revision }])).toBe(true);
  });

  test('a full reload (after a compaction or a reconnect) counts under every prefix', () => {
    const mirror = start();
    const bundles = mirror.changesUnder(keys.bundles);
    const exports = mirror.changesUnder(keys.exports);
    mirror.reset([], ++revision, 2000);
    expect(mirror.changesUnder(keys.bundles)).not.toBe(bundles);
    expect(mirror.changesUnder(keys.exports)).not.toBe(exports);
  });
});
