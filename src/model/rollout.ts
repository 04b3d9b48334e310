import { Type, type Static } from '../core/typebox.js';

/**
 * `/rollouts/<ns>/<service>`, persistent: a progressive delivery of `service` from the backend
 * `from` to the backend `to` (docs/rollouts.md). The CLI (or the dashboard) writes it when a
 * rollout starts, is paused, resumed or aborted; the one federation that drives rollouts writes
 * every other change. Every write is guarded by the record's revision, so two writers can never
 * both move a rollout on: a step is recorded once, with the time it began.
 */
export const RolloutPhaseSchema = Type.Union([
  Type.Literal('progressing'), Type.Literal('paused'), Type.Literal('succeeded'), Type.Literal('rolled-back'), Type.Literal('aborted'),
]);
export type RolloutPhase = Static<typeof RolloutPhaseSchema>;

export const RolloutStepSchema = Type.Object({
  /** Index into `steps`. */
  step: Type.Integer({ minimum: 0 }),
  /** Percent of the service's requests sent to `to` during this step. */
  weight: Type.Integer({ minimum: 0, maximum: 100 }),
  startedAt: Type.String(),
  /** The cluster whose federation (or `cli`) began the step. */
  by: Type.String(),
  /** Time spent paused during the step: the hold counts from startedAt without it. */
  pausedMs: Type.Integer({ minimum: 0 }),
});
export type RolloutStep = Static<typeof RolloutStepSchema>;

export const RolloutWaitingSchema = Type.Union([
  Type.Object({
    reason: Type.Literal('too-few-requests'),
    /** Requests to `to` in the objective's window, and how many it needs for a verdict. */
    requests: Type.Integer({ minimum: 0 }),
    minRequests: Type.Integer({ minimum: 1 }),
    since: Type.String(),
    updatedAt: Type.String(),
  }),
  Type.Object({ reason: Type.Literal('no-objective'), since: Type.String(), updatedAt: Type.String() }),
]);
export type RolloutWaiting = Static<typeof RolloutWaitingSchema>;

export const RolloutRecordSchema = Type.Object({
  version: Type.Literal(1),
  namespace: Type.String(),
  service: Type.String(),
  from: Type.String(),
  to: Type.String(),
  steps: Type.Array(Type.Integer({ minimum: 1, maximum: 100 }), { minItems: 1 }),
  intervalSeconds: Type.Integer({ minimum: 1 }),
  /** The ServiceLevelObjective (in `namespace`) whose burn rate gates every step. */
  objective: Type.String(),
  /** The TrafficSplit the rollout owns and rewrites, `<service>-rollout` in `namespace`. */
  split: Type.String(),
  phase: RolloutPhaseSchema,
  /** Every step begun, in order; the last one is the current step. */
  history: Type.Array(RolloutStepSchema),
  pausedAt: Type.Optional(Type.String()),
  createdAt: Type.String(),
  updatedAt: Type.String(),
  /**
   * Set by the driver while the current step's hold is over but the objective gives no verdict
   * (fewer requests in its window than its minRequests, or the objective is gone): the step is
   * held, and this says why. Cleared when the step gives way.
   */
  waiting: Type.Optional(RolloutWaitingSchema),
  /** Set when the rollout ended: why, and the burn rate that rolled it back. */
  ended: Type.Optional(Type.Object({
    at: Type.String(),
    by: Type.String(),
    reason: Type.String(),
    burnRate: Type.Optional(Type.Number()),
  })),
});
export type RolloutRecord = Static<typeof RolloutRecordSchema>;

/**
 * What the objective says now, as the driver reads it: the burn rate over its window (null when
 * the window holds fewer requests than minRequests: no verdict), and those two counts.
 */
export interface RolloutVerdict {
  burnRate: number | null;
  requests: number;
  minRequests: number;
}

/** What the driver does with a progressing rollout now. */
export type RolloutDecision =
  | { kind: 'hold'; remainingMs: number }
  | { kind: 'wait'; waiting: { reason: 'too-few-requests'; requests: number; minRequests: number } | { reason: 'no-objective' } }
  | { kind: 'advance'; step: number; weight: number }
  | { kind: 'succeed' }
  | { kind: 'roll-back'; burnRate: number };

export const activePhases: readonly RolloutPhase[] = ['progressing', 'paused'];

