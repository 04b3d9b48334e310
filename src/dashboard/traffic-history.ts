import { add, quantile, subtract, total, type Buckets } from '../model/latency-histogram.js';
import type { TrafficRecord } from '../model/records.js';
import { routeKey } from '../model/traffic-report.js';

/** Requests of one route (source cluster → service → destination cluster) over some window. */
export interface RouteWindow {
  from: string;
  namespace: string;
  service: string;
  to: string;
  requests: number;
  errors: number;
  buckets: Buckets;
}

/** Requests a split (of `<namespace>/<service>`) sent to `backend` over some window, every source cluster together. */
export interface SplitWindow {
  namespace: string;
  service: string;
  backend: string;
  requests: number;
}

/**
 * Connections of one TCP service through one source cluster's fixed listeners to one destination
 * cluster over some window (`connections`, `failed`, `closed`, bytes from the app's side), and
 * how many are open at the window's end (from the latest counters, not a difference).
 */
export interface TcpWindow {
  from: string;
  namespace: string;
  service: string;
  to: string;
  connections: number;
  failed: number;
  closed: number;
  sentBytes: number;
  receivedBytes: number;
  open: number;
}

export interface Window {
  /** How much of the asked window the history covers (less while the reader is young). */
  coveredMs: number;
  routes: RouteWindow[];
  splits: SplitWindow[];
  tcp: TcpWindow[];
}

/** A window with nothing in it (no history yet). */
export const emptyWindow: Window = Object.freeze({ coveredMs: 0, routes: [], splits: [], tcp: [] }) as Window;

interface Sample {
  t: number;
  /** Source cluster → its `/traffic/<from>` record at that moment (the mirror's own objects: no copies). */
  records: ReadonlyMap<string, TrafficRecord>;
}

/**
 * The clusters' traffic counters as they were over time, sampled from the `/traffic/` records,
 * so any window up to `retentionMs` can be read as differences (the counters only grow within
 * an epoch). Kept by whoever draws the dashboard: each federation, and `isthmus dash`.
 */
export class TrafficHistory {
  private samples: Sample[] = [];

  constructor(private readonly opts: { resolutionMs: number; retentionMs: number }) {}

  /** Takes over another history's samples (when the retention grows and the resolution with it). */
  adopt(other: TrafficHistory): void {
    this.samples = [...other.samples];
  }

  /** Takes a sample when `resolutionMs` passed since the last one (else replaces the last one). */
  observe(records: readonly TrafficRecord[], now: number): void {
    const sample: Sample = { t: now, records: new Map(records.map((r) => [r.from, r])) };
    const last = this.samples.at(-1);
    const beforeLast = this.samples.at(-2);
    // The newest sample always holds the latest counters; older ones stay at least a resolution apart.
    if (last && beforeLast && now - beforeLast.t < this.opts.resolutionMs) this.samples[this.samples.length - 1] = sample;
    else this.samples.push(sample);
    const oldest = now - this.opts.retentionMs;
    while (this.samples.length > 2 && (this.samples[1] as Sample).t <= oldest) this.samples.shift();
  }

  /** Counts over the last `ms` (or over the history there is): latest counters minus those at the window's start. */
  window(ms: number, now: number): Window {
    const latest = this.samples.at(-1);
    if (!latest) return emptyWindow;
    const base = this.baseline(now - ms) ?? latest;
    return { coveredMs: Math.max(0, latest.t - base.t), routes: difference(latest, base), splits: splitDifference(latest, base), tcp: tcpDifference(latest, base) };
  }

  /**
   * Per-step counts between consecutive samples over the last `ms`, for a time series: one
   * point per sample, each the routes' counts since the previous sample.
   */
  steps(ms: number, now: number): { t: number; seconds: number; routes: RouteWindow[] }[] {
    const out: { t: number; seconds: number; routes: RouteWindow[] }[] = [];
    for (let i = 1; i < this.samples.length; i += 1) {
      const a = this.samples[i - 1] as Sample;
      const b = this.samples[i] as Sample;
      // The newest sample moves with every observation; a sliver of a step would be mostly noise.
      if (b.t < now - ms || b.t - a.t < this.opts.resolutionMs / 2) continue;
      out.push({ t: b.t, seconds: (b.t - a.t) / 1000, routes: difference(b, a) });
    }
    return out;
  }

  /** The newest sample taken at or before `t`; the oldest one if all are younger. */
  private baseline(t: number): Sample | undefined {
    let found: Sample | undefined;
    for (const s of this.samples) {
      if (s.t <= t) found = s;
      else break;
    }
    return found ?? this.samples[0];
  }
}

