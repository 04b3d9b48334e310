import { describe, expect, test } from 'vitest';
import { buildCatalog, findService, type CatalogInput } from './catalog.js';
import { keys } from '../core/keys.js';

const now = new Date('2026-11-25T12:00:00Z');
const cluster = (name: string, region = 'us') => ({
  version: 1, name, region, zones: ['a', 'b'], trustDomain: `${name}.example`, federation: `127.0.0.1:15010`, joinedAt: '2026-11-25T00:00:00Z',
});
const alive = { version: 1, heartbeatAt: '2026-11-25T11:59:58Z', federationVersion: '0.1.0', instance: 'x' };
const gateway = (zone: string) => ({ version: 1, address: '127.0.2.1', port: 15443, zone });
const exported = (healthy: number) => ({
  version: 1, ports: [{ port: 8080, protocol: 'http' }], identities: ['spiffe://west.example/ns/shop/sa/reviews'],
  zones: { a: { healthy, total: 2 } },
});

function input(entries: [string, unknown][], seen: Record<string, number> = {}): CatalogInput {
  return {
    records: new Map(entries),
    revision: 42,
    now,
    heartbeatsSeenAt: new Map(Object.entries(seen)),
    staleAfterMs: 30_000,
  };
}
const justNow = now.getTime() - 1_000;

describe('buildCatalog', () => {
  test('merges the exports of every live cluster under one service', () => {
    const catalog = buildCatalog(input([
      [keys.cluster('west'), cluster('west')], [keys.alive('west'), alive], [keys.gateway('west', 'gw1'), gateway('a')],
      [keys.cluster('north'), cluster('north', 'eu')], [keys.alive('north'), alive],
      [keys.export('west', 'shop', 'reviews'), exported(2)],
      [keys.export('north', 'shop', 'reviews'), exported(1)],
    ], { west: justNow, north: justNow }));
    const reviews = findService(catalog, 'shop', 'reviews');
    expect(reviews?.clusters.map((c) => [c.cluster, c.region, c.zones[0]?.healthy])).toEqual([['north', 'eu', 1], ['west', 'us', 2]]);
    expect(reviews?.clusters[1]?.gateways).toEqual([{ id: 'gw1', address: '127.0.2.1', port: 15443, zone: 'a' }]);
    expect(catalog.revision).toBe(42);
    expect(catalog.invalidKeys).toEqual([]);
  });

  test.each([
    ['its alive record is gone (lease lapsed)', false, justNow],
    ['its heartbeat was last seen longer ago than the stale limit', true, now.getTime() - 31_000],
    ['its heartbeat was never seen by this process', true, undefined],
  ])('withdraws a cluster when %s', (_why, hasAlive, seenAt) => {
    const entries: [string, unknown][] = [
      [keys.cluster('west'), cluster('west')], [keys.gateway('west', 'gw1'), gateway('a')],
      [keys.export('west', 'shop', 'reviews'), exported(2)],
    ];
    if (hasAlive) entries.push([keys.alive('west'), alive]);
    const catalog = buildCatalog(input(entries, seenAt === undefined ? {} : { west: seenAt }));
    expect(catalog.clusters).toMatchObject([{ name: 'west', alive: false, gateways: [] }]);
    expect(catalog.services).toEqual([]);
  });

  test('skips records that do not match their schema and names their keys', () => {
    const catalog = buildCatalog(input([
      [keys.cluster('west'), cluster('west')], [keys.alive('west'), alive],
      [keys.export('west', 'shop', 'bad'), { version: 1, ports: 'nope' }],
      [keys.gateway('west', 'gw9'), { version: 2 }],
      [keys.cluster('broken'), 'not an object'],
    ], { west: justNow }));
    expect(catalog.services).toEqual([]);
    expect(catalog.clusters.map((c) => c.name)).toEqual(['west']);
    expect(catalog.invalidKeys).toEqual([keys.cluster('broken'), keys.export('west', 'shop', 'bad'), keys.gateway('west', 'gw9')].sort());
  });

  test('an export from a cluster that never joined is ignored', () => {
    const catalog = buildCatalog(input([[keys.export('ghost', 'shop', 'reviews'), exported(1)]]));
    expect(catalog.services).toEqual([]);
  });
});
