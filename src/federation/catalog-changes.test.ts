import { describe, expect, test, vi } from 'vitest';
import { keys } from '../core/keys.js';
import { CatalogChanges } from './catalog-changes.js';
import { StoreMirror } from './mirror.js';
import type { StoredRecord } from './store.js';

const staleAfter = 10_000;
let revision = 0;
const record = (key: string, value: unknown): StoredRecord => ({ key, value, modRevision: ++revision, createRevision: revision, lease: '0' });
const cluster = (name: string) => record(keys.cluster(name), { version: 1, name, region: 'r', zones: ['a'], trustDomain: 'td', federation: `${name}:15010`, joinedAt: '2026-12-04T00:00:00Z' });
const alive = (name: string, at: string) => record(keys.alive(name), { version: 1, heartbeatAt: at, federationVersion: '0.1.0', instance: 'i' });
const exported = (name: string, service: string) => record(keys.export(name, 'demo', service), { version: 1, ports: [], identities: [`spiffe://td/ns/demo/sa/${service}`], zones: { a: { healthy: 1, total: 1 } } });

describe('CatalogChanges: the catalog is rebuilt only when what it is built from changes', () => {
  test('heartbeats rewritten every second rebuild nothing; an export, a heartbeat gone stale or turned invalid do', () => {
    const mirror = new StoreMirror();
    const changes = new CatalogChanges();
    mirror.reset([cluster('east'), alive('east', 't0'), exported('east', 'hello')], ++revision, 0);
    const first = changes.next(mirror, 0, staleAfter);
    expect(first?.services.map((s) => s.name)).toEqual(['hello']);
    const builds = vi.spyOn(mirror, 'catalog');

    // A heartbeat and a telemetry record rewritten: no rebuild, nothing handed on.
    mirror.apply([{ type: 'put', record: alive('east', 't1') }, { type: 'put', record: record(keys.trafficOf('east'), { version: 1 }) }], ++revision, 1000);
    expect(changes.next(mirror, 1000, staleAfter)).toBeUndefined();
    expect(builds).not.toHaveBeenCalled();

    // A new export: rebuilt and handed on.
    mirror.apply([{ type: 'put', record: exported('east', 'ledger') }], ++revision, 2000);
    expect(changes.next(mirror, 2000, staleAfter)?.services.map((s) => s.name)).toEqual(['hello', 'ledger']);
    expect(builds).toHaveBeenCalledTimes(1);

    // Time alone: the last heartbeat (seen at 1000) goes stale, and the cluster's services leave.
    const stale = changes.next(mirror, 1000 + staleAfter + 1, staleAfter);
    expect(stale?.clusters.map((c) => [c.name, c.alive])).toEqual([['east', false]]);
    expect(stale?.services).toEqual([]);

    // A heartbeat again (alive), then one that no longer validates: the catalog says so.
    mirror.apply([{ type: 'put', record: alive('east', 't2') }], ++revision, 20_000);
    expect(changes.next(mirror, 20_000, staleAfter)?.clusters.map((c) => c.alive)).toEqual([true]);
    mirror.apply([{ type: 'put', record: record(keys.alive('east'), { version: 1 }) }], ++revision, 21_000);
    const invalid = changes.next(mirror, 21_000, staleAfter);
    expect(invalid?.invalidKeys).toEqual([keys.alive('east')]);
    expect(invalid?.clusters.map((c) => c.alive)).toEqual([false]);

    // A deleted export: rebuilt.
    mirror.apply([{ type: 'put', record: alive('east', 't3') }], ++revision, 22_000);
    changes.next(mirror, 22_000, staleAfter);
    mirror.apply([{ type: 'delete', key: keys.export('east', 'demo', 'ledger'), modRevision: ++revision }], revision, 23_000);
    expect(changes.next(mirror, 23_000, staleAfter)?.services.map((s) => s.name)).toEqual(['hello']);
  });
});
