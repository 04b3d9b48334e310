import { describe, expect, test } from 'vitest';
import { choosePriority, pickEndpoint, pickPrepared, prepareEndpoints, retryOrder } from './balancer.js';
import type { Endpoint, Locality, Priority, ServiceLocalities } from './localities.js';
import { healthCounts, priorityLoad } from './priority-load.js';
import { mulberry32 } from '../../test/helpers/random.js';

const ep = (address: string, weight = 1, healthy = true): Endpoint => ({ address, healthy, weight, kind: 'local' });
const gwEp = (address: string, cluster: string): Endpoint =>
  ({ address, healthy: true, weight: 1, kind: 'gateway', sni: `reviews.shop.svc.${cluster}.isthmus` });
const loc = (priority: Priority, cluster: string, zone: string, endpoints: Endpoint[]): Locality =>
  ({ region: priority === 3 ? 'eu' : 'us', zone, cluster, priority, endpoints });

const service: ServiceLocalities = {
  localities: [
    loc(0, 'east', 'a', [ep('p0-light', 1), ep('p0-heavy', 3), ep('p0-down', 5, false)]),
    loc(1, 'east', 'b', [ep('p1-only')]),
    loc(2, 'west', 'a', [gwEp('gw-west', 'west')]),
    loc(3, 'north', 'a', [gwEp('gw-north', 'north')]),
  ],
};
const constant = (u: number) => () => u;

describe('choosePriority', () => {
  test.each([
    [[70, 30, 0, 0], 0, 0], [[70, 30, 0, 0], 0.699, 0], [[70, 30, 0, 0], 0.7, 1], [[70, 30, 0, 0], 0.9999, 1],
    [[0, 0, 0, 100], 0, 3], [[0, 0, 0, 100], 0.9999, 3], [[0, 50, 0, 50], 0, 1], [[0, 50, 0, 50], 0.5, 3],
    [[0, 0, 0, 0], 0.5, 0], [[], 0.5, 0],
  ] as [number[], number, Priority][])('loads %j at u=%d → P%i', (loads, u, expected) => {
    expect(choosePriority(loads, u)).toBe(expected);
  });
});

describe('pickEndpoint', () => {
  test('returns the endpoint with its locality', () => {
    expect(pickEndpoint(service, [0, 0, 100, 0], constant(0))).toEqual({
      address: 'gw-west', healthy: true, weight: 1, kind: 'gateway', sni: 'reviews.shop.svc.west.isthmus',
      priority: 2, region: 'us', zone: 'a', cluster: 'west',
    });
  });

  test('falls to the next priority when the chosen one has nothing eligible, then wraps to the higher ones', () => {
    const loads = [100, 0, 0, 0];
    expect(pickEndpoint(service, loads, constant(0), new Set(['p0-light', 'p0-heavy']))?.address).toBe('p1-only');
    expect(pickEndpoint(service, [0, 0, 0, 100], constant(0), new Set(['gw-north']))?.address).toBe('p0-light');
    const everything = new Set(['p0-light', 'p0-heavy', 'p1-only', 'gw-west', 'gw-north']);
    expect(pickEndpoint(service, loads, constant(0), everything)).toBeUndefined();
  });

  test('never picks an unhealthy or zero-weight endpoint, even when the loads are stale', () => {
    const broken: ServiceLocalities = { localities: [loc(0, 'east', 'a', [ep('down', 1, false), ep('zero', 0)])] };
    expect(pickEndpoint(broken, [100, 0, 0, 0], constant(0.3))).toBeUndefined();
  });

  test('never returns an unhealthy or excluded endpoint (seeded random shapes)', () => {
    const random = mulberry32(42);
    for (let round = 0; round < 2000; round++) {
      const shape: ServiceLocalities = {
        localities: ([0, 1, 2, 3] as Priority[]).map((p) => loc(p, `c${p}`, 'a',
          Array.from({ length: Math.floor(random() * 4) }, (_, i) => ep(`${p}-${i}`, 1 + Math.floor(random() * 3), random() < 0.6)))),
      };
      const exclude = new Set(shape.localities.flatMap((l) => l.endpoints).filter(() => random() < 0.3).map((e) => e.address));
      const { loads } = priorityLoad(healthCounts(shape));
      const picked = pickEndpoint(shape, loads, random, exclude);
      const anyEligible = shape.localities.some((l) => l.endpoints.some((e) => e.healthy && !exclude.has(e.address)));
      expect(picked !== undefined).toBe(anyEligible);
      if (picked) expect(picked.healthy && !exclude.has(picked.address)).toBe(true);
    }
  });

  test('10k picks follow the priority loads and the weights within a priority (fixed seed)', () => {
    const random = mulberry32(7);
    const loads = [70, 30, 0, 0];
    const counts = new Map<string, number>();
    for (let i = 0; i < 10_000; i++) {
      const address = pickEndpoint(service, loads, random)?.address ?? 'none';
      counts.set(address, (counts.get(address) ?? 0) + 1);
    }
    // Expected 1750 / 5250 / 3000; binomial σ ≤ 50, so ±200 is four σ, not luck.
    expect(Math.abs((counts.get('p0-light') ?? 0) - 1750)).toBeLessThan(200);
    expect(Math.abs((counts.get('p0-heavy') ?? 0) - 5250)).toBeLessThan(200);
    expect(Math.abs((counts.get('p1-only') ?? 0) - 3000)).toBeLessThan(200);
    expect([...counts.keys()].sort()).toEqual(['p0-heavy', 'p0-light', 'p1-only']);
  });
});

