import { describe, expect, test } from 'vitest';
import { isIsthmusError } from '../core/errors.js';
import {
  ejectedAddresses, isEjected, outlierConfig, outlierState, recordResult, unejectHost, withHosts,
  type OutlierResult, type OutlierState,
} from './outlier.js';
import { mulberry32 } from '../../test/helpers/random.js';

const ok: OutlierResult = { ok: true, kind: 'ok' };
const e5xx: OutlierResult = { ok: false, kind: '5xx' };
const refused: OutlierResult = { ok: false, kind: 'connect-error' };
const hosts = (n: number) => Array.from({ length: n }, (_, i) => `h${i}`);

function record(state: OutlierState, address: string, results: OutlierResult[], now: number): OutlierState {
  return results.reduce((s, r) => recordResult(s, address, r, now), state);
}
const times = (n: number, r: OutlierResult) => Array.from({ length: n }, () => r);

describe('outlierConfig', () => {
  test('defaults: 5 × 5xx, 3 connect errors, 30 s growing to at most 300 s, 50% of the pool', () => {
    expect(outlierConfig()).toEqual({
      consecutive5xx: 5, consecutiveConnectErrors: 3, baseEjectionMs: 30_000, maxEjectionMs: 300_000,
      decayIntervalMs: 10_000, maxEjectionPercent: 50,
    });
    expect(Object.isFrozen(outlierConfig())).toBe(true);
  });

  test.each([
    ['an unknown field', { consecutiveErrors: 5 }],
    ['a threshold of 0', { consecutive5xx: 0 }],
    ['a percentage above 100', { maxEjectionPercent: 101 }],
    ['a cap below the base time', { baseEjectionMs: 60_000, maxEjectionMs: 30_000 }],
  ])('refuses %s with ISTHMUS_ERR_CONFIG_INVALID', (_why, input) => {
    let caught: unknown;
    try { outlierConfig(input); } catch (err) { caught = err; }
    expect(isIsthmusError(caught, 'ISTHMUS_ERR_CONFIG_INVALID')).toBe(true);
  });
});

describe('consecutive errors', () => {
  const start = outlierState(outlierConfig(), hosts(4));

  test.each([
    ['4 × 5xx', times(4, e5xx), false],
    ['5 × 5xx', times(5, e5xx), true],
    ['2 connect errors', times(2, refused), false],
    ['3 connect errors', times(3, refused), true],
    ['4 × 5xx, a success, 4 × 5xx', [...times(4, e5xx), ok, ...times(4, e5xx)], false],
    ['2 connect errors, a success, 2 connect errors', [...times(2, refused), ok, ...times(2, refused)], false],
    ['the two kinds count separately', [...times(2, refused), ...times(4, e5xx)], false],
  ])('%s → ejected: %s', (_why, results, ejected) => {
    expect(isEjected(record(start, 'h0', results, 1_000), 'h0', 1_000)).toBe(ejected);
  });

  test('an ejection lasts base time, ending exactly at its deadline', () => {
    const state = record(start, 'h0', times(3, refused), 1_000);
    expect(isEjected(state, 'h0', 30_999)).toBe(true);
    expect(isEjected(state, 'h0', 31_000)).toBe(false);
    expect(ejectedAddresses(state, 1_000)).toEqual(new Set(['h0']));
  });

  test('results arriving while ejected are ignored: they neither stretch nor stack the ejection', () => {
    const ejected = record(start, 'h0', times(3, refused), 0);
    expect(record(ejected, 'h0', times(10, refused), 5_000)).toBe(ejected);
  });
});

describe('ejection time grows with each ejection and is capped', () => {
  // A host that fails again as soon as it returns: ejected for 30, 60, 90 … s, never over 300 s.
  test('durations of back-to-back ejections', () => {
    let state = outlierState(outlierConfig(), hosts(2));
    let now = 0;
    const durations: number[] = [];
    for (let i = 0; i < 12; i++) {
      state = record(state, 'h0', times(3, refused), now);
      const until = state.hosts.get('h0')?.ejectedUntil ?? 0;
      durations.push((until - now) / 1000);
      now = until;
    }
    expect(durations).toEqual([30, 60, 90, 120, 150, 180, 210, 240, 270, 300, 300, 300]);
  });

  test.each([
    [0, 90], [9_999, 90], [10_000, 60], [20_000, 30], [25_000, 30], [10 * 60_000, 30],
  ])('after two ejections and %i ms back in service, the next one lasts %i s', (healthyFor, seconds) => {
    let state = outlierState(outlierConfig(), hosts(2));
    state = record(state, 'h0', times(3, refused), 0);
    state = record(state, 'h0', times(3, refused), 30_000); // ejected 30 000 → 90 000
    const back = 90_000 + healthyFor;
    state = record(state, 'h0', times(3, refused), back);
    expect(((state.hosts.get('h0')?.ejectedUntil ?? 0) - back) / 1000).toBe(seconds);
  });
});

