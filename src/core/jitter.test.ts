import { describe, expect, test } from 'vitest';
import { jitteredMs } from './jitter.js';

describe('jitteredMs', () => {
  test.each([
    [1000, 0.1, 0, 900], [1000, 0.1, 0.5, 1000], [1000, 0.1, 0.9999, 1100], [30_000, 0.2, 0.25, 27_000], [1000, 0, 0.9, 1000], [1000, 0.9, 0, 500],
  ])('%d ms, jitter %d, draw %d: %d ms', (interval, jitter, draw, expected) => {
    expect(jitteredMs(interval, jitter, () => draw)).toBe(expected);
  });
});
