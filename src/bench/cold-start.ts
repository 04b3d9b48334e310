import { formatTable } from '../cli/output.js';
import type { OpenLoopResult } from './open-loop.js';
import type { Side } from './targets.js';

/**
 * Issue 9's cold-start target: a fresh mesh given 500 requests/s cross-cluster keeps p99 under
 * 50 ms over its first 5 s. Absolute, not a ratio: the peer chain is measured the same way beside
 * it so a reader can tell the machine's share from ours.
 */
export const coldStartP99TargetMs = 50;

/** One chain's first seconds of traffic, measured from the first request it ever carried at that rate. */
export interface ColdPoint {
  label: string;
  side: Side;
  result: OpenLoopResult;
}

export interface ColdRow {
  label: string;
  side: Side;
  rate: number;
  seconds: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  errors: number;
  failures: Record<string, number>;
  /** Only ours has a target; the peer's row is there for comparison. */
  verdict: 'met' | 'missed' | 'no target';
}

export function coldRows(points: readonly ColdPoint[]): ColdRow[] {
  return points.map(({ label, side, result }) => {
    const p99Ms = result.latency.percentile(99);
    // Errors count as misses: a request that failed during the start is worse than a slow one.
    const met = result.failed === 0 && p99Ms < coldStartP99TargetMs;
    return {
      label, side, rate: result.rate, seconds: result.elapsedSeconds,
      p50Ms: result.latency.percentile(50), p99Ms, maxMs: result.latency.max(),
      errors: result.failed, failures: result.failures,
      verdict: side === 'isthmus' ? (met ? 'met' : 'missed') : 'no target',
    };
  });
}

const ms = (v: number) => (Number.isNaN(v) ? '—' : v.toFixed(2));

export function formatColdRows(rows: readonly ColdRow[]): string {
  return formatTable(
    ['cold start', 'rate', 'p50 ms', 'p99 ms', 'max ms', 'errors', `target p99 < ${coldStartP99TargetMs} ms`],
    rows.map((r) => [
      r.label, String(r.rate), ms(r.p50Ms), ms(r.p99Ms), ms(r.maxMs),
      r.errors === 0 ? '0' : `${r.errors} (${Object.entries(r.failures).map(([k, n]) => `${k}: ${n}`).join(', ')})`,
      r.verdict === 'no target' ? '—' : r.verdict,
    ]),
  );
}
