import { describe, expect, test } from 'vitest';
import { healthCounts, priorityLoad, type PriorityHealthCount } from './priority-load.js';
import type { ServiceLocalities } from './localities.js';
import { mulberry32 } from '../../test/helpers/random.js';

/** "X% healthy" as X healthy endpoints out of 100, so the percentages are exact. */
const pct = (healthy: number): PriorityHealthCount => ({ healthy, total: 100 });
const loadsOf = (...levels: PriorityHealthCount[]) => priorityLoad(levels).loads;

// Rows of the three tables in Envoy's "Priority levels" page,
// https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/load_balancing/priority
// (docs/root/intro/arch_overview/upstream/load_balancing/priority.rst), factor 1.4.
describe('Envoy docs, priority levels', () => {
  test.each([
    [100, [100, 0]],
    [72, [100, 0]],
    [71, [99, 1]],
    [50, [70, 30]],
    [25, [35, 65]],
    [0, [0, 100]],
  ])('two levels, P1 fully healthy: P0 %i%% healthy → %j', (p0, expected) => {
    expect(loadsOf(pct(p0), pct(100))).toEqual(expected);
  });

  test.each([
    [100, 100, [100, 0]],
    [72, 72, [100, 0]],
    [71, 71, [99, 1]],
    [50, 50, [70, 30]],
    [25, 100, [35, 65]],
    [25, 25, [50, 50]],
  ])('two levels: P0 %i%%, P1 %i%% healthy → %j', (p0, p1, expected) => {
    expect(loadsOf(pct(p0), pct(p1))).toEqual(expected);
  });

  test.each([
    [100, 100, 100, [100, 0, 0]],
    [72, 72, 100, [100, 0, 0]],
    [71, 71, 100, [99, 1, 0]],
    [50, 50, 100, [70, 30, 0]],
    [25, 100, 100, [35, 65, 0]],
    [25, 25, 100, [35, 35, 30]],
    [25, 25, 20, [36, 36, 28]],
  ])('three levels: P0 %i%%, P1 %i%%, P2 %i%% healthy → %j', (p0, p1, p2, expected) => {
    expect(loadsOf(pct(p0), pct(p1), pct(p2))).toEqual(expected);
  });

  test('healths {20, 30} normalise to {40%, 60%} (the worked example in the prose)', () => {
    // 1/7 × 140 = 20 and 3/14 × 140 = 30 exactly.
    const result = priorityLoad([{ healthy: 1, total: 7 }, { healthy: 3, total: 14 }]);
    expect(result.explain.map((e) => e.health)).toEqual([20, 30]);
    expect(result.loads).toEqual([40, 60]);
    expect(result.status).toBe('normalised');
  });

  test('80% healthy is still fully healthy; the edge sits at 5/7 ≈ 71.4%', () => {
    expect(loadsOf(pct(80), pct(100))).toEqual([100, 0]);
    // Integer arithmetic: 140 × 5 / 7 is exactly 100, not 99.999…
    expect(priorityLoad([{ healthy: 5, total: 7 }, pct(100)]).loads).toEqual([100, 0]);
  });
});

describe('priorityLoad, edge cases', () => {
  test.each([
    ['a priority with no endpoints is skipped', [{ healthy: 0, total: 0 }, { healthy: 2, total: 2 }], [0, 100], 'ok'],
    ['one priority only, partly healthy, is scaled up to everything', [{ healthy: 1, total: 3 }], [100], 'normalised'],
    ['one priority only, fully healthy', [{ healthy: 3, total: 3 }], [100], 'ok'],
    ['four priorities, the last one catching the spill', [{ healthy: 1, total: 4 }, { healthy: 1, total: 4 }, { healthy: 1, total: 10 }, { healthy: 3, total: 3 }], [35, 35, 14, 16], 'ok'],
    ['four priorities, all weak: normalised with largest remainders', [{ healthy: 1, total: 4 }, { healthy: 1, total: 4 }, { healthy: 1, total: 10 }, { healthy: 1, total: 10 }], [36, 36, 14, 14], 'normalised'],
    ['four priorities, only P3 healthy', [{ healthy: 0, total: 2 }, { healthy: 0, total: 3 }, { healthy: 0, total: 0 }, { healthy: 2, total: 2 }], [0, 0, 0, 100], 'ok'],
  ] as const)('%s', (_why, levels, expected, status) => {
    const result = priorityLoad(levels);
    expect(result.loads).toEqual(expected);
    expect(result.status).toBe(status);
  });

  test('all unhealthy: every load 0 and a reason', () => {
    const result = priorityLoad([{ healthy: 0, total: 3 }, { healthy: 0, total: 0 }, { healthy: 0, total: 1 }]);
    expect(result.loads).toEqual([0, 0, 0]);
    expect(result.status).toBe('no-healthy-endpoints');
    expect(result.explain.map((e) => e.reason)).toEqual([
      'P0 has 0/3 healthy (0% health): takes 0%; no priority has a healthy endpoint',
      'P1 has no endpoints: takes 0%',
      'P2 has 0/1 healthy (0% health): takes 0%; no priority has a healthy endpoint',
    ]);
  });

  test('no priorities at all', () => {
    expect(priorityLoad([])).toEqual({ loads: [], status: 'no-healthy-endpoints', explain: [] });
  });

  test('the overprovisioning factor is configurable', () => {
    expect(priorityLoad([pct(50), pct(100)], { overprovisioningFactor: 1 }).loads).toEqual([50, 50]);
  });

  test('explain says who takes what and where the rest goes', () => {
    expect(priorityLoad([{ healthy: 2, total: 2 }, { healthy: 1, total: 1 }]).explain).toEqual([
      { priority: 0, healthy: 2, total: 2, health: 100, load: 100, reason: 'P0 has 2/2 healthy: takes 100%' },
      { priority: 1, healthy: 1, total: 1, health: 100, load: 0, reason: 'P1 has 1/1 healthy: takes 0%, higher priorities take 100%' },
    ]);
    expect(priorityLoad([{ healthy: 1, total: 3 }, { healthy: 0, total: 0 }, { healthy: 2, total: 2 }]).explain.map((e) => e.reason)).toEqual([
      // Envoy floors the health score: 140 × 1 / 3 = 46.67 → 46.
      'P0 has 1/3 healthy (46% health): takes 46%, spills 54% to P2',
      'P1 has no endpoints: takes 0%',
      'P2 has 2/2 healthy: takes 54%',
    ]);
    expect(priorityLoad([{ healthy: 1, total: 4 }, { healthy: 1, total: 4 }]).explain[0]?.reason)
      .toBe('P0 has 1/4 healthy (35% health): takes 50%, spills 50% to P1; scaled up because total health is 70% < 100%');
  });
});

