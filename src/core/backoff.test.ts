import { expect, test } from 'vitest';
import { Backoff, backoffDelay } from './backoff.js';

const opts = { initialMs: 100, maxMs: 1000 };

test.each([
  // attempt, random, delay: the upper half of min(max, initial · 2^(attempt-1))
  [1, 0, 50], [1, 0.999999, 100],
  [2, 0, 100], [2, 0.5, 150],
  [3, 0, 200], [4, 0, 400],
  [5, 0, 500], [5, 0.999999, 1000], // capped at 1000
  [60, 0.5, 750], // no overflow however long it has been failing
])('attempt %i with random %d waits %i ms', (attempt, random, delay) => {
  expect(backoffDelay(attempt, { ...opts, random: () => random })).toBe(delay);
});

test('Backoff grows after each failure and starts again after a success', () => {
  const backoff = new Backoff({ ...opts, random: () => 0 });
  expect([backoff.next(), backoff.next(), backoff.next()]).toEqual([50, 100, 200]);
  backoff.reset();
  expect(backoff.next()).toBe(50);
});

test('the delays of many processes failing together are spread, not identical', () => {
  const delays = new Set(Array.from({ length: 50 }, () => backoffDelay(3, opts)));
  expect(delays.size).toBeGreaterThan(10);
  for (const d of delays) expect(d).toBeGreaterThanOrEqual(200);
  for (const d of delays) expect(d).toBeLessThanOrEqual(400);
});
