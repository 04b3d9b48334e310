import { formatTable } from '../cli/output.js';
import type { OpenLoopResult, SlowAnswer } from './open-loop.js';
import type { Side } from './targets.js';

/**
 * Issue 9's cold-start target: a fresh mesh given 500 requests/s cross-cluster keeps p99 under
 * 50 ms over its first 5 s. Absolute, not a ratio: the peer chain is measured the same way beside
 * it so a reader can tell the machine's share from ours.
 */
export const coldStartP99TargetMs = 50;

/** Answers slower than this are placed in time (ColdRow.slowMoments): half the target. */
export const coldSlowAboveMs = coldStartP99TargetMs / 2;

/** The width of one moment in ColdRow.slowMoments. */
const momentMs = 250;

/** A quarter second of the cold point in which answers over coldSlowAboveMs were due. */
export interface SlowMoment {
  fromS: number;
  toS: number;
  count: number;
  maxMs: number;
}

/** One chain's first seconds of traffic, measured from the first request it ever carried at that rate. */
export interface ColdPoint {
  label: string;
  side: Side;
  result: OpenLoopResult;
  /**
   * Ours: the requests the chain's first hop (the client sidecar) had carried before the point, by
   * its own counter; 0 for a chain as fresh as a mesh just started. Absent when it could not be read.
   */
  carriedBefore?: number;
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
  /**
   * When the slow answers were due, by quarter second: slow ones all in the first moments are the
   * start itself (handshakes, code not yet compiled); a cluster later is a stall of some process.
   */
  slowMoments: SlowMoment[];
  /** ColdPoint.carriedBefore. */
  carriedBefore?: number;
}

/** Slow answers grouped by the quarter second they were due in, in time order. */
export function slowMoments(slow: readonly SlowAnswer[]): SlowMoment[] {
  const moments = new Map<number, SlowMoment>();
  for (const { dueAtMs, ms } of slow) {
    const bin = Math.max(0, Math.floor(dueAtMs / momentMs));
    const moment = moments.get(bin) ?? { fromS: (bin * momentMs) / 1000, toS: ((bin + 1) * momentMs) / 1000, count: 0, maxMs: 0 };
    moment.count += 1;
    moment.maxMs = Math.max(moment.maxMs, ms);
    moments.set(bin, moment);
  }
  return [...moments.values()].sort((a, b) => a.fromS - b.fromS);
}

export function coldRows(points: readonly ColdPoint[]): ColdRow[] {
  return points.map(({ label, side, result, carriedBefore }) => {
    const p99Ms = result.latency.percentile(99);
    // Errors count as misses: a request that failed during the start is worse than a slow one.
    const met = result.failed === 0 && p99Ms < coldStartP99TargetMs;
    return {
      label, side, rate: result.rate, seconds: result.elapsedSeconds,
      p50Ms: result.latency.percentile(50), p99Ms, maxMs: result.latency.max(),
      errors: result.failed, failures: result.failures,
      verdict: side === 'isthmus' ? (met ? 'met' : 'missed') : 'no target',
      slowMoments: slowMoments(result.slow ?? []),
      ...(carriedBefore === undefined ? {} : { carriedBefore }),
    };
  });
}

const ms = (v: number) => (Number.isNaN(v) ? '—' : v.toFixed(2));

export function formatColdRows(rows: readonly ColdRow[]): string {
  const table = formatTable(
    ['cold start', 'rate', 'p50 ms', 'p99 ms', 'max ms', 'errors', `target p99 < ${coldStartP99TargetMs} ms`],
    rows.map((r) => [
      r.label, String(r.rate), ms(r.p50Ms), ms(r.p99Ms), ms(r.maxMs),
      r.errors === 0 ? '0' : `${r.errors} (${Object.entries(r.failures).map(([k, n]) => `${k}: ${n}`).join(', ')})`,
      r.verdict === 'no target' ? '—' : r.verdict,
    ]),
  );
  const when = rows.map((r) => {
    if (r.slowMoments.length === 0) return `  ${r.label}: no answer over ${coldSlowAboveMs} ms`;
    const shown = r.slowMoments.slice(0, 8).map((m) => `${m.fromS.toFixed(2)}–${m.toS.toFixed(2)} s: ${m.count} (max ${m.maxMs.toFixed(0)} ms)`);
    const more = r.slowMoments.length > 8 ? `, and ${r.slowMoments.length - 8} more quarter seconds` : '';
    return `  ${r.label}: answers over ${coldSlowAboveMs} ms were due at ${shown.join(', ')}${more}`;
  });
  const before = rows.filter((r) => r.carriedBefore !== undefined)
    .map((r) => `  ${r.label}: ${r.carriedBefore} request${r.carriedBefore === 1 ? '' : 's'} to that service through the client sidecar before the first${r.carriedBefore === 0 ? ' (a chain no request had crossed)' : ''}`);
  return `${table}\nwhen the slow answers were due, from the first request:\n${when.join('\n')}${before.length > 0 ? `\nbefore the point:\n${before.join('\n')}` : ''}`;
}

/**
 * The sum of a counter's series in Prometheus text, over the label sets that contain `having`
 * (e.g. `destination_service="demo/ledger"`), or over all of them; 0 when there is none (a
 * sidecar's request counter has no series until its first request).
 */
export function counterSum(text: string, name: string, having = ''): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || (line[name.length] !== '{' && line[name.length] !== ' ')) continue;
    if (having !== '' && !line.slice(name.length, line.lastIndexOf('}') + 1).includes(having)) continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(value)) sum += value;
  }
  return sum;
}

/**
 * How many requests to `service` (`<namespace>/<name>`) a sidecar's outbound has carried, from its
 * admin /metrics; undefined if that cannot be read.
 */
export async function requestsCarried(admin: string, service: string): Promise<number | undefined> {
  return await metricSum(admin, 'isthmus_requests_total', `destination_service="${service}"`);
}

/**
 * How many requests reached a sidecar's inbound (every caller, every port), from its admin
 * /metrics; undefined if that cannot be read.
 */
export async function inboundRequests(admin: string): Promise<number | undefined> {
  return await metricSum(admin, 'isthmus_inbound_requests_total');
}

/** The bytes a gateway's routed connections carried, both ways, open ones included (a scrape counts their bytes so far), from its admin /metrics. */
export async function gatewayBytes(admin: string): Promise<number | undefined> {
  return await metricSum(admin, 'isthmus_gateway_bytes_total');
}

async function metricSum(admin: string, name: string, having = ''): Promise<number | undefined> {
  try {
    const res = await fetch(`http://${admin}/metrics`, { signal: AbortSignal.timeout(3000) });
    if (!res.ok) return undefined;
    return counterSum(await res.text(), name, having);
  } catch {
    return undefined;
  }
}
