import { describe, expect, test } from 'vitest';
import { decayMs, endpointLoad, forgetLatency, loadCost, requestEnded, requestStarted } from './peak-ewma.js';

const answered = (latencies: number[], everyMs: number) => {
  const load = endpointLoad();
  let now = 0;
  for (const latency of latencies) {
    now += everyMs;
    requestStarted(load);
    requestEnded(load, latency, true, now);
  }
  return { load, now };
};

describe('peak-EWMA of one endpoint', () => {
  test('an unmeasured endpoint costs its queue only: 1 ms × (outstanding + 1) / weight', () => {
    const load = endpointLoad();
    expect(loadCost(load, 1, 0)).toBe(1);
    requestStarted(load);
    requestStarted(load);
    expect(loadCost(load, 1, 0)).toBe(3);
    expect(loadCost(load, 3, 0)).toBe(1);
  });

  test('a slower answer takes over at once (the peak); faster ones pull it down slowly', () => {
    const { load, now } = answered([3, 3, 400], 100);
    expect(load.ewmaMs).toBe(400);
    requestStarted(load);
    requestEnded(load, 3, true, now + 100);
    // Weight of the old value: e^(−100/10000) ≈ 0.990.
    expect(load.ewmaMs).toBeCloseTo(400 * Math.exp(-100 / decayMs) + 3 * (1 - Math.exp(-100 / decayMs)), 6);
    expect(load.ewmaMs).toBeGreaterThan(390);
  });

  test('a failure counts as outstanding no more, and can raise the estimate but never lower it', () => {
    const { load, now } = answered([200], 100);
    requestStarted(load);
    requestEnded(load, 1, false, now + 10);
    expect(load).toMatchObject({ ewmaMs: 200, stampMs: now, outstanding: 0 });
    requestStarted(load);
    requestEnded(load, 2000, false, now + 20);
    expect(load.ewmaMs).toBe(2000);
  });

  test('unused, the estimate decays towards 0 with τ = 10 s, so a slow endpoint is tried again', () => {
    const { load, now } = answered([400], 100);
    expect(loadCost(load, 1, now)).toBeCloseTo(401, 6);
    expect(loadCost(load, 1, now + decayMs)).toBeCloseTo(400 / Math.E + 1, 6);
    // Next to an endpoint in use that answers in 3 ms (its estimate fresh at every read), the
    // unused 400 ms one is cheaper again after τ × ln(400/3) ≈ 49 s.
    const fastAt = (at: number) => ({ ...endpointLoad(), ewmaMs: 3, stampMs: at });
    const crossing = [40_000, 45_000, 50_000, 55_000].map((t) => loadCost(load, 1, now + t) < loadCost(fastAt(now + t), 1, now + t));
    expect(crossing).toEqual([false, false, true, true]);
  });

  test('an endpoint back in service starts from nothing: its outage is forgotten, and attempts sent before its return are not measured', () => {
    // A hung gateway: the attempts in flight when it stopped are answered when it resumes, 8 s late.
    const { load, now } = answered([3, 3], 100);
    requestStarted(load);
    requestStarted(load);
    requestEnded(load, 8000, true, now + 8000);
    expect(load.ewmaMs).toBe(8000);
    // Left that way, it costs more than a 3 ms peer for τ × ln(8000/3) ≈ 79 s.
    expect(loadCost(load, 1, now + 8000 + 60_000)).toBeGreaterThan(loadCost({ ...endpointLoad(), ewmaMs: 3, stampMs: now + 68_000 }, 1, now + 68_000));
    forgetLatency(load, now + 8001);
    expect(loadCost(load, 1, now + 8001)).toBe(2); // its queue only: the one attempt still outstanding
    // The other attempt from before the return ends late: it counts as done, not as a measurement.
    requestEnded(load, 8002, true, now + 8002);
    expect(load).toMatchObject({ ewmaMs: 0, outstanding: 0 });
    // Attempts sent after the return are measured as usual.
    requestStarted(load);
    requestEnded(load, 4, true, now + 8010);
    expect(load.ewmaMs).toBe(4);
  });

  test('outstanding never goes below 0 (an end without a start)', () => {
    const load = endpointLoad();
    requestEnded(load, 5, true, 1);
    expect(load.outstanding).toBe(0);
  });
});
