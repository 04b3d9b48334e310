import { getHeapSpaceStatistics } from 'node:v8';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { growthFactorFor, YoungGeneration } from './young-generation.js';

const MiB = 1024 * 1024;

/** A YoungGeneration over sizes the test sets, recording the factors it sets and what it is told. */
function simulated(opts: { capBytes?: number; newSpace?: number; external?: number } = {}) {
  const state = { newSpace: opts.newSpace ?? 1 * MiB, external: opts.external ?? 2 * MiB };
  const factors: number[] = [];
  const told: string[] = [];
  let idle = 0;
  const young = new YoungGeneration({
    capBytes: opts.capBytes ?? 8 * MiB, quietMs: 60_000, externalGrowthBytes: 4 * MiB,
    newSpaceBytes: () => state.newSpace, externalBytes: () => state.external,
    setGrowthFactor: (f) => factors.push(f), onQuiet: (reason) => told.push(reason), onIdle: () => { idle += 1; },
  });
  return { young, state, factors, told, idle: () => idle };
}

describe('growthFactorFor', () => {
  it.each([
    [1 * MiB, 8 * MiB, 2],
    [2 * MiB, 8 * MiB, 2],
    [4 * MiB, 8 * MiB, 2], // one more doubling reaches the cap exactly
    [8 * MiB, 8 * MiB, 1],
    [16 * MiB, 8 * MiB, 1], // above the cap (grown before serving): no further growth
    [1 * MiB, 1 * MiB, 1], // a cap at the start size: never grows
  ])('a new space of %i bytes with a cap of %i grows by %i', (bytes, cap, factor) => {
    expect(growthFactorFor(bytes, cap)).toBe(factor);
  });
});

describe('YoungGeneration', () => {
  it('holds the young generation until the process is busy, then lets it double up to the cap, and holds it again once quiet', () => {
    const { young, state, factors } = simulated();
    young.serve();
    // Serving but not busy: held, whatever the process started with.
    expect(factors).toEqual([1]);
    // Four scavenges within a second are not yet busy; the fifth is.
    for (const at of [0, 100, 200, 300]) young.collected(true, at);
    expect(factors).toEqual([1]);
    young.collected(true, 400);
    expect(factors).toEqual([1, 2]);
    state.newSpace = 4 * MiB;
    young.collected(true, 500);
    expect(factors).toEqual([1, 2]);
    state.newSpace = 8 * MiB;
    young.collected(true, 600);
    expect(factors).toEqual([1, 2, 1]);
    young.collected(true, 700);
    expect(factors).toEqual([1, 2, 1]);
    // V8 shrank it (the heap trim's full collection): free to grow again while still busy.
    state.newSpace = 1 * MiB;
    young.collected(false, 800);
    expect(factors).toEqual([1, 2, 1, 2]);
    // An interval with scavenges, then a quiet one: the load is over, held again.
    young.check();
    expect(factors).toEqual([1, 2, 1, 2]);
    young.check();
    expect(factors).toEqual([1, 2, 1, 2, 1]);
    young.stop();
  });

  it('never lets light traffic grow the young generation: scavenges seconds apart are not busy', () => {
    const { young, factors } = simulated();
    young.serve();
    for (let at = 0; at < 60_000; at += 400) young.collected(true, at);
    expect(factors).toEqual([1]);
    young.stop();
  });

  it('tells onQuiet once when no scavenge ran since the last check and the young generation grew fourfold', () => {
    const { young, state, told } = simulated();
    young.serve();
    // One doubling (1 → 2 MiB), then quiet: not worth a pause.
    state.newSpace = 2 * MiB;
    young.collected(true);
    young.check();
    young.check();
    expect(told).toEqual([]);
    state.newSpace = 8 * MiB;
    young.collected(true);
    // Scavenges since the last check: busy, nothing said.
    young.check();
    expect(told).toEqual([]);
    // Quiet since: said once.
    young.check();
    expect(told).toEqual(['young generation at 8 MB after load']);
    young.check();
    expect(told).toHaveLength(1);
    // The trim's own full collection is not activity: still nothing more.
    young.collected(false);
    young.check();
    expect(told).toHaveLength(1);
    // New load, then quiet again, still grown: said again.
    young.collected(true);
    young.check();
    young.check();
    expect(told).toHaveLength(2);
    young.stop();
  });

  it('tells onQuiet of Buffers that grew by externalGrowthBytes, and of nothing at its start size', () => {
    const { young, state, told } = simulated();
    young.serve();
    young.check();
    state.external += 3 * MiB;
    young.check();
    expect(told).toEqual([]);
    state.external += 2 * MiB;
    young.collected(true);
    young.check();
    young.check();
    expect(told).toEqual(['5 MB more Buffers than before the load']);
    // Quiet after the trim, the Buffers still there: they are live, and the base from now on.
    young.check();
    young.collected(true);
    young.check();
    young.check();
    expect(told).toHaveLength(1);
    // A new burst counts from there.
    state.external += 4 * MiB;
    young.collected(true);
    young.check();
    young.check();
    expect(told).toEqual(['5 MB more Buffers than before the load', '4 MB more Buffers than before the load']);
    young.stop();
  });

  it('tells onIdle once per quiet spell that follows collections, whatever they freed, and never while busy', () => {
    const { young, idle, told } = simulated();
    young.serve();
    // Nothing collected since it began to serve: nothing for malloc to give back.
    young.check();
    expect(idle()).toBe(0);
    young.collected(true);
    // Scavenges in this interval: busy.
    young.check();
    expect(idle()).toBe(0);
    young.check();
    expect(idle()).toBe(1);
    // Still quiet, nothing collected since: not again.
    young.check();
    young.check();
    expect(idle()).toBe(1);
    // A full collection (V8's own while idle, or a heap trim's) frees Buffers too, and is no activity.
    young.collected(false);
    young.check();
    expect(idle()).toBe(2);
    // Without growth onQuiet had nothing to say throughout.
    expect(told).toEqual([]);
    young.stop();
  });

  it('holds V8\'s real young generation at the cap under allocation that survives scavenges', async () => {
    const before = newSpace();
    // A cap of twice the present size: one doubling, no more, whatever the allocation below does.
    const young = new YoungGeneration({ capBytes: before * 2 });
    young.serve();
    try {
      const live: { n: number; text: string }[] = [];
      for (let round = 0; round < 40; round++) {
        for (let i = 0; i < 50_000; i++) {
          live.push({ n: i, text: `item ${round}/${i}` });
          if (live.length > 40_000) live.splice(0, 20_000);
        }
        // The observer hears of the collections between rounds.
        await sleep(1);
      }
      expect(newSpace()).toBeLessThanOrEqual(before * 2);
    } finally {
      young.stop();
    }
  });
});

function newSpace(): number {
  return getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? 0;
}
