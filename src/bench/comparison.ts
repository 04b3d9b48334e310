import { formatTable } from '../cli/output.js';
import type { Row } from './report.js';
import { sameDestination, type ChainName } from './targets.js';

/** The figures compared for each chain and rate, ours against the peer chain's. */
export type FigureName = 'added p50 ms' | 'added p99 ms' | 'proxies CPU s/1k req' | 'proxies peak RSS MB' | 'p50 ms';

/**
 * Issue 9's targets, as the largest ratio ours/peer that meets them: at 1000 requests/s added
 * p50 ≤ 1.5×, added p99 ≤ 2×, CPU per 1000 requests ≤ 2×; at 2000 requests/s no queueing, read
 * as p50 within 2× of the peer's. Memory has an absolute target (a sidecar ≤ 60 MB with 1,000
 * services), not a ratio, so its ratio is shown without a verdict.
 */
export const ratioTargets: Partial<Record<FigureName, number>> = {
  'added p50 ms': 1.5,
  'added p99 ms': 2,
  'proxies CPU s/1k req': 2,
  'p50 ms': 2,
};

export type Verdict = 'met' | 'missed' | 'no target' | 'no ratio';

export interface Comparison {
  rate: number;
  chain: ChainName;
  figure: FigureName;
  isthmus: number;
  peer: number;
  /** isthmus / peer; NaN when the peer's figure is not above zero (a ratio would mean nothing). */
  ratio: number;
  target: number | undefined;
  verdict: Verdict;
  /**
   * Other processes used more than `busyMachineCpuPerSecond` during either point: they competed
   * for the same cores, so a tail ratio in particular may say more about them than about us.
   */
  busyMachine: boolean;
  /**
   * For a tail figure: the sentinel saw a machine-wide stall of `stallFlagMs` or more during
   * ours, the peer's or the baseline's window at that rate, which alone can decide a p99 of a
   * 5 s window (stall-sentinel.ts).
   */
  machineStall: boolean;
}

/** A machine-wide stall at least this long in either window marks that pair's p99 ratio. */
export const stallFlagMs = 10;

/** CPU s/s of other processes (a 2-core machine has 2) above which a point's tail is suspect. */
export const busyMachineCpuPerSecond = 0.3;

/** Pure. A verdict only where both figures exist, the peer's is above zero and a target is set. */
export function ratioOf(isthmus: number, peer: number, target: number | undefined): { ratio: number; verdict: Verdict } {
  const ratio = Number.isFinite(isthmus) && Number.isFinite(peer) && peer > 0 ? isthmus / peer : Number.NaN;
  if (Number.isNaN(ratio)) return { ratio, verdict: 'no ratio' };
  if (target === undefined) return { ratio, verdict: 'no target' };
  return { ratio, verdict: ratio <= target ? 'met' : 'missed' };
}

const figuresAt = (rate: number): FigureName[] => [
  'added p50 ms', 'added p99 ms', 'proxies CPU s/1k req', 'proxies peak RSS MB',
  // The no-queueing target is set at 2000 requests/s; below that the added figures say it all.
  ...(rate >= 2000 ? ['p50 ms' as const] : []),
];

const value = (row: Row, figure: FigureName): number => {
  switch (figure) {
    case 'added p50 ms': return row.addedP50Ms ?? Number.NaN;
    case 'added p99 ms': return row.addedP99Ms ?? Number.NaN;
    case 'proxies CPU s/1k req': return row.proxiesCpuSecondsPer1000 ?? Number.NaN;
    case 'proxies peak RSS MB': return row.proxiesPeakRssMb ?? Number.NaN;
    case 'p50 ms': return row.p50Ms;
  }
};

/** Pure. Each rate and chain where both ours and the peer's were measured, figure by figure. */
export function compareRows(rows: Row[]): Comparison[] {
  const out: Comparison[] = [];
  const rates = [...new Set(rows.map((r) => r.rate))];
  for (const rate of rates) {
    for (const chain of ['same-cluster', 'cross-cluster'] as const) {
      const ours = rows.find((r) => r.rate === rate && r.scenario === chain && r.side === 'isthmus');
      const peer = rows.find((r) => r.rate === rate && r.scenario === chain && r.side === 'peer');
      if (!ours || !peer) continue;
      // "added" subtracts the p99 of the chain's own baseline, so a stall in its window moves both
      // ratios' terms.
      const base = rows.find((r) => r.rate === rate && r.scenario === 'baseline' && sameDestination(r.expect, ours.expect));
      const longestStall = Math.max(...[ours, peer, base].map((r) => r?.machineStalls?.maxMs ?? 0));
      for (const figure of figuresAt(rate)) {
        const target = ratioTargets[figure];
        out.push({
          rate, chain, figure, isthmus: value(ours, figure), peer: value(peer, figure), target, ...ratioOf(value(ours, figure), value(peer, figure), target),
          busyMachine: Math.max(ours.otherCpuPerSecond, peer.otherCpuPerSecond) > busyMachineCpuPerSecond,
          machineStall: figure === 'added p99 ms' && longestStall >= stallFlagMs,
        });
      }
    }
  }
  return out;
}

const figureText = (figure: FigureName, v: number) => {
  if (Number.isNaN(v)) return '—';
  if (figure.startsWith('added')) return `${v >= 0 ? '+' : ''}${v.toFixed(2)}`;
  if (figure === 'proxies CPU s/1k req') return v.toFixed(3);
  if (figure === 'proxies peak RSS MB') return v.toFixed(1);
  return v.toFixed(2);
};

const verdictText = (c: Comparison) => `${verdictWords(c)}${c.busyMachine && c.target !== undefined ? ' (busy machine)' : ''}${c.machineStall ? ' (machine stall)' : ''}`;

const verdictWords = (c: Comparison) => {
  switch (c.verdict) {
    case 'met': return `≤ ${c.target}×: met`;
    case 'missed': return `≤ ${c.target}×: missed`;
    case 'no target': return 'no ratio target';
    case 'no ratio': return c.target === undefined ? '—' : `≤ ${c.target}×: no ratio (peer ≤ 0)`;
  }
};

/** One table per rate: each figure for ours and the peer, the ratio, and the target it stands against. */
export function formatComparisons(comparisons: Comparison[]): string {
  const rates = [...new Set(comparisons.map((c) => c.rate))];
  return rates.map((rate) => {
    const at = comparisons.filter((c) => c.rate === rate);
    const busy = at.some((c) => c.busyMachine);
    const stalled = at.some((c) => c.machineStall);
    return [
      `at ${rate} requests/s: isthmus against the peer chain, same run${busy ? `; "(busy machine)": other processes used more than ${busyMachineCpuPerSecond} CPU s/s during that chain's points, read its ratios with care` : ''}${stalled ? `; "(machine stall)": the machine itself stood still ${stallFlagMs} ms or more during ours, the peer's or the baseline's window (see "machine stalls"), which alone can set a p99` : ''}`,
      formatTable(
        ['chain', 'figure', 'isthmus', 'peer', 'isthmus/peer', 'target'],
        at.map((c) => [c.chain, c.figure, figureText(c.figure, c.isthmus), figureText(c.figure, c.peer), Number.isNaN(c.ratio) ? '—' : `${c.ratio.toFixed(2)}×`, verdictText(c)]),
      ),
    ].join('\n');
  }).join('\n\n');
}
