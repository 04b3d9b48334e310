import { priorityLevels, type ServiceLocalities } from './localities.js';

/**
 * Envoy's priority-level load arithmetic: how much of the traffic each priority receives, given
 * how many of its endpoints are healthy. Follows the algorithm and the worked tables of
 * https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/load_balancing/priority
 *
 *   health(P)  = min(100, floor(factor% × healthy / total))       integer, as Envoy
 *   total      = min(100, Σ health)                               "normalized total health"
 *   load(P0)   = min(100, health(P0) × 100 / total)
 *   load(Pn)   = min(100 − Σ load(above), health(Pn) × 100 / total)
 *
 * Rounding: the loads above are kept as exact fractions (integers in units of 1/total %), then
 * turned into integer percents by the largest-remainder method — floor every load, then give the
 * missing points one each to the largest fractional parts, ties to the higher priority. The sum
 * is then exactly 100, and the docs' rows come out as printed (25/25/20 % healthy → 36/36/28).
 * Envoy's code instead gives the whole rounding remainder to the first healthy priority
 * (load_balancer_impl.cc, "Anything that remains should just be rounding errors"), which gives
 * 37/35/28 for that row; the two differ by at most (number of priorities − 1) points.
 */
export interface PriorityHealthCount { healthy: number; total: number }

export interface PriorityExplanation {
  priority: number;
  healthy: number;
  total: number;
  /** Health score in percent, after the overprovisioning factor and the cap at 100. */
  health: number;
  /** Integer percent of requests this priority receives. */
  load: number;
  /** One line for `isthmus explain` and the dashboard. */
  reason: string;
}

/**
 * `normalised`: the priorities' health sums to less than 100, so loads were scaled up to sum to
 * 100 anyway (the mesh is short of capacity). `no-healthy-endpoints`: every load is 0; what to do
 * then (fail fast, or Envoy's panic mode) is the caller's decision, not this function's.
 */
export type PriorityLoadStatus = 'ok' | 'normalised' | 'no-healthy-endpoints';

export interface PriorityLoad {
  /** Index = priority. Sums to exactly 100, or is all 0 when status is `no-healthy-endpoints`. */
  loads: number[];
  status: PriorityLoadStatus;
  explain: PriorityExplanation[];
}

export const defaultOverprovisioningFactor = 1.4;

/** Healthy and total endpoint counts for each level, P0 first (Envoy counts hosts, not weights, by default). */
export function healthCounts(service: ServiceLocalities): PriorityHealthCount[] {
  return priorityLevels(service).map((priority) => {
    const endpoints = service.localities.filter((l) => l.priority === priority).flatMap((l) => l.endpoints);
    return { healthy: endpoints.filter((e) => e.healthy).length, total: endpoints.length };
  });
}

export function priorityLoad(
  levels: readonly PriorityHealthCount[],
  opts: { overprovisioningFactor?: number } = {},
): PriorityLoad {
  // Envoy configures the factor as an integer percent (140); keep the arithmetic integral so a
  // level at exactly 5/7 healthy gives 100, not 99.99999.
  const factorPercent = Math.round((opts.overprovisioningFactor ?? defaultOverprovisioningFactor) * 100);
  const health = levels.map(({ healthy, total }) =>
    total > 0 ? Math.min(100, Math.floor((factorPercent * clamp(healthy, 0, total)) / total)) : 0);
  const totalHealth = Math.min(100, sum(health));

  if (totalHealth === 0) {
    const loads = levels.map(() => 0);
    return { loads, status: 'no-healthy-endpoints', explain: explain(levels, health, loads, 'no-healthy-endpoints', 0) };
  }

  // Exact shares in units of 1/totalHealth percent: they sum to exactly 100 × totalHealth.
  let remaining = 100 * totalHealth;
  const shares = health.map((h) => {
    const share = Math.min(remaining, h * 100);
    remaining -= share;
    return share;
  });
  const loads = shares.map((share) => Math.floor(share / totalHealth));
  let missing = 100 - sum(loads);
  const byRemainder = shares
    .map((share, priority) => ({ priority, remainder: share % totalHealth }))
    .sort((x, y) => y.remainder - x.remainder || x.priority - y.priority);
  // Σ remainders = missing × totalHealth and each remainder < totalHealth, so there are always
  // more non-zero remainders than missing points: a level with no share never gets one.
  for (const { priority } of byRemainder) {
    if (missing === 0) break;
    loads[priority] = (loads[priority] ?? 0) + 1;
    missing -= 1;
  }

  const status: PriorityLoadStatus = sum(health) < 100 ? 'normalised' : 'ok';
  return { loads, status, explain: explain(levels, health, loads, status, totalHealth) };
}

function explain(
  levels: readonly PriorityHealthCount[], health: number[], loads: number[], status: PriorityLoadStatus, totalHealth: number,
): PriorityExplanation[] {
  return levels.map((level, priority) => {
    const h = health[priority] ?? 0;
    const load = loads[priority] ?? 0;
    return { priority, healthy: level.healthy, total: level.total, health: h, load, reason: reason(priority, level, h, loads, status, totalHealth) };
  });
}

function reason(
  priority: number, level: PriorityHealthCount, health: number, loads: number[], status: PriorityLoadStatus, totalHealth: number,
): string {
  const name = `P${priority}`;
  if (level.total === 0) return `${name} has no endpoints: takes 0%`;
  const counts = `${name} has ${level.healthy}/${level.total} healthy${health < 100 ? ` (${health}% health)` : ''}`;
  if (status === 'no-healthy-endpoints') return `${counts}: takes 0%; no priority has a healthy endpoint`;

  const load = loads[priority] ?? 0;
  const above = sum(loads.slice(0, priority));
  if (above === 100) return `${counts}: takes 0%, higher priorities take 100%`;
  const spilled = 100 - above - load;
  const takers = loads.map((l, p) => (p > priority && l > 0 ? `P${p}` : '')).filter(Boolean);
  let text = `${counts}: takes ${load}%`;
  if (spilled > 0) text += `, spills ${spilled}% to ${takers.join(', ')}`;
  if (status === 'normalised') text += `; scaled up because total health is ${totalHealth}% < 100%`;
  return text;
}

function sum(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

function clamp(value: number, low: number, high: number): number {
  return Math.min(high, Math.max(low, value));
}
