import { formatTable } from '../cli/output.js';
import type { CpuSpent } from './cpu-snapshot.js';
import type { OpenLoopResult } from './open-loop.js';
import type { ProxiesSpent } from './proxy-processes.js';
import type { StallSummary } from './stall-sentinel.js';
import { sameDestination, targetLabel, type Destination, type ScenarioName, type Side } from './targets.js';

/** One measured point as the runner hands it over. */
export interface MeasuredPoint {
  scenario: ScenarioName;
  side: Side;
  /** The app that answered: a chain's row is measured against the baseline with the same one. */
  expect: Destination;
  result: OpenLoopResult;
  /** CPU spent during the measured window, last answers drained. */
  cpu: CpuSpent;
  /**
   * The proxies of this point's side on its chain (for a baseline: ours on the chain to the same
   * app, whose CPU is subtracted when `includeOrigin`).
   */
  proxies?: ProxiesSpent | undefined;
  /** Those proxies also serve the apps (our single-process mesh): subtract the baseline's share. */
  proxiesIncludeOrigin?: boolean;
  /** Machine-wide stalls the sentinel saw during the measured window (stall-sentinel.ts). */
  stalls?: StallSummary | undefined;
}

export interface Row {
  /** `baseline hello`, `isthmus same-cluster`, `peer cross-cluster`, ... */
  label: string;
  scenario: ScenarioName;
  side: Side;
  /** The app that answered (a baseline's, or the one the chain ends at). */
  expect: Destination;
  rate: number;
  achievedRps: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /**
   * Chain minus the baseline of the same app at the same rate, same run; undefined for a
   * baseline itself, and for a chain whose app had no baseline measured.
   */
  addedP50Ms: number | undefined;
  addedP99Ms: number | undefined;
  /** CPU of the whole dev up process tree (apps, federation, etcd, our proxies) per 1000 answers. */
  cpuSecondsPer1000: number;
  addedCpuSecondsPer1000: number | undefined;
  /** CPU of this side's proxies on this chain per 1000 answers (nginx/HAProxy or our sidecars and gateway). */
  proxiesCpuSecondsPer1000: number | undefined;
  /** Sum of those proxies' peak RSS (VmHWM) at the end of the point, MB (10^6 bytes). */
  proxiesPeakRssMb: number | undefined;
  proxies: ProxiesSpent['processes'];
  generatorCpuSecondsPer1000: number;
  /** CPU seconds per second used by processes outside the bench and its mesh (see CpuSpent.other). */
  otherCpuPerSecond: number;
  etcdCpuSeconds: number;
  sendLagP99Ms: number;
  /** Machine-wide stalls during the measured window; undefined when no sentinel ran. */
  machineStalls: StallSummary | undefined;
  requests: number;
  /** Requests that got an answer (a success or a counted failure): what per-request figures divide by. */
  answered: number;
  errors: number;
  failures: Record<string, number>;
}

