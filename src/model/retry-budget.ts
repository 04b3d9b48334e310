/**
 * A retry budget: retries may add at most `percent` of the requests seen over a sliding window,
 * plus a floor of `minRetriesPerSecond` for every second of the window, so that a quiet service
 * can still retry and a failing one cannot multiply its load (Linkerd's retry budget: a retry
 * ratio, a minimum of retries per second and a time-to-live of 10 s; Envoy's retry budget bounds
 * retries by a percentage of active requests the same way).
 *
 *   allowed(window) = percent / 100 × requests(window) + minRetriesPerSecond × windowSeconds
 *
 * A retry is allowed while retries(window) + 1 ≤ allowed(window). Pure arithmetic over a ring of
 * one-second buckets; time is a parameter. One budget per sidecar and destination service.
 */
export interface RetryBudgetConfig {
  percent: number;
  minRetriesPerSecond: number;
}

/** Linkerd's default time-to-live of deposits. */
export const budgetWindowSeconds = 10;

export interface BudgetBucket {
  /** The second (epoch ms / 1000, floored) this bucket counts; buckets of older seconds are stale. */
  second: number;
  requests: number;
  retries: number;
}

/** Retries the window allows in all, given the requests it saw. */
export function retriesAllowed(requests: number, config: RetryBudgetConfig, windowSeconds = budgetWindowSeconds): number {
  return (config.percent / 100) * requests + config.minRetriesPerSecond * windowSeconds;
}

/** May one more retry go, with `requests` and `retries` counted in the window? */
export function budgetAllows(requests: number, retries: number, config: RetryBudgetConfig, windowSeconds = budgetWindowSeconds): boolean {
  // A hair of tolerance: 0.2 × 5 is 1.0000000000000002 in binary floating point.
  return retries + 1 <= retriesAllowed(requests, config, windowSeconds) + 1e-9;
}

/** The counts of one budget: a ring of `budgetWindowSeconds` buckets. */
export class RetryBudget {
  private readonly buckets: BudgetBucket[] = Array.from({ length: budgetWindowSeconds }, () => ({ second: -1, requests: 0, retries: 0 }));

  constructor(readonly config: Readonly<RetryBudgetConfig>) {}

  /** A request (not a retry) starts: it deposits its share. */
  request(now: number): void {
    this.bucket(now).requests += 1;
  }

  /** Withdraws one retry if the budget allows it; false (and nothing counted) when it does not. */
  tryRetry(now: number): boolean {
    const { requests, retries } = this.totals(now);
    if (!budgetAllows(requests, retries, this.config)) return false;
    this.bucket(now).retries += 1;
    return true;
  }

  totals(now: number): { requests: number; retries: number } {
    const second = Math.floor(now / 1000);
    let requests = 0;
    let retries = 0;
    for (const b of this.buckets) {
      if (b.second > second - budgetWindowSeconds && b.second <= second) {
        requests += b.requests;
        retries += b.retries;
      }
    }
    return { requests, retries };
  }

  private bucket(now: number): BudgetBucket {
    const second = Math.floor(now / 1000);
    const b = this.buckets[second % budgetWindowSeconds] as BudgetBucket;
    if (b.second !== second) {
      b.second = second;
      b.requests = 0;
      b.retries = 0;
    }
    return b;
  }
}