function difference(later: Sample, earlier: Sample): RouteWindow[] {
  const out: RouteWindow[] = [];
  for (const [from, record] of later.records) {
    const before = earlier.records.get(from);
    // Another epoch is another federation run: its counters started from zero after `earlier`.
    const sameEpoch = before !== undefined && before.epoch === record.epoch;
    const previous = new Map(sameEpoch ? before.routes.map((r) => [`${r.namespace}/${r.service}\u0000${r.to}`, r]) : []);
    for (const r of record.routes) {
      const p = previous.get(`${r.namespace}/${r.service}\u0000${r.to}`);
      const reset = p !== undefined && (r.requests < p.requests || r.errors < p.errors);
      const requests = p && !reset ? r.requests - p.requests : r.requests;
      if (requests === 0) continue;
      out.push({
        from, namespace: r.namespace, service: r.service, to: r.to, requests,
        errors: p && !reset ? r.errors - p.errors : r.errors,
        buckets: p && !reset ? subtract(r.buckets, p.buckets) : [...r.buckets],
      });
    }
  }
  return out;
}

type TcpRow = NonNullable<TrafficRecord['tcp']>[number];
const tcpCounted = ['connections', 'failed', 'closed', 'sentBytes', 'receivedBytes'] as const;

/**
 * The TCP rows' counts between two samples, as difference() does for requests; a row whose
 * counters went back (a reset) counts from zero. `open` is the later sample's own: connections
 * that came, less those that failed or closed, never below zero (connections opened before the
 * federation's epoch began and closed in it would take it there).
 */
function tcpDifference(later: Sample, earlier: Sample): TcpWindow[] {
  const out: TcpWindow[] = [];
  for (const [from, record] of later.records) {
    const before = earlier.records.get(from);
    const sameEpoch = before !== undefined && before.epoch === record.epoch;
    const previous = new Map<string, TcpRow>(sameEpoch ? (before.tcp ?? []).map((r) => [routeKey(r), r]) : []);
    for (const r of record.tcp ?? []) {
      const p = previous.get(routeKey(r));
      const reset = p !== undefined && tcpCounted.some((k) => r[k] < p[k]);
      const delta = (k: typeof tcpCounted[number]) => (p && !reset ? r[k] - p[k] : r[k]);
      const open = Math.max(0, r.connections - r.failed - r.closed);
      const row: TcpWindow = {
        from, namespace: r.namespace, service: r.service, to: r.to,
        connections: delta('connections'), failed: delta('failed'), closed: delta('closed'), sentBytes: delta('sentBytes'), receivedBytes: delta('receivedBytes'), open,
      };
      if (tcpCounted.every((k) => row[k] === 0) && open === 0) continue;
      out.push(row);
    }
  }
  return out;
}

function splitDifference(later: Sample, earlier: Sample): SplitWindow[] {
  const out = new Map<string, SplitWindow>();
  for (const [from, record] of later.records) {
    const before = earlier.records.get(from);
    const sameEpoch = before !== undefined && before.epoch === record.epoch;
    const previous = new Map(sameEpoch ? (before.splits ?? []).map((s) => [`${s.namespace}/${s.service}\u0000${s.backend}`, s.requests]) : []);
    for (const s of record.splits ?? []) {
      const key = `${s.namespace}/${s.service}\u0000${s.backend}`;
      const p = previous.get(key);
      const requests = p !== undefined && s.requests >= p ? s.requests - p : s.requests;
      if (requests === 0) continue;
      const held = out.get(key);
      if (held) held.requests += requests;
      else out.set(key, { namespace: s.namespace, service: s.service, backend: s.backend, requests });
    }
  }
  return [...out.values()];
}

/** Requests `<namespace>/<service>`'s split sent to `backend` in a window (the live split). */
export function splitRequests(splits: readonly SplitWindow[], service: string, backend: string): number {
  let n = 0;
  for (const s of splits) if (s.backend === backend && `${s.namespace}/${s.service}` === service) n += s.requests;
  return n;
}

/** Request statistics of some routes taken together. */
export interface Stats {
  requests: number;
  rps: number;
  successPercent: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
}

export function statsOf(routes: readonly RouteWindow[], seconds: number): Stats & { errors: number; buckets: Buckets } {
  let requests = 0;
  let errors = 0;
  const buckets: Buckets = [];
  for (const r of routes) {
    requests += r.requests;
    errors += r.errors;
    add(buckets, r.buckets);
  }
  const round = (n: number, digits: number) => Math.round(n * 10 ** digits) / 10 ** digits;
  return {
    requests,
    errors,
    buckets,
    rps: seconds > 0 ? round(requests / seconds, 3) : 0,
    successPercent: requests > 0 ? round(100 * (1 - errors / requests), 3) : null,
    // Quantiles come from the latency buckets: requests answered with no latency (none) count too.
    p50Ms: total(buckets) > 0 ? quantile(buckets, 0.5) : null,
    p99Ms: total(buckets) > 0 ? quantile(buckets, 0.99) : null,
  };
}