/** Pure: turns measured points into rows, "added" taken against the baseline of the same app and rate. */
export function buildRows(points: MeasuredPoint[]): Row[] {
  const rows = points.map((p): Row => {
    const r = p.result;
    const answered = r.ok + r.failed;
    const proxiesCpu = p.proxies && answered > 0 ? (p.proxies.cpuSeconds / answered) * 1000 : Number.NaN;
    return {
      label: targetLabel(p), scenario: p.scenario, side: p.side, expect: p.expect, rate: r.rate,
      achievedRps: r.ok / r.elapsedSeconds,
      p50Ms: r.latency.percentile(50), p99Ms: r.latency.percentile(99), maxMs: r.latency.max(),
      addedP50Ms: undefined, addedP99Ms: undefined,
      cpuSecondsPer1000: answered === 0 ? Number.NaN : (p.cpu.mesh / answered) * 1000,
      addedCpuSecondsPer1000: undefined,
      proxiesCpuSecondsPer1000: p.side === 'origin' ? undefined : proxiesCpu,
      proxiesPeakRssMb: p.side === 'origin' || !p.proxies ? undefined : p.proxies.peakRssBytes / 1e6,
      proxies: p.proxies?.processes ?? [],
      generatorCpuSecondsPer1000: answered === 0 ? Number.NaN : (p.cpu.generator / answered) * 1000,
      otherCpuPerSecond: p.cpu.other / p.cpu.seconds,
      etcdCpuSeconds: p.cpu.etcd,
      sendLagP99Ms: r.sendLag.percentile(99),
      machineStalls: p.stalls,
      requests: r.scheduled, answered, errors: r.failed, failures: r.failures,
    };
  });
  rows.forEach((row, i) => {
    if (row.scenario === 'baseline') return;
    const baseIndex = rows.findIndex((b) => b.scenario === 'baseline' && b.rate === row.rate && sameDestination(b.expect, row.expect));
    const base = rows[baseIndex];
    if (!base) return;
    row.addedP50Ms = row.p50Ms - base.p50Ms;
    row.addedP99Ms = row.p99Ms - base.p99Ms;
    row.addedCpuSecondsPer1000 = row.cpuSecondsPer1000 - base.cpuSecondsPer1000;
    if (points[i]?.proxiesIncludeOrigin && row.proxiesCpuSecondsPer1000 !== undefined) {
      const basePoint = points[baseIndex] as MeasuredPoint;
      const answered = basePoint.result.ok + basePoint.result.failed;
      const share = basePoint.proxies && answered > 0 ? (basePoint.proxies.cpuSeconds / answered) * 1000 : Number.NaN;
      row.proxiesCpuSecondsPer1000 -= share;
    }
  });
  return rows;
}

const ms = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? '—' : v.toFixed(2));
const signed = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? '—' : `${v >= 0 ? '+' : ''}${v.toFixed(2)}`);
const cpu = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? '—' : v.toFixed(3));
const mb = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? '—' : v.toFixed(1));
const stallText = (s: StallSummary | undefined) => (s === undefined ? '—' : s.count === 0 ? '0' : `${s.count} (max ${s.maxMs.toFixed(0)} ms)`);

export function formatRows(rows: Row[]): string {
  return formatTable(
    ['scenario', 'rate', 'achieved rps', 'p50 ms', 'p99 ms', 'max ms', 'added p50', 'added p99', 'proxies CPU s/1k', 'proxies RSS MB', 'errors', 'gen lag p99', 'other CPU/s', 'machine stalls'],
    rows.map((r) => [
      r.label, String(r.rate), r.achievedRps.toFixed(0), ms(r.p50Ms), ms(r.p99Ms), ms(r.maxMs),
      signed(r.addedP50Ms), signed(r.addedP99Ms), cpu(r.proxiesCpuSecondsPer1000), mb(r.proxiesPeakRssMb),
      r.errors === 0 ? '0' : `${r.errors} (${Object.entries(r.failures).map(([k, n]) => `${k}: ${n}`).join(', ')})`,
      ms(r.sendLagP99Ms), r.otherCpuPerSecond.toFixed(2), stallText(r.machineStalls),
    ]),
  );
}

/**
 * Each proxy's own CPU per answered request, in µs, for every chain and rate: the chain's
 * "proxies CPU s/1k" taken apart, so that a gap can be traced to the hop that costs it.
 * `oursIncludeOrigin`: our proxies share a process with the sample apps (one-process mesh), whose
 * figure here is then the whole process's, apps included (the chain's figure subtracts them).
 */
export function formatProxyCpu(rows: Row[], oursIncludeOrigin = false): string {
  const chains = rows.filter((r) => r.side !== 'origin' && r.proxies.length > 0);
  const micros = (cpuSeconds: number, answered: number) => (answered > 0 ? ((cpuSeconds / answered) * 1e6).toFixed(0) : '—');
  return [
    `each proxy's CPU per answered request, µs (utime + stime over the measured window)${oursIncludeOrigin ? '; ours is one process with the sample apps here, and its figure includes them' : ''}`,
    formatTable(['scenario', 'rate', 'proxies'], chains.map((r) => [r.label, String(r.rate), r.proxies.map((p) => `${p.name} ${micros(p.cpuSeconds, r.answered)}`).join(', ')])),
  ].join('\n');
}