describe('retryOrder', () => {
  test('same priority first, then the lower priorities, then the higher ones; never the failed one', () => {
    const order = retryOrder(service, { address: 'p0-light', priority: 0 }, mulberry32(1));
    expect(order.map((e) => e.address)).toEqual(['p0-heavy', 'p1-only', 'gw-west', 'gw-north']);
    const fromP2 = retryOrder(service, { address: 'gw-west', priority: 2 }, constant(0));
    expect(fromP2.map((e) => e.address)).toEqual(['gw-north', 'p0-light', 'p0-heavy', 'p1-only']);
  });

  test('honours exclusions and skips unhealthy endpoints', () => {
    const order = retryOrder(service, { address: 'p0-light', priority: 0 }, constant(0), new Set(['p1-only']));
    expect(order.map((e) => e.address)).toEqual(['p0-heavy', 'gw-west', 'gw-north']);
  });

  test('orders a priority by weight: the heavier endpoint comes first about as often as its weight says', () => {
    const wide: ServiceLocalities = { localities: [loc(0, 'east', 'a', [ep('failed'), ep('w1', 1), ep('w3', 3)])] };
    const random = mulberry32(99);
    let heavyFirst = 0;
    for (let i = 0; i < 4000; i++) {
      const order = retryOrder(wide, { address: 'failed', priority: 0 }, random);
      expect(order.map((e) => e.address).sort()).toEqual(['w1', 'w3']);
      if (order[0]?.address === 'w3') heavyFirst++;
    }
    expect(Math.abs(heavyFirst - 3000)).toBeLessThan(150);
  });
});


describe('pickPrepared (the per-request pick over endpoints prepared once per route)', () => {
  test('makes exactly the choices of the general pick, draw for draw, whatever the health and loads', () => {
    const random = mulberry32(9);
    for (let round = 0; round < 300; round += 1) {
      // Random health per endpoint, so some priorities are empty and the pick falls through.
      const shaped: ServiceLocalities = {
        localities: service.localities.map((l) => ({ ...l, endpoints: l.endpoints.map((e) => ({ ...e, healthy: random() < 0.6 })) })),
      };
      const loads = priorityLoad(healthCounts(shaped)).loads;
      const seed = Math.floor(random() * 1e9);
      // An exclude set naming nothing real takes the general path (eligible lists built per call).
      const general = pickEndpoint(shaped, loads, mulberry32(seed), new Set(['nowhere:1']));
      const prepared = pickPrepared(prepareEndpoints(shaped), loads, mulberry32(seed));
      expect(prepared).toEqual(general);
    }
  });
});

