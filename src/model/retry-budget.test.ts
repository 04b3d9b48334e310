import { describe, expect, test } from 'vitest';
import { budgetAllows, retriesAllowed, RetryBudget } from './retry-budget.js';

describe('retriesAllowed / budgetAllows', () => {
  // requests, retries so far, percent, floor per second → may one more retry go?
  const table: [number, number, number, number, boolean][] = [
    [0, 0, 20, 0, false], // nothing deposited, no floor
    [4, 0, 20, 0, false], // 0.8 of a retry
    [5, 0, 20, 0, true], // exactly 1
    [5, 1, 20, 0, false],
    [100, 19, 20, 0, true],
    [100, 20, 20, 0, false],
    [0, 0, 20, 1, true], // the floor: 1/s × 10 s
    [0, 9, 20, 1, true],
    [0, 10, 20, 1, false],
    [100, 29, 20, 1, true], // 20 + 10
    [100, 30, 20, 1, false],
    [10, 10, 100, 0, false], // 100%: one retry per request at most
    [10, 9, 100, 0, true],
  ];
  test.each(table)('%s requests, %s retries, percent %s, floor %s/s → %s', (requests, retries, percent, min, expected) => {
    expect(budgetAllows(requests, retries, { percent, minRetriesPerSecond: min })).toBe(expected);
  });

  test('the allowance is the share of requests plus the floor for the window', () => {
    expect(retriesAllowed(150, { percent: 20, minRetriesPerSecond: 5 })).toBe(30 + 50);
  });
});

describe('RetryBudget over time', () => {
  test('an outage: 1000 requests with every one wanting 2 retries get at most 20% + floor', () => {
    const budget = new RetryBudget({ percent: 20, minRetriesPerSecond: 0 });
    let retries = 0;
    for (let i = 0; i < 1000; i += 1) {
      const now = i * 5; // 200 requests a second, 5 s in all (within one window)
      budget.request(now);
      for (let r = 0; r < 2; r += 1) if (budget.tryRetry(now)) retries += 1;
    }
    expect(retries).toBe(200);
  });

  test('deposits expire after the 10 s window, so an old burst of requests does not pay for retries later', () => {
    const budget = new RetryBudget({ percent: 50, minRetriesPerSecond: 0 });
    for (let i = 0; i < 100; i += 1) budget.request(0);
    expect(budget.tryRetry(9_999)).toBe(true);
    expect(budget.totals(9_999)).toEqual({ requests: 100, retries: 1 });
    expect(budget.totals(10_000)).toEqual({ requests: 0, retries: 1 });
    expect(budget.tryRetry(10_000)).toBe(false);
  });

  test('a denied retry is not counted', () => {
    const budget = new RetryBudget({ percent: 20, minRetriesPerSecond: 0 });
    budget.request(0);
    expect(budget.tryRetry(0)).toBe(false);
    expect(budget.totals(0).retries).toBe(0);
  });
});
