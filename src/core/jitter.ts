/**
 * Periodic work spread in time. Processes started together (the sidecars of a node after a
 * rollout, or of `isthmus dev up`) and driven by plain intervals stay in step for their whole
 * life: every one of them wakes at the same moment, and so does whatever each one calls, which
 * is a burst of CPU on every core at once that delays every request in flight. A wait drawn from
 * `intervalMs` × [1 - jitter, 1 + jitter) makes them drift apart within a few rounds and keeps
 * the average period. Envoy's health checks offer the same (`interval_jitter_percent`).
 */

/** The spread used unless a caller asks otherwise: ± 10% of the interval. */
export const defaultJitter = 0.1;

/** Pure: `intervalMs` scaled by a factor in [1 - jitter, 1 + jitter); jitter is clamped to [0, 0.5]. */
export function jitteredMs(intervalMs: number, jitter = defaultJitter, random: () => number = Math.random): number {
  const spread = Math.min(Math.max(jitter, 0), 0.5);
  return Math.round(intervalMs * (1 + spread * (2 * random() - 1)));
}