describe('power of two choices within a priority (endpoints carrying their load)', () => {
  const measured = (address: string, ewmaMs: number, outstanding = 0, weight = 1): Endpoint =>
    ({ ...ep(address, weight), load: { ewmaMs, stampMs: 0, outstanding, since: Number.NEGATIVE_INFINITY } });
  const share = (shape: ServiceLocalities, loads: number[], picks = 4000, seed = 5) => {
    const random = mulberry32(seed);
    const counts = new Map<string, number>();
    for (let i = 0; i < picks; i++) {
      const address = pickPrepared(prepareEndpoints(shape), loads, random, 0)?.address ?? 'none';
      counts.set(address, (counts.get(address) ?? 0) + 1);
    }
    return (address: string) => (counts.get(address) ?? 0) / picks;
  };

  test.each([
    // [endpoints, the share the fast one gets, why]
    [[measured('fast', 3), measured('slow', 400)], 1, 'two endpoints: both are always drawn, the cheaper always wins'],
    [[measured('fast', 3), measured('slow', 400), measured('slow2', 400)], 1 - 1 / 3, 'three: the fast one loses only when the two slow ones are drawn'],
    [[measured('fast', 3, 200), measured('slow', 400)], 0, 'the fast one with 200 requests outstanding costs 3 × 201 > 400'],
    [[measured('fast', 0), measured('slow', 0)], 0.5, 'nothing measured, nothing outstanding: equal cost, the first draw wins (weights alone)'],
  ] as [Endpoint[], number, string][])('%#: %s', (endpoints, fastShare, why) => {
    const share1 = share({ localities: [loc(0, 'east', 'a', endpoints)] }, [100, 0, 0, 0]);
    expect(Math.abs(share1('fast') - fastShare), why).toBeLessThan(0.04);
  });

  test('the clusters of one priority are compared, the priorities are not: a slow P0 keeps its load share', () => {
    const shape: ServiceLocalities = {
      localities: [
        loc(0, 'east', 'a', [measured('p0-slow', 500)]),
        loc(2, 'west', 'a', [measured('gw-west-slow', 400)]),
        loc(2, 'north', 'a', [measured('gw-north-fast', 3)]),
      ],
    };
    const seen = share(shape, [70, 0, 30, 0]);
    expect(Math.abs(seen('p0-slow') - 0.7)).toBeLessThan(0.04);
    expect(Math.abs(seen('gw-north-fast') - 0.3)).toBeLessThan(0.04);
    expect(seen('gw-west-slow')).toBe(0);
  });

  test('the exclude path (retries) chooses the same way: same draws, same choice as the prepared one', () => {
    const random = mulberry32(11);
    for (let round = 0; round < 300; round += 1) {
      const shaped: ServiceLocalities = {
        localities: service.localities.map((l) => ({ ...l, endpoints: l.endpoints.map((e) => ({ ...e, healthy: random() < 0.7, load: { ewmaMs: random() * 100, stampMs: 0, outstanding: Math.floor(random() * 3), since: Number.NEGATIVE_INFINITY } })) })),
      };
      const loads = priorityLoad(healthCounts(shaped)).loads;
      const seed = Math.floor(random() * 1e9);
      const general = pickEndpoint(shaped, loads, mulberry32(seed), new Set(['nowhere:1']), 0);
      const prepared = pickPrepared(prepareEndpoints(shaped), loads, mulberry32(seed), 0);
      expect(prepared).toEqual(general);
    }
  });

  test('without `now` the pick is by weight alone, draw for draw as before', () => {
    const shape: ServiceLocalities = { localities: [loc(0, 'east', 'a', [measured('fast', 3), measured('slow', 400)])] };
    expect(pickPrepared(prepareEndpoints(shape), [100, 0, 0, 0], constant(0.9))?.address).toBe('slow');
    expect(pickPrepared(prepareEndpoints(shape), [100, 0, 0, 0], constant(0.9), 0)?.address).toBe('fast');
  });
});
