import { describe, expect, test } from 'vitest';
import type { Catalog, CatalogServiceCluster } from './catalog.js';
import { localitiesFor, type LocalEndpoint, type LocalitiesInput } from './localities.js';
import { healthCounts, priorityLoad } from './priority-load.js';

const gw = (id: string, address: string, zone: string) => ({ id, address, port: 15443, zone });

function exportOf(cluster: string, region: string, zones: [string, number, number][], gateways = [gw('gw1', `127.0.9.1`, 'a')]): CatalogServiceCluster {
  return {
    cluster, region, gateways,
    zones: zones.map(([zone, healthy, total]) => ({ zone, healthy, total })),
    identities: [`spiffe://${cluster}.example/ns/shop/sa/reviews`],
    ports: [{ port: 8080, protocol: 'http' }],
  };
}

function catalogWith(...clusters: CatalogServiceCluster[]): Catalog {
  return { revision: 7, clusters: [], invalidKeys: [], services: [{ namespace: 'shop', name: 'reviews', clusters }] };
}

const caller = { region: 'us', zone: 'a', cluster: 'east' };
const local = (address: string, zone: string, healthy = true, weight?: number): LocalEndpoint =>
  weight === undefined ? { address, zone, healthy } : { address, zone, healthy, weight };

function run(catalog: Catalog, localEndpoints: LocalEndpoint[] = [], overrides: Partial<LocalitiesInput> = {}) {
  return localitiesFor({ catalog, namespace: 'shop', service: 'reviews', caller, localEndpoints, ...overrides });
}

describe('localitiesFor', () => {
  const mesh = catalogWith(
    exportOf('east', 'us', [['a', 2, 2]], [gw('gw1', '127.0.1.1', 'a')]), // the caller's own export: counts only
    exportOf('west', 'us', [['a', 1, 2], ['b', 0, 1]], [gw('gw1', '127.0.2.1', 'a'), gw('gw2', '127.0.2.2', 'a')]),
    exportOf('north', 'eu', [['a', 3, 3]], [gw('gw1', '127.0.3.1', 'a')]),
  );

  test('ranks same zone, same cluster, same region and elsewhere as P0..P3', () => {
    const result = run(mesh, [local('10.0.0.2:8080', 'a'), local('10.0.0.1:8080', 'a', false), local('10.0.1.1:8080', 'b', true, 3)]);
    expect(result.localities.map((l) => [l.priority, l.cluster, l.zone, l.region])).toEqual([
      [0, 'east', 'a', 'us'], [1, 'east', 'b', 'us'], [2, 'west', 'a', 'us'], [3, 'north', 'a', 'eu'],
    ]);
    expect(result.localities[0]?.endpoints).toEqual([
      { address: '10.0.0.1:8080', healthy: false, weight: 1, kind: 'local' },
      { address: '10.0.0.2:8080', healthy: true, weight: 1, kind: 'local' },
    ]);
    expect(result.localities[1]?.endpoints).toEqual([{ address: '10.0.1.1:8080', healthy: true, weight: 3, kind: 'local' }]);
  });

  test('a remote cluster is reached only through its gateways, with the SNI naming the service', () => {
    const west = run(mesh).localities.find((l) => l.cluster === 'west');
    expect(west?.endpoints).toEqual([
      // 1 healthy endpoint behind 2 gateways: each gateway carries half of it.
      { address: '127.0.2.1:15443', healthy: true, weight: 0.5, kind: 'gateway', sni: 'reviews.shop.svc.west.isthmus' },
      { address: '127.0.2.2:15443', healthy: true, weight: 0.5, kind: 'gateway', sni: 'reviews.shop.svc.west.isthmus' },
    ]);
  });

  test('never takes endpoints of the caller\'s own cluster from the catalog, and never exposes pod addresses', () => {
    const result = run(mesh, []);
    expect(result.localities.some((l) => l.cluster === 'east')).toBe(false);
    const remote = result.localities.filter((l) => l.cluster !== 'east').flatMap((l) => l.endpoints);
    expect(remote.every((e) => e.kind === 'gateway' && e.address.endsWith(':15443'))).toBe(true);
  });

  test.each([
    ['no zone has a healthy endpoint', [['a', 0, 2], ['b', 0, 1]], false],
    ['one zone of several has one', [['a', 0, 2], ['b', 1, 1]], true],
    ['it exports no zones at all', [], false],
  ] as [string, [string, number, number][], boolean][])('a remote gateway is unhealthy unless the export is healthy somewhere: %s', (_why, zones, healthy) => {
    const result = run(catalogWith(exportOf('west', 'us', zones)));
    expect(result.localities.flatMap((l) => l.endpoints).map((e) => e.healthy)).toEqual([healthy]);
  });

  test('gateways in several zones make one locality per zone', () => {
    const result = run(catalogWith(exportOf('west', 'us', [['a', 4, 4]], [gw('gw2', '127.0.2.2', 'b'), gw('gw1', '127.0.2.1', 'a')])));
    expect(result.localities.map((l) => [l.cluster, l.zone, l.endpoints.map((e) => e.weight)])).toEqual([
      ['west', 'a', [2]], ['west', 'b', [2]],
    ]);
  });

  test('a cluster without a live gateway is left out', () => {
    expect(run(catalogWith(exportOf('west', 'us', [['a', 2, 2]], []))).localities).toEqual([]);
  });

  test('a service nobody exports still has the local endpoints', () => {
    const result = run(catalogWith(), [local('10.0.0.1:8080', 'a')], { service: 'ratings' });
    expect(result.localities.map((l) => l.priority)).toEqual([0]);
  });

  test('the answer does not depend on input order', () => {
    const endpoints = [local('10.0.1.1:8080', 'b'), local('10.0.0.2:8080', 'a'), local('10.0.0.1:8080', 'a')];
    const reversed = catalogWith(...[...(mesh.services[0]?.clusters ?? [])].reverse());
    expect(run(reversed, [...endpoints].reverse())).toEqual(run(mesh, endpoints));
  });

  test('local endpoints all down: traffic fails over to the same-region cluster first', () => {
    const result = run(mesh, [local('10.0.0.1:8080', 'a', false), local('10.0.1.1:8080', 'b', false)]);
    expect(priorityLoad(healthCounts(result)).loads).toEqual([0, 0, 100, 0]);
  });

});

