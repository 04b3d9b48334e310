import { getHeapSpaceStatistics } from 'node:v8';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { HeapTrim, lowMemoryCollection } from './heap-trim.js';
import { createLogger } from './log.js';

const logger = createLogger({ name: 'test', level: 'silent' });

/** A HeapTrim whose collection only records when it ran. */
function counted(settleMs: number, minIntervalMs: number) {
  const ranAt: number[] = [];
  const trim = new HeapTrim({ logger, settleMs, minIntervalMs, minGrowthBytes: 0, collect: async () => { ranAt.push(performance.now()); } });
  return { trim, ranAt };
}

describe('HeapTrim', () => {
  it('runs once after a burst of requests, when the burst has settled', async () => {
    const { trim, ranAt } = counted(50, 0);
    const start = performance.now();
    let lastRequest = 0;
    for (let i = 0; i < 5; i++) {
      trim.request('catalog');
      lastRequest = performance.now();
      await sleep(10);
    }
    await sleep(400);
    expect(ranAt).toHaveLength(1);
    // Not before the burst was over: the pause must not land in the middle of it.
    expect(ranAt[0]! - lastRequest).toBeGreaterThanOrEqual(45);
    expect(ranAt[0]! - start).toBeGreaterThanOrEqual(90);
    trim.stop();
  });

  it('keeps a request made within the least interval and runs it at the interval\'s end', async () => {
    const { trim, ranAt } = counted(10, 300);
    trim.request('first');
    await sleep(100);
    expect(ranAt).toHaveLength(1);
    trim.request('second');
    trim.request('third');
    await sleep(100);
    // Still inside the 300 ms after the first trim.
    expect(ranAt).toHaveLength(1);
    await sleep(500);
    expect(ranAt).toHaveLength(2);
    expect(ranAt[1]! - ranAt[0]!).toBeGreaterThanOrEqual(295);
    trim.stop();
  });

  it('gives malloc\'s free pages back after each collection, once the collection has freed them', async () => {
    const order: string[] = [];
    const trim = new HeapTrim({
      logger, settleMs: 10, minIntervalMs: 0, minGrowthBytes: 0,
      collect: async () => { await sleep(20); order.push('collect'); },
      releaseMalloc: () => { order.push('malloc'); return { released: true }; },
    });
    trim.request('catalog');
    await sleep(150);
    trim.request('quiet', { always: true });
    await sleep(150);
    expect(order).toEqual(['collect', 'malloc', 'collect', 'malloc']);
    trim.stop();
  });

  it('does nothing once stopped, and nothing without a request', async () => {
    const { trim, ranAt } = counted(10, 0);
    await sleep(50);
    trim.request('catalog');
    trim.stop();
    trim.request('after stop');
    await sleep(100);
    expect(ranAt).toEqual([]);
  });

  it('survives a collection that fails, and trims again on the next request', async () => {
    let calls = 0;
    const trim = new HeapTrim({ logger, settleMs: 10, minIntervalMs: 0, minGrowthBytes: 0, collect: async () => { calls += 1; if (calls === 1) throw new Error('no inspector'); } });
    trim.request('one');
    await sleep(100);
    trim.request('two');
    await sleep(100);
    expect(calls).toBe(2);
    expect(trim.runs).toBe(1);
    trim.stop();
  });

  it('after the first trim, runs again only once the old generation has grown by minGrowthBytes', async () => {
    let heap = 50_000_000;
    let calls = 0;
    const trim = new HeapTrim({ logger, settleMs: 5, minIntervalMs: 0, minGrowthBytes: 2_000_000, heapBytes: () => heap, collect: async () => { calls += 1; heap -= 3_000_000; } });
    const settle = () => sleep(60);
    trim.request('the first large catalog');
    await settle();
    expect([trim.runs, trim.skipped]).toEqual([1, 0]);
    // One small change: the heap grew by half a megabyte since the trim.
    heap += 500_000;
    trim.request('one change');
    await settle();
    expect([trim.runs, trim.skipped]).toEqual([1, 1]);
    // A burst of changes: 2.5 MB more since the trim, which counts from what it left.
    heap += 2_000_000;
    trim.request('a burst');
    await settle();
    expect([trim.runs, trim.skipped, calls]).toEqual([2, 1, 2]);
    trim.stop();
  });

  it('runs a request made with always whatever the old generation grew (the young generation after load)', async () => {
    const heap = 50_000_000;
    const trim = new HeapTrim({ logger, settleMs: 5, minIntervalMs: 0, minGrowthBytes: 2_000_000, heapBytes: () => heap, collect: async () => undefined });
    const settle = () => sleep(60);
    trim.request('the first large catalog');
    await settle();
    trim.request('one change');
    await settle();
    expect([trim.runs, trim.skipped]).toEqual([1, 1]);
    trim.request('young generation at 8 MB after load', { always: true });
    await settle();
    expect([trim.runs, trim.skipped]).toEqual([2, 1]);
    // always holds for that request only.
    trim.request('one more change');
    await settle();
    expect([trim.runs, trim.skipped]).toEqual([2, 2]);
    trim.stop();
  });
});

describe('lowMemoryCollection', () => {
  it('shrinks a young generation that a burst of allocation grew, which a plain full collection leaves', async () => {
    const newSpace = () => getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')!.space_size;
    // Short-lived objects in quick succession, as a large catalog's parse makes: V8 grows the
    // young generation for them.
    let keep: unknown[] = [];
    for (let round = 0; round < 60; round++) {
      keep = Array.from({ length: 20_000 }, (_, i) => ({ name: `svc-${round}-${i}`, port: i }));
    }
    expect(keep.length).toBe(20_000);
    keep = [];
    const grown = newSpace();
    await lowMemoryCollection();
    // The session disconnects on the next turn of the loop; let it.
    await sleep(10);
    const after = newSpace();
    expect(grown).toBeGreaterThan(2 * 1048576);
    expect(after).toBeLessThan(grown / 2);
  });
});