/**
 * The rollout's next move, from its record, the objective's verdict (undefined: the objective
 * is not stored) and the time. Pure, so every federation that might drive it decides the same.
 * A burn rate above 1 rolls back whatever the step. Otherwise a step holds for the interval
 * (counted from its recorded start, less the time it was paused); after that it gives way to
 * the next, and the last step to success, only on a verdict of 1 or below: with no verdict
 * (too few requests judged, or no objective) the step waits, as Flagger holds a canary whose
 * metrics are missing, because a version nobody has judged must not get more traffic.
 */
export function decideRollout(record: RolloutRecord, verdict: RolloutVerdict | undefined, nowMs: number): RolloutDecision {
  if (verdict && verdict.burnRate !== null && verdict.burnRate > 1) return { kind: 'roll-back', burnRate: verdict.burnRate };
  const current = record.history.at(-1);
  if (!current) return { kind: 'advance', step: 0, weight: record.steps[0]! };
  const held = nowMs - Date.parse(current.startedAt) - current.pausedMs;
  const remainingMs = record.intervalSeconds * 1000 - held;
  if (remainingMs > 0) return { kind: 'hold', remainingMs };
  if (!verdict) return { kind: 'wait', waiting: { reason: 'no-objective' } };
  if (verdict.burnRate === null) return { kind: 'wait', waiting: { reason: 'too-few-requests', requests: verdict.requests, minRequests: verdict.minRequests } };
  const next = current.step + 1;
  if (next >= record.steps.length) return { kind: 'succeed' };
  return { kind: 'advance', step: next, weight: record.steps[next]! };
}

/**
 * Why a progressing rollout's step is held past its interval, in one sentence (`rollout status`
 * and the dashboard's panel say the same); undefined when it is not.
 */
export function describeWaiting(record: RolloutRecord): string | undefined {
  const w = record.waiting;
  if (!w || record.phase !== 'progressing') return undefined;
  if (w.reason === 'no-objective') {
    return `held: waiting for the objective ${record.namespace}/${record.objective}, which is not stored; apply it again (isthmus policy apply) or abort the rollout`;
  }
  const missing = Math.max(1, w.minRequests - w.requests);
  return `held: waiting for ${missing} request${missing === 1 ? '' : 's'} to ${record.to} (${w.requests} of the ${w.minRequests} ${record.objective} needs in its window for a verdict); the step goes on once it has one`;
}

/**
 * Where a running rollout stands: its current step and how long that step has held (from its
 * recorded start, less time paused, frozen while paused) and has left. Undefined for a rollout
 * that has ended or has no step. Pure; `rollout status` and the dashboard's panel both say this.
 */
export function stepProgress(record: RolloutRecord, nowMs: number): { step: number; of: number; weight: number; heldMs: number; remainingMs: number } | undefined {
  const current = record.history.at(-1);
  if (!current || !activePhases.includes(record.phase)) return undefined;
  const until = record.phase === 'paused' && record.pausedAt ? Date.parse(record.pausedAt) : nowMs;
  const heldMs = Math.max(0, until - Date.parse(current.startedAt) - current.pausedMs);
  return { step: current.step, of: record.steps.length, weight: current.weight, heldMs, remainingMs: Math.max(0, record.intervalSeconds * 1000 - heldMs) };
}

/** The split's weights for `to`'s share `weight` (percent): the rest goes to `from`. */
export function splitBackends(record: Pick<RolloutRecord, 'from' | 'to'>, weight: number): { service: string; weight: number }[] {
  return [{ service: record.from, weight: 100 - weight }, { service: record.to, weight }];
}

/** `10,50,100` → [10, 50, 100]; increasing whole percents ending at 100. Undefined plus a reason when not. */
export function parseSteps(text: string): { steps: number[] } | { problem: string } {
  const steps = text.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  if (steps.length === 0 || steps.some((s) => !Number.isInteger(s) || s < 1 || s > 100)) return { problem: 'steps are whole percents from 1 to 100, comma-separated (10,50,100)' };
  if (steps.some((s, i) => i > 0 && s <= steps[i - 1]!)) return { problem: 'each step must send more traffic than the one before (10,50,100)' };
  if (steps.at(-1) !== 100) return { problem: 'the last step must be 100: a rollout ends with every request on the new version' };
  return { steps };
}
