import { describe, expect, it, test } from 'vitest';
import type { Catalog, CatalogService } from '../model/catalog.js';
import { CatalogSnapshotSchema, GatewayRoutesSchema, LocalEndpointsSchema, type LocalEndpoints } from '../model/records.js';
import { applyServiceChanges, changesSchemaOf } from '../model/service-changes.js';
import { snapshotProblem } from '../core/long-poll.js';
import { SnapshotHistory, formatPosition, parsePosition } from './snapshot-history.js';

const cluster = (name: string, alive = true): Catalog['clusters'][number] => ({
  name, region: 'r', zones: ['a'], trustDomain: 'mesh.test', federation: `${name}:15010`, joinedAt: '2026-12-05T00:00:00.000Z', alive, gateways: [],
});
const service = (name: string, healthy = 1, namespace = 'demo'): CatalogService => ({
  namespace, name,
  clusters: [{ cluster: 'west', region: 'r', zones: [{ zone: 'a', healthy, total: 2 }], gateways: [], identities: [`spiffe://mesh.test/ns/${namespace}/sa/${name}`], ports: [{ port: 80, protocol: 'http' }] }],
});
/** A catalog as the federation builds it: services in `<namespace>/<name>` order. */
const catalog = (revision: number, services: CatalogService[], clusters = [cluster('west')]): Catalog => ({
  revision, clusters, invalidKeys: [],
  services: [...services].sort((x, y) => (`${x.namespace}/${x.name}` < `${y.namespace}/${y.name}` ? -1 : 1)),
});

describe('SnapshotHistory of the catalog', () => {
  it('tells each reader only the services changed since the catalog it holds', () => {
    const history = new SnapshotHistory<Catalog>();
    const first = history.record(catalog(10, [service('a'), service('b'), service('c')]));
    const second = history.record(catalog(11, [service('a'), service('b', 0), service('c')]));
    const third = history.record(catalog(12, [service('a'), service('b', 0), service('d')]));
    expect([first.generation, second.generation, third.generation]).toEqual([1, 2, 3]);

    const fromSecond = history.changesSince(second)!;
    expect(fromSecond).toMatchObject({ since: 2, generation: 3, revision: 12, services: 3, removed: ['demo/c'] });
    expect(fromSecond.upserts.map((s: CatalogService) => s.name)).toEqual(['d']);
    // From further back, the changes of every generation between, each service once, as it is now.
    const fromFirst = history.changesSince(first)!;
    expect(fromFirst.upserts.map((s: CatalogService) => [s.name, s.clusters[0]!.zones[0]!.healthy])).toEqual([['b', 0], ['d', 1]]);
    expect(fromFirst.removed).toEqual(['demo/c']);
    // A reader that is current is told that nothing changed (a long poll that timed out).
    expect(history.changesSince(third)).toMatchObject({ since: 3, generation: 3, upserts: [], removed: [] });
    expect(snapshotProblem(changesSchemaOf(CatalogSnapshotSchema), JSON.parse(JSON.stringify(fromFirst)))).toBeUndefined();
  });

  test.each([
    ['another process (a restarted federation)', (p: { epoch: string; generation: number }) => ({ epoch: 'someoneelse', generation: p.generation })],
    ['a generation older than the history keeps', () => undefined],
    ['a generation this process has not made yet', (p: { epoch: string; generation: number }) => ({ epoch: p.epoch, generation: p.generation + 1 })],
  ])('gives no changes from %s: the reader gets the catalog whole', (_case, from) => {
    const history = new SnapshotHistory<Catalog>(2);
    const positions = [1, 2, 3, 4].map((i) => history.record(catalog(i, [service(`s${i}`)])));
    const since = from(positions.at(-1)!) ?? positions[0]!;
    expect(history.changesSince(since)).toBeUndefined();
    // Two generations deep: the reader at the oldest kept generation's start still gets changes.
    expect(history.changesSince(positions[1]!)).toMatchObject({ since: 2, generation: 4 });
  });

  it('makes no new generation for the catalog it already holds', () => {
    const history = new SnapshotHistory<Catalog>();
    const c = catalog(1, [service('a')]);
    expect(history.record(c)).toEqual(history.record(c));
  });

  it('changes applied to any catalog it made give the current one, through random histories', () => {
    // A small deterministic generator: add, remove and change services at random, with new
    // clusters and revisions, and check every (held, current) pair.
    let seed = 7;
    const random = (n: number) => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed % n; };
    for (let round = 0; round < 20; round += 1) {
      const history = new SnapshotHistory<Catalog>(8);
      const made: { catalog: Catalog; position: ReturnType<SnapshotHistory<Catalog>['record']> }[] = [];
      let services = new Map<string, CatalogService>();
      for (let step = 0; step < 12; step += 1) {
        for (let n = random(4); n > 0; n -= 1) {
          const name = `svc-${random(30)}`;
          const namespace = random(3) === 0 ? 'other' : 'demo';
          const action = random(3);
          if (action === 0) services.delete(`${namespace}/${name}`);
          else services.set(`${namespace}/${name}`, service(name, random(3), namespace));
        }
        services = new Map(services);
        const current = catalog(100 + step, [...services.values()], random(2) === 0 ? [cluster('west')] : [cluster('west'), cluster('north', random(2) === 0)]);
        made.push({ catalog: current, position: history.record(current) });
      }
      const now = made.at(-1)!.catalog;
      for (const { catalog: held, position } of made.slice(-9)) {
        const changes = history.changesSince(position);
        expect(changes, `round ${round}, from generation ${position.generation}`).toBeDefined();
        const applied = applyServiceChanges(held, JSON.parse(JSON.stringify(changes)));
        expect(applied).toEqual({ snapshot: JSON.parse(JSON.stringify(now)) });
      }
    }
  });
});

