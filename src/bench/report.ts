import { formatTable } from '../cli/output.js';
import type { CpuSpent } from './cpu-snapshot.js';
import type { OpenLoopResult } from './open-loop.js';
import type { ScenarioName } from './targets.js';

/** One measured point as the runner hands it over. */
export interface MeasuredPoint {
  scenario: ScenarioName;
  result: OpenLoopResult;
  /** CPU spent during the measured window, last answers drained. */
  cpu: CpuSpent;
}

export interface Row {
  scenario: ScenarioName;
  rate: number;
  achievedRps: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Chain minus baseline at the same rate, same run; undefined for the baseline itself. */
  addedP50Ms: number | undefined;
  addedP99Ms: number | undefined;
  cpuSecondsPer1000: number;
  addedCpuSecondsPer1000: number | undefined;
  generatorCpuSecondsPer1000: number;
  /** CPU seconds per second used by processes outside the bench and its mesh (see CpuSpent.other). */
  otherCpuPerSecond: number;
  etcdCpuSeconds: number;
  sendLagP99Ms: number;
  requests: number;
  errors: number;
  failures: Record<string, number>;
}

/**
 * The peer chain's figures from PERF-NOTES.md. Never measured by this bench: shown beside our
 * numbers so a reader sees the target, and labelled so nobody mistakes them for this run's.
 */
export const peerReference = {
  label: 'reference, measured elsewhere on this kind of machine, not in this run (PERF-NOTES.md, 2026-11-25)',
  crossCluster: {
    chain: 'nginx 1.22 → HAProxy 2.6 (SNI passthrough) → nginx, mTLS, 1 KiB responses, one process per proxy',
    rate: 1000, addedP50Ms: [0.25, 0.30], addedP99Ms: [0.9, 1.4], cpuSecondsPer1000: [0.17, 0.19],
  },
  sameCluster: { chain: 'nginx → nginx', rate: 1000, addedP50Ms: [0.21, 0.23], addedP99Ms: [0.4, 0.7] },
} as const;

/** Pure: turns measured points into rows, "added" taken against the baseline of the same rate. */
export function buildRows(points: MeasuredPoint[]): Row[] {
  const rows = points.map((p): Row => {
    const r = p.result;
    const answered = r.ok + r.failed;
    return {
      scenario: p.scenario, rate: r.rate,
      achievedRps: r.ok / r.elapsedSeconds,
      p50Ms: r.latency.percentile(50), p99Ms: r.latency.percentile(99), maxMs: r.latency.max(),
      addedP50Ms: undefined, addedP99Ms: undefined,
      cpuSecondsPer1000: answered === 0 ? Number.NaN : (p.cpu.mesh / answered) * 1000,
      addedCpuSecondsPer1000: undefined,
      generatorCpuSecondsPer1000: answered === 0 ? Number.NaN : (p.cpu.generator / answered) * 1000,
      otherCpuPerSecond: p.cpu.other / p.cpu.seconds,
      etcdCpuSeconds: p.cpu.etcd,
      sendLagP99Ms: r.sendLag.percentile(99),
      requests: r.scheduled, errors: r.failed, failures: r.failures,
    };
  });
  for (const row of rows) {
    if (row.scenario === 'baseline') continue;
    const base = rows.find((b) => b.scenario === 'baseline' && b.rate === row.rate);
    if (!base) continue;
    row.addedP50Ms = row.p50Ms - base.p50Ms;
    row.addedP99Ms = row.p99Ms - base.p99Ms;
    row.addedCpuSecondsPer1000 = row.cpuSecondsPer1000 - base.cpuSecondsPer1000;
  }
  return rows;
}

const ms = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? '—' : v.toFixed(2));
const signed = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? '—' : `${v >= 0 ? '+' : ''}${v.toFixed(2)}`);
const cpu = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? '—' : v.toFixed(3));

export function formatRows(rows: Row[]): string {
  return formatTable(
    ['scenario', 'rate', 'achieved rps', 'p50 ms', 'p99 ms', 'max ms', 'added p50', 'added p99', 'CPU s/1k req', 'added CPU s/1k', 'errors', 'gen lag p99', 'other CPU/s'],
    rows.map((r) => [
      r.scenario, String(r.rate), r.achievedRps.toFixed(0), ms(r.p50Ms), ms(r.p99Ms), ms(r.maxMs),
      signed(r.addedP50Ms), signed(r.addedP99Ms), cpu(r.cpuSecondsPer1000), cpu(r.addedCpuSecondsPer1000),
      r.errors === 0 ? '0' : `${r.errors} (${Object.entries(r.failures).map(([k, n]) => `${k}: ${n}`).join(', ')})`,
      ms(r.sendLagP99Ms), r.otherCpuPerSecond.toFixed(2),
    ]),
  );
}

export function referenceLines(): string[] {
  const x = peerReference.crossCluster;
  const s = peerReference.sameCluster;
  const range = (r: readonly [number, number], digits = 2) => `${r[0].toFixed(digits)}–${r[1].toFixed(digits)}`;
  return [
    `${peerReference.label}:`,
    `  cross-cluster peer chain (${x.chain}) at ${x.rate} rps: added p50 ${range(x.addedP50Ms)} ms, added p99 ${range(x.addedP99Ms, 1)} ms, CPU of the three proxies ${range(x.cpuSecondsPer1000)} s/1k req`,
    `  same-cluster peer chain (${s.chain}) at ${s.rate} rps: added p50 ${range(s.addedP50Ms)} ms, added p99 ${range(s.addedP99Ms, 1)} ms`,
  ];
}
