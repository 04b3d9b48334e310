import { describe, expect, test } from 'vitest';
import { add, bucketBound, bucketCount, bucketOf, countAbove, quantile, record, subtract, total, type Buckets } from './latency-histogram.js';

const fill = (values: number[]): Buckets => {
  const b: Buckets = [];
  for (const v of values) record(b, v);
  return b;
};

describe('latency histogram', () => {
  test.each([
    [0, 0], [0.05, 0], [0.0501, 1], [0.1, 4], [0.1001, 5], [1, 18], [250, 50], [1e9, bucketCount - 1],
  ])('%f ms falls in bucket %i, whose bounds hold it', (ms, bucket) => {
    expect(bucketOf(ms)).toBe(bucket);
    if (bucket > 0) expect(ms).toBeGreaterThan(bucketBound(bucket - 1));
    expect(ms).toBeLessThanOrEqual(bucketBound(bucket));
  });

  test('every bucket boundary maps to its own bucket and the next value up to the next', () => {
    for (let i = 0; i < bucketCount - 1; i += 1) {
      expect(bucketOf(bucketBound(i))).toBe(i);
      expect(bucketOf(bucketBound(i) * 1.0001)).toBe(i + 1);
    }
  });

  test('quantiles read back within one bucket (19%) of the exact nearest-rank value', () => {
    const values = Array.from({ length: 1000 }, (_, i) => 0.2 + ((i * 7919) % 1000) * 0.5);
    const sorted = [...values].sort((a, b) => a - b);
    const b = fill(values);
    for (const q of [0.01, 0.5, 0.9, 0.99, 1]) {
      const exact = sorted[Math.ceil(q * sorted.length) - 1] as number;
      const read = quantile(b, q) as number;
      expect(Math.abs(read - exact) / exact).toBeLessThan(0.19);
    }
  });

  test('an empty histogram has no quantile and nothing above any threshold', () => {
    expect(quantile([], 0.5)).toBeNull();
    expect(countAbove([], 1)).toBe(0);
  });

  test('counts above a threshold: whole buckets exactly, the straddling one in proportion', () => {
    const b = fill([1, 1, 1, 10, 10, 100]);
    expect(total(b)).toBe(6);
    expect(countAbove(b, 0.5)).toBe(6);
    expect(countAbove(b, 50)).toBeCloseTo(1, 5);
    expect(countAbove(b, 1000)).toBe(0);
    const straddle = countAbove(b, 9.5);
    expect(straddle).toBeGreaterThan(1);
    expect(straddle).toBeLessThan(3);
  });

  test('histograms add and subtract bucket by bucket; a counter that went down counts from zero', () => {
    const a = fill([1, 2, 3]);
    const b = fill([2, 300]);
    const sum = add([...a], b);
    expect(total(sum)).toBe(5);
    expect(subtract(sum, a)).toEqual(subtract(fill([2, 300]), []));
    expect(total(subtract(a, sum))).toBe(total(a));
  });

  test('the open last bucket answers "at least" its lower bound', () => {
    const b = fill([1e9]);
    expect(quantile(b, 0.5)).toBeCloseTo(bucketBound(bucketCount - 2), 0);
  });
});