describe('SnapshotHistory of this cluster\'s endpoints', () => {
  const endpoints = (version: number, services: [string, string[]][]): LocalEndpoints => ({
    version, cluster: 'east', services: services.map(([name, addresses]) => ({ namespace: 'demo', name, endpoints: addresses.map((address) => ({ address, zone: 'a', healthy: true })) })),
  });

  it('tells an instance that left one service as that service, and the rest of the snapshot whole', () => {
    const history = new SnapshotHistory<LocalEndpoints>();
    const held = endpoints(7, [['a', ['10.0.0.1:80']], ['b', ['10.0.0.2:80', '10.0.0.3:80']]]);
    const from = history.record(held);
    history.record(endpoints(8, [['a', ['10.0.0.1:80']], ['b', ['10.0.0.2:80']]]));
    const changes = JSON.parse(JSON.stringify(history.changesSince(from)));
    expect(changes).toEqual({
      version: 8, cluster: 'east', epoch: history.epoch, generation: 2, since: 1,
      upserts: [{ namespace: 'demo', name: 'b', endpoints: [{ address: '10.0.0.2:80', zone: 'a', healthy: true }] }], removed: [], services: 2,
    });
    expect(snapshotProblem(changesSchemaOf(LocalEndpointsSchema), changes)).toBeUndefined();
    expect(applyServiceChanges(held, changes)).toEqual({ snapshot: endpoints(8, [['a', ['10.0.0.1:80']], ['b', ['10.0.0.2:80']]]) });
  });

  it('answers whole while two services share a key, and from then on', () => {
    const history = new SnapshotHistory<LocalEndpoints>();
    const from = history.record(endpoints(1, [['a', []]]));
    const twice = endpoints(2, [['a', []], ['a', ['10.0.0.9:80']]]);
    const at = history.record(twice);
    expect(history.changesSince(from)).toBeUndefined();
    expect(history.answer(twice, formatPosition(from))).toEqual({ ...twice, ...at });
    // The generation after it counts changes again, from the one the reader took whole.
    history.record(endpoints(3, [['a', []]]));
    expect(history.changesSince(at)).toMatchObject({ since: 2, generation: 3 });
  });

  test.each([
    [undefined, 'whole'],
    ['elsewhere.1', 'whole'],
    ['nonsense', 'refused'],
  ])('answer(since=%j) is %s', (since, kind) => {
    const history = new SnapshotHistory<LocalEndpoints>();
    const snapshot = endpoints(1, [['a', []]]);
    const answer = history.answer(snapshot, since);
    if (kind === 'refused') expect(answer).toBeUndefined();
    else expect(answer).toEqual({ ...snapshot, epoch: history.epoch, generation: 1 });
  });
});

test.each([
  ['catalog', CatalogSnapshotSchema, { revision: 1, clusters: [], invalidKeys: [], epoch: 'e', generation: 2, since: 1, upserts: [{ namespace: 'demo', name: 'x' }], removed: [], services: 1 }, '/upserts/0/clusters: expected required property'],
  ['catalog', CatalogSnapshotSchema, { revision: 1, clusters: [], invalidKeys: [], epoch: 'e', generation: 2, since: 1, upserts: [], removed: [], services: -1 }, '/services: expected integer to be greater or equal to 0'],
  ['endpoints', LocalEndpointsSchema, { version: 1, cluster: 'east', epoch: 'e', generation: 2, since: 1, upserts: [], removed: [3], services: 0 }, '/removed/0: expected string'],
  ['routes', GatewayRoutesSchema, { version: 1, epoch: 'e', generation: 2, since: 1, upserts: [], removed: [], services: 0 }, '/cluster: expected required property'],
  ['routes', GatewayRoutesSchema, { version: 1, cluster: 'east', epoch: 'e', generation: 2, since: 1, upserts: [], removed: [], services: 0 }, undefined],
])('changes to the %s: %j → %s', (_kind, schema, value, problem) => {
  expect(snapshotProblem(changesSchemaOf(schema), value)).toBe(problem);
});

describe('applyServiceChanges', () => {
  it('keeps every unchanged service object of the catalog held', () => {
    const held = catalog(1, [service('a'), service('b'), service('c')]);
    const applied = applyServiceChanges(held, { revision: 2, clusters: held.clusters, invalidKeys: [], epoch: 'e', generation: 2, since: 1, upserts: [service('b', 0), service('aa')], removed: ['demo/c'], services: 3 });
    expect('snapshot' in applied).toBe(true);
    const services = (applied as { snapshot: Catalog }).snapshot.services;
    expect(services.map((s) => s.name)).toEqual(['a', 'aa', 'b']);
    expect(services[0]).toBe(held.services[0]);
    expect(services[2]!.clusters[0]!.zones[0]!.healthy).toBe(0);
  });

  it('refuses changes whose count does not come out as the federation says', () => {
    const held = catalog(1, [service('a')]);
    expect(applyServiceChanges(held, { revision: 2, clusters: [], invalidKeys: [], epoch: 'e', generation: 2, since: 1, upserts: [], removed: [], services: 2 }))
      .toEqual({ problem: 'the changes leave 1 services where the federation has 2' });
  });
});

test.each([
  ['abc.12', { epoch: 'abc', generation: 12 }],
  ['Zx_-9.0', { epoch: 'Zx_-9', generation: 0 }],
  ['abc', undefined],
  ['abc.', undefined],
  ['.3', undefined],
  ['a b.3', undefined],
  ['abc.-1', undefined],
  [undefined, undefined],
])('parsePosition(%j)', (text, position) => {
  expect(parsePosition(text)).toEqual(position);
  if (position) expect(formatPosition(position)).toBe(text);
});