describe('localitiesFor a ServiceSubset', () => {
  const withSets = (cluster: CatalogServiceCluster, labelSets: CatalogServiceCluster['labelSets']) => ({ ...cluster, labelSets });
  const mesh = catalogWith(
    withSets(exportOf('west', 'us', [['a', 3, 3]], [gw('gw1', '127.0.2.1', 'a')]), [{ labels: { version: 'v1' }, healthy: 1, total: 1 }, { labels: { version: 'v2' }, healthy: 2, total: 2 }]),
    withSets(exportOf('north', 'eu', [['a', 1, 2]], [gw('gw1', '127.0.3.1', 'a')]), [{ labels: { version: 'v2' }, healthy: 0, total: 1 }, { labels: { version: 'v1' }, healthy: 1, total: 1 }]),
    exportOf('south', 'eu', [['a', 4, 4]], [gw('gw1', '127.0.4.1', 'a')]), // no labels published (an older federation)
  );
  const v2 = { name: 'reviews-v2', labels: { version: 'v2' } };

  test('other clusters serve it only with instances of a matching label set, weighted by those, through the gateway with the subset in the SNI', () => {
    const result = run(mesh, [local('10.0.0.1:8080', 'a')], { subset: v2 });
    expect(result.localities.map((l) => [l.priority, l.cluster])).toEqual([[0, 'east'], [2, 'west'], [3, 'north']]);
    expect(result.localities[1]?.endpoints).toEqual([{ address: '127.0.2.1:15443', healthy: true, weight: 2, kind: 'gateway', sni: 'reviews-v2.reviews.shop.svc.west.isthmus' }]);
    // north has v2 instances, none healthy: there but unhealthy, as a cluster whose pods are all down.
    expect(result.localities[2]?.endpoints).toEqual([{ address: '127.0.3.1:15443', healthy: false, weight: 1, kind: 'gateway', sni: 'reviews-v2.reviews.shop.svc.north.isthmus' }]);
  });

  test('a subset no other cluster has stays in the caller\'s cluster', () => {
    const result = run(mesh, [], { subset: { name: 'v9', labels: { version: 'v9' } } });
    expect(result.localities).toEqual([]);
  });
});
