import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { StallSentinel, stallsBetween } from './stall-sentinel.js';

describe('stallsBetween', () => {
  const stalls = [{ at: 100, lateMs: 6 }, { at: 200, lateMs: 24 }, { at: 300, lateMs: 11 }];
  test.each([
    [0, 1000, { count: 3, maxMs: 24, totalMs: 41 }],
    [150, 300, { count: 2, maxMs: 24, totalMs: 35 }],
    [201, 299, { count: 0, maxMs: 0, totalMs: 0 }],
    [100, 100, { count: 1, maxMs: 6, totalMs: 6 }],
  ])('between %d and %d', (from, to, expected) => {
    expect(stallsBetween(stalls, from, to)).toEqual(expected);
  });
});

describe('the stall sentinel process', () => {
  test('reports a stop of the whole process as one stall about as long, and stops when asked', async () => {
    const sentinel = await StallSentinel.start();
    try {
      await new Promise((r) => setTimeout(r, 300));
      const stoppedAt = Date.now();
      // What a machine-wide stall is, seen from inside the sentinel: it is not run for a while.
      process.kill(sentinel.pid, 'SIGSTOP');
      await new Promise((r) => setTimeout(r, 150));
      process.kill(sentinel.pid, 'SIGCONT');
      const deadline = Date.now() + 5000;
      while (sentinel.between(stoppedAt, Date.now()).maxMs < 100 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      const seen = sentinel.between(stoppedAt, Date.now());
      expect(seen.maxMs).toBeGreaterThanOrEqual(130);
      expect(seen.maxMs).toBeLessThan(5000);
    } finally {
      await sentinel.stop();
    }
    expect(() => process.kill(sentinel.pid, 0)).toThrow();
  });
});

describe('the sentinel\'s priority', () => {
  test('is raised in a session of its own: this process\'s scheduling group keeps its nice value', async () => {
    const group = () => readFileSync(`/proc/${process.pid}/autogroup`, 'utf8');
    const before = group();
    const sentinel = await StallSentinel.start();
    try {
      expect(readFileSync(`/proc/${sentinel.pid}/stat`, 'utf8').split(') ')[1]?.split(' ')[3]).toBe(String(sentinel.pid)); // its own session (field 6 of stat)
      expect(group()).toBe(before);
      if (sentinel.priorityRaised) expect(readFileSync(`/proc/${sentinel.pid}/autogroup`, 'utf8')).toMatch(/nice -20/);
    } finally {
      await sentinel.stop();
    }
  });
});
