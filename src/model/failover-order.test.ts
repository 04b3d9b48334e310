import { describe, expect, test } from 'vitest';
import { pickEndpoint, prepareEndpoints, pickPrepared, retryOrder } from './balancer.js';
import { withClusterOrder } from './failover-order.js';
import { withinScope } from './failover-scope.js';
import type { Locality, Priority, ServiceLocalities } from './localities.js';
import { healthCounts, priorityLoad } from './priority-load.js';

// The caller is in east (zone a, region r1); north shares its region, west and south do not.
const at = (cluster: string, zone: string, priority: Priority, healthy = 1, total = 1): Locality => ({
  region: cluster === 'east' || cluster === 'north' ? 'r1' : 'r2', zone, cluster, priority,
  endpoints: Array.from({ length: total }, (_, i) => ({ address: `${cluster}-${zone}-${i}:1`, healthy: i < healthy, weight: 1, kind: cluster === 'east' ? 'local' : 'gateway' })),
});
const mesh: ServiceLocalities = { localities: [at('east', 'a', 0), at('east', 'b', 1), at('north', 'a', 2), at('south', 'a', 3), at('west', 'a', 3), at('west', 'b', 3)] };
const levels = (s: ServiceLocalities) => s.localities.map((l) => `P${l.priority} ${l.cluster}/${l.zone}`);

describe('withClusterOrder', () => {
  test.each([
    ['no order: the default ranking', [], ['P0 east/a', 'P1 east/b', 'P2 north/a', 'P3 south/a', 'P3 west/a', 'P3 west/b']],
    ['one level per listed cluster, unlisted ones after, same region first', ['west'], ['P0 east/a', 'P1 east/b', 'P2 west/a', 'P2 west/b', 'P3 north/a', 'P4 south/a']],
    ['the listed order, not the default one', ['west', 'north', 'south'], ['P0 east/a', 'P1 east/b', 'P2 west/a', 'P2 west/b', 'P3 north/a', 'P4 south/a']],
    ['a cross-region cluster before one of the same region', ['south', 'west'], ['P0 east/a', 'P1 east/b', 'P2 south/a', 'P3 west/a', 'P3 west/b', 'P4 north/a']],
    ['the caller\'s own cluster in the order changes nothing: it always comes first', ['west', 'east', 'north'], ['P0 east/a', 'P1 east/b', 'P2 west/a', 'P2 west/b', 'P3 north/a', 'P4 south/a']],
    ['a listed cluster that does not serve the service takes no level', ['gone', 'north', 'west'], ['P0 east/a', 'P1 east/b', 'P2 north/a', 'P3 west/a', 'P3 west/b', 'P4 south/a']],
    ['only unknown clusters listed: unlisted ones keep their levels', ['gone'], ['P0 east/a', 'P1 east/b', 'P2 north/a', 'P3 south/a', 'P3 west/a', 'P3 west/b']],
  ] as [string, string[], string[]][])('%s: %j', (_name, order, expected) => {
    expect(levels(withClusterOrder(mesh, order, 'east'))).toEqual(expected);
  });

  test('a caller with no instance of its own: the listed clusters still start at P2', () => {
    const remoteOnly = { localities: mesh.localities.filter((l) => l.cluster !== 'east') };
    expect(levels(withClusterOrder(remoteOnly, ['west', 'north'], 'east'))).toEqual(['P2 west/a', 'P2 west/b', 'P3 north/a', 'P4 south/a']);
  });

  test('scope first, on the default levels, then the order: region scope with an order keeps the region only', () => {
    expect(levels(withClusterOrder(withinScope(mesh, 'region'), ['west', 'north'], 'east'))).toEqual(['P0 east/a', 'P1 east/b', 'P2 north/a']);
  });
});

describe('priority load over an ordered mesh spills from one listed cluster to the next', () => {
  // order [west, north, south]; east has no instance of its own (levels P0/P1 empty).
  const ordered = (west: [number, number], north: [number, number], south: [number, number]) =>
    withClusterOrder({ localities: [at('north', 'a', 2, ...north), at('south', 'a', 3, ...south), at('west', 'a', 3, ...west)] }, ['west', 'north', 'south'], 'east');
  test.each([
    ['all healthy: the first listed takes everything', [4, 4], [2, 2], [2, 2], [0, 0, 100, 0, 0]],
    ['west at 50% health (×1.4 = 70): 30% spills to north', [2, 4], [2, 2], [2, 2], [0, 0, 70, 30, 0]],
    ['west down: north takes everything, south nothing', [0, 4], [2, 2], [2, 2], [0, 0, 0, 100, 0]],
    ['west down, north at 50%: south catches the spill', [0, 4], [1, 2], [2, 2], [0, 0, 0, 70, 30]],
    ['west 1/4, north 1/4 (35% health each): south gets the 30% left', [1, 4], [1, 4], [2, 2], [0, 0, 35, 35, 30]],
    ['all three at 1/5 (28% health each): normalised, the odd point to the first listed', [1, 5], [1, 5], [1, 5], [0, 0, 34, 33, 33]],
  ] as [string, [number, number], [number, number], [number, number], number[]][])('%s', (_name, west, north, south, loads) => {
    expect(priorityLoad(healthCounts(ordered(west, north, south))).loads).toEqual(loads);
  });

  test('the balancer picks from the fifth level and retries walk the listed order', () => {
    const service = ordered([0, 1], [0, 1], [1, 1]);
    const { loads } = priorityLoad(healthCounts(service));
    expect(loads).toEqual([0, 0, 0, 0, 100]);
    expect(pickPrepared(prepareEndpoints(service), loads, () => 0.5)?.cluster).toBe('south');
    expect(pickEndpoint(service, loads, () => 0.5, new Set(['x']))?.cluster).toBe('south');
    const all = withClusterOrder(mesh, ['south', 'west'], 'east');
    expect(retryOrder(all, { address: 'east-a-0:1', priority: 0 }, () => 0).map((e) => e.cluster)).toEqual(['east', 'south', 'west', 'west', 'north']);
  });
});