describe('priorityLoad, properties (seeded)', () => {
  const random = mulberry32(0x15_7e_05);
  const int = (max: number) => Math.floor(random() * (max + 1));
  const cases = Array.from({ length: 3000 }, () => Array.from({ length: 1 + int(3) }, () => {
    const total = int(12);
    return { healthy: int(total), total };
  }));

  test('loads are integers in 0..100 that sum to 100 when anything is healthy, else all 0', () => {
    for (const levels of cases) {
      const { loads, status } = priorityLoad(levels);
      const anyHealthy = levels.some((l) => l.healthy > 0);
      for (const load of loads) expect(Number.isInteger(load) && load >= 0 && load <= 100).toBe(true);
      expect(loads.reduce((a, b) => a + b, 0)).toBe(anyHealthy ? 100 : 0);
      expect(status === 'no-healthy-endpoints').toBe(!anyHealthy);
    }
  });

  test('a fully healthy priority never spills; a priority with no health never takes load', () => {
    for (const levels of cases) {
      const { loads, explain } = priorityLoad(levels);
      const full = explain.findIndex((e) => e.health === 100);
      if (full >= 0) expect(loads.slice(full + 1).every((l) => l === 0)).toBe(true);
      explain.forEach((e) => { if (e.health === 0) expect(e.load).toBe(0); });
    }
  });

  test('rounding stays within one point of the exact share, and P0 takes exactly its health when not normalised', () => {
    for (const levels of cases) {
      const { loads, explain, status } = priorityLoad(levels);
      if (status === 'no-healthy-endpoints') continue;
      const total = Math.min(100, explain.reduce((a, e) => a + e.health, 0));
      let left = 100;
      explain.forEach((e, i) => {
        const exact = Math.min(left, (e.health * 100) / total);
        left -= exact;
        expect(Math.abs((loads[i] ?? 0) - exact)).toBeLessThan(1);
      });
      if (status === 'ok') expect(loads[0]).toBe(explain[0]?.health);
    }
  });
});

describe('healthCounts', () => {
  test('counts endpoints per priority P0..P3, gateways included', () => {
    const service: ServiceLocalities = {
      localities: [
        { region: 'us', zone: 'a', cluster: 'east', priority: 0, endpoints: [
          { address: '10.0.0.1:80', healthy: true, weight: 1, kind: 'local' },
          { address: '10.0.0.2:80', healthy: false, weight: 1, kind: 'local' },
        ] },
        { region: 'us', zone: 'a', cluster: 'west', priority: 2, endpoints: [
          { address: '127.0.2.1:15443', healthy: true, weight: 2, kind: 'gateway', sni: 'r.s.svc.west.isthmus' },
        ] },
        { region: 'us', zone: 'b', cluster: 'west', priority: 2, endpoints: [
          { address: '127.0.2.2:15443', healthy: true, weight: 2, kind: 'gateway', sni: 'r.s.svc.west.isthmus' },
        ] },
      ],
    };
    expect(healthCounts(service)).toEqual([{ healthy: 1, total: 2 }, { healthy: 0, total: 0 }, { healthy: 2, total: 2 }, { healthy: 0, total: 0 }]);
    expect(priorityLoad(healthCounts(service)).loads).toEqual([70, 0, 30, 0]);
  });
});

