import { describe, expect, test } from 'vitest';
import { fullBucket, retryAfterSeconds, takeToken, type TokenBucket } from './token-bucket.js';

const config = { ratePerSecond: 5, burst: 5 };

/** Takes at each time in `at` from a full bucket made at 0; the verdicts. */
function run(at: number[]): (true | number)[] {
  let bucket: TokenBucket = fullBucket(config, 0);
  return at.map((now) => {
    const r = takeToken(bucket, config, now);
    bucket = r.bucket;
    return r.allowed ? true : r.retryAfterMs;
  });
}

describe('takeToken', () => {
  test.each([
    ['a burst of the bucket\'s size passes', [0, 0, 0, 0, 0], [true, true, true, true, true]],
    ['one more must wait a token\'s time (200 ms at 5/s)', [0, 0, 0, 0, 0, 0], [true, true, true, true, true, 200]],
    ['a token comes back after 1/rate', [0, 0, 0, 0, 0, 200], [true, true, true, true, true, true]],
    ['half a token waits for the other half', [0, 0, 0, 0, 0, 100], [true, true, true, true, true, 100]],
    ['a quiet spell refills only up to the burst', [0, 0, 0, 0, 0, 60_000, 60_000, 60_000, 60_000, 60_000, 60_000], [true, true, true, true, true, true, true, true, true, true, 200]],
    ['a steady 5/s always passes', [0, 200, 400, 600, 800, 1000, 1200], [true, true, true, true, true, true, true]],
  ] as [string, number[], (true | number)[]][])('%s', (_name, at, expected) => {
    expect(run(at)).toEqual(expected);
  });

  test('a clock going backwards adds nothing', () => {
    const r = takeToken({ tokens: 0.5, at: 1000 }, config, 900);
    expect(r.allowed).toBe(false);
  });
});

test.each([[1, 1], [200, 1], [1000, 1], [1001, 2], [0, 1]])('Retry-After for %i ms is %i s', (ms, seconds) => {
  expect(retryAfterSeconds(ms)).toBe(seconds);
});
