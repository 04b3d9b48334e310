import { countAbove, quantile, type Buckets } from './latency-histogram.js';
import type { SloPolicy } from './records.js';

/** A window's requests to one service, every source and destination cluster together. */
export interface SloInput {
  requests: number;
  errors: number;
  buckets: Buckets;
}

export interface SloVerdict {
  observed: { requests: number; successPercent: number | null; latencyMs: number | null };
  /** Null when the window held fewer than `minRequests` requests. */
  burnRate: number | null;
  state: 'ok' | 'violated' | 'no-data';
}

const round = (n: number) => Math.round(n * 1000) / 1000;

/**
 * Burn rate as the SRE workbook defines it: the share of bad requests over the share the
 * objective allows (its error budget). A latency objective "p99 < 250 ms" allows 1% of requests
 * slower than 250 ms; a success objective of 99.9% allows 0.1% failed. With both, the faster
 * burn counts. Above 1 over the objective's window, the objective is missed: "violated".
 * Pure, so every reader of the same counters reaches the same verdict.
 */
export function evaluateSlo(policy: Pick<SloPolicy, 'latency' | 'successPercent' | 'minRequests'>, input: SloInput): SloVerdict {
  const { requests, errors, buckets } = input;
  const observed = {
    requests,
    successPercent: requests > 0 ? round(100 * (1 - errors / requests)) : null,
    latencyMs: policy.latency && requests > 0 ? quantile(buckets, policy.latency.percentile / 100) : null,
  };
  if (requests < policy.minRequests || requests === 0) return { observed, burnRate: null, state: 'no-data' };
  const burns: number[] = [];
  if (policy.successPercent !== undefined) burns.push((errors / requests) / (1 - policy.successPercent / 100));
  if (policy.latency) burns.push((countAbove(buckets, policy.latency.belowMs) / requests) / (1 - policy.latency.percentile / 100));
  const burnRate = burns.length > 0 ? round(Math.max(...burns)) : 0;
  return { observed, burnRate, state: burnRate > 1 ? 'violated' : 'ok' };
}
