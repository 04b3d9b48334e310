import { describe, expect, test } from 'vitest';
import { decayMs, endpointLoad, forgetLatency, loadCost, requestEnded, requestStarted, staleMs } from './peak-ewma.js';

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

  test('unused, the estimate decays towards 0 with τ = 10 s, and is dropped after 10 s without an answer', () => {
    const { load, now } = answered([400], 100);
    expect(loadCost(load, 1, now)).toBeCloseTo(401, 6);
    expect(loadCost(load, 1, now + staleMs)).toBeCloseTo(400 / Math.E + 1, 6);
    // Next to an endpoint in use that answers in 3 ms (its estimate fresh at every read), the
    // unused 400 ms one stays dearer until its estimate is 10 s old, then costs its queue only:
    // it gets the next request (decay alone would take τ × ln(400/3) ≈ 49 s).
    const fastAt = (at: number) => ({ ...endpointLoad(), ewmaMs: 3, stampMs: at });
    const cheaper = [1_000, 5_000, 9_900, 10_100, 40_000].map((t) => loadCost(load, 1, now + t) < loadCost(fastAt(now + t), 1, now + t));
    expect(cheaper).toEqual([false, false, false, true, true]);
    expect(loadCost(load, 1, now + staleMs + 1)).toBe(1);
  });

  test('the first answer after a stale estimate replaces it; a failure does not', () => {
    const { load, now } = answered([85], 100);
    // Within 10 s a fast answer only pulls the peak down by its time weight.
    const early = { ...load };
    requestStarted(early);
    requestEnded(early, 3, true, now + 5_000);
    expect(early.ewmaMs).toBeCloseTo(85 * Math.exp(-0.5) + 3 * (1 - Math.exp(-0.5)), 6);
    // A failure after 10 s leaves the old estimate (dropped when read) as it was.
    requestStarted(load);
    requestEnded(load, 1, false, now + 12_000);
    expect(load).toMatchObject({ ewmaMs: 85, stampMs: now });
    // An answer after 10 s is the new estimate whole: the endpoint is as cheap as it answers.
    requestStarted(load);
    requestEnded(load, 3, true, now + 12_000);
    expect(load).toMatchObject({ ewmaMs: 3, stampMs: now + 12_000, outstanding: 0 });
  });

  test('an endpoint back in service starts from nothing: its outage is forgotten, and attempts sent before its return are not measured', () => {
    // A hung gateway: the attempts in flight when it stopped are answered when it resumes, 8 s late.
    const { load, now } = answered([3, 3], 100);
    requestStarted(load);
    requestStarted(load);
    requestEnded(load, 8000, true, now + 8000);
    expect(load.ewmaMs).toBe(8000);
    // Left that way, it costs more than a 3 ms peer until the estimate is 10 s old.
    expect(loadCost(load, 1, now + 8000 + 9_000)).toBeGreaterThan(loadCost({ ...endpointLoad(), ewmaMs: 3, stampMs: now + 17_000 }, 1, now + 17_000));
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