describe('ejection budget', () => {
  test.each([
    // pool size, maxEjectionPercent, how many of the pool end up ejected when every host fails
    [1, 50, 0], [2, 50, 1], [3, 50, 1], [4, 50, 2], [5, 50, 2], [10, 50, 5],
    [2, 100, 1], [5, 100, 4], [5, 10, 1], [20, 10, 2], [4, 0, 1],
  ])('%i hosts at %i%%: %i ejected at most', (size, maxEjectionPercent, expected) => {
    let state = outlierState(outlierConfig({ maxEjectionPercent }), hosts(size));
    for (const host of hosts(size)) state = record(state, host, times(3, refused), 0);
    expect(ejectedAddresses(state, 0).size).toBe(expected);
  });

  test('a host refused by the budget is ejected on its next error once the budget frees up', () => {
    let state = outlierState(outlierConfig(), hosts(2));
    state = record(state, 'h0', times(3, refused), 0);
    state = record(state, 'h1', times(3, refused), 0);
    expect(isEjected(state, 'h1', 0)).toBe(false);
    state = recordResult(state, 'h1', refused, 30_000); // h0 is back
    expect(isEjected(state, 'h1', 30_000)).toBe(true);
  });

  test('never ejects more than the budget, nor the last host in service (seeded random events)', () => {
    const random = mulberry32(2026);
    let sawEjection = false;
    for (let round = 0; round < 100; round++) {
      const size = 1 + Math.floor(random() * 8);
      const maxEjectionPercent = Math.floor(random() * 101);
      let state = outlierState(outlierConfig({ maxEjectionPercent }), hosts(size));
      let now = 0;
      for (let step = 0; step < 200; step++) {
        now += Math.floor(random() * 2_000);
        const result = random() < 0.7 ? (random() < 0.5 ? refused : e5xx) : ok;
        state = recordResult(state, `h${Math.floor(random() * size)}`, result, now);
        const ejected = ejectedAddresses(state, now).size;
        expect(ejected).toBeLessThanOrEqual(Math.max(1, Math.floor((maxEjectionPercent * size) / 100)));
        expect(ejected).toBeLessThan(size);
        sawEjection ||= ejected > 0;
      }
    }
    expect(sawEjection).toBe(true);
  });
});

describe('state handling', () => {
  test('never mutates the state it was given; a success on a clean host returns it unchanged', () => {
    const state = outlierState(outlierConfig(), hosts(3));
    const after = recordResult(state, 'h0', e5xx, 0);
    expect(state.hosts.get('h0')?.consecutive5xx).toBe(0);
    expect(after.hosts.get('h0')?.consecutive5xx).toBe(1);
    expect(recordResult(state, 'h0', ok, 0)).toBe(state);
  });

  test('withHosts keeps the history of endpoints still present and forgets removed ones', () => {
    let state = record(outlierState(outlierConfig(), hosts(3)), 'h0', times(3, refused), 0);
    state = withHosts(state, ['h0', 'h2', 'h9']);
    expect([...state.hosts.keys()]).toEqual(['h0', 'h2', 'h9']);
    expect(isEjected(state, 'h0', 1)).toBe(true);
    expect(state.hosts.get('h9')?.ejections).toBe(0);
  });
});


describe('unejectHost', () => {
  test('ends an ejection at once but remembers it, so the next one lasts longer', () => {
    const config = outlierConfig({ consecutiveConnectErrors: 1, baseEjectionMs: 30_000, maxEjectionPercent: 100 });
    let state = outlierState(config, ['a:1', 'b:1']);
    state = recordResult(state, 'a:1', { ok: false, kind: 'connect-error' }, 0);
    expect(isEjected(state, 'a:1', 1_000)).toBe(true);
    state = unejectHost(state, 'a:1', 1_000);
    expect(isEjected(state, 'a:1', 1_000)).toBe(false);
    state = recordResult(state, 'a:1', { ok: false, kind: 'connect-error' }, 2_000);
    expect(isEjected(state, 'a:1', 2_000 + 59_000)).toBe(true); // second ejection: 2 × 30 s
    expect(unejectHost(state, 'b:1', 3_000)).toBe(state); // not ejected: unchanged
  });

  test('a reachability check ends only ejections for connect errors, not for 5xx', () => {
    const config = outlierConfig({ consecutive5xx: 1, consecutiveConnectErrors: 1, maxEjectionPercent: 100 });
    let state = outlierState(config, ['a:1', 'b:1', 'c:1']);
    state = recordResult(state, 'a:1', { ok: false, kind: '5xx' }, 0);
    state = recordResult(state, 'b:1', { ok: false, kind: 'connect-error' }, 0);
    state = unejectHost(unejectHost(state, 'a:1', 1_000, 'connect-error'), 'b:1', 1_000, 'connect-error');
    expect(isEjected(state, 'a:1', 1_000)).toBe(true);
    expect(isEjected(state, 'b:1', 1_000)).toBe(false);
  });
});
