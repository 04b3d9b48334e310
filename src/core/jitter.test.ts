import { describe, expect, test } from 'vitest';
import { jitteredInterval, jitteredMs } from './jitter.js';

describe('jitteredMs', () => {
  test.each([
    [1000, 0.1, 0, 900], [1000, 0.1, 0.5, 1000], [1000, 0.1, 0.9999, 1100], [30_000, 0.2, 0.25, 27_000], [1000, 0, 0.9, 1000], [1000, 0.9, 0, 500],
  ])('%d ms, jitter %d, draw %d: %d ms', (interval, jitter, draw, expected) => {
    expect(jitteredMs(interval, jitter, () => draw)).toBe(expected);
  });
});

describe('jitteredInterval', () => {
  test('runs the work again and again, and never after stop()', async () => {
    let runs = 0;
    const periodic = jitteredInterval(() => { runs += 1; }, 20);
    const deadline = Date.now() + 5000;
    while (runs < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(runs).toBeGreaterThanOrEqual(3);
    periodic.stop();
    const stoppedAt = runs;
    await new Promise((r) => setTimeout(r, 100));
    expect(runs).toBe(stoppedAt);
  });
});
