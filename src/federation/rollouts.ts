import { IsthmusError } from '../core/errors.js';
import { keys, recordVersion } from '../core/keys.js';
import type { Logger } from '../core/log.js';
import type { SloView } from '../dashboard/overview.js';
import { policyRecordFromDocument } from '../model/policy-kinds.js';
import { isRecord, SloPolicySchema, type SloPolicy } from '../model/records.js';
import { PolicyRecordSchema, type PolicyRecord } from '../model/policy-records.js';
import {
  activePhases, decideRollout, describeWaiting, RolloutRecordSchema, splitBackends, type RolloutDecision, type RolloutRecord,
} from '../model/rollout.js';
import { flagNames, invalidField, readRolloutTiming, type FieldNames, type RolloutStartInput } from './rollout-input.js';
import type { FederationStore, LeaseSession, StoredRecord } from './store.js';
import type { TrafficLedger } from './traffic-ledger.js';
import { compareText } from '../core/compare-text.js';

/**
 * Progressive delivery (docs/rollouts.md): the verbs the CLI and the dashboard share, and the
 * driver every federation runs, of which one at a time (by an etcd lease) moves rollouts on.
 * A rollout is a record at `/rollouts/<ns>/<service>` and a TrafficSplit it owns,
 * `<service>-rollout`, written in the same transaction as the record, guarded by the record's
 * revision: whoever writes, a step is begun once.
 */

type Store = Pick<FederationStore, 'get' | 'list' | 'transact'>;

export interface StartRolloutRequest {
  namespace: string;
  service: string;
  to: string;
  /** The backend that has the traffic now; defaults to the `to` of the service's last succeeded rollout, else the service itself. */
  from?: string | undefined;
  steps: number[];
  intervalSeconds: number;
  objective: string;
  /** Who starts it, for the step's `by` (`cli`, `dashboard`). */
  by?: string;
  /** How refusals name the fields: `--to` for the CLI (the default), `to` for the dashboard's JSON. */
  names?: FieldNames;
  now?: Date;
}

export const rolloutSplitName = (service: string) => `${service}-rollout`;

/** The TrafficSplit a rollout owns, sending `weight` percent to `to`, as `policy apply` would store it. */
export function rolloutSplit(record: RolloutRecord, weight: number, createdAt: string | undefined, now: Date): PolicyRecord {
  const split = policyRecordFromDocument({
    apiVersion: 'split.smi-spec.io/v1alpha4', kind: 'TrafficSplit',
    metadata: { name: record.split, namespace: record.namespace },
    spec: { service: record.service, backends: splitBackends(record, weight) },
  }, `rollout ${record.namespace}/${record.service}`, now);
  return createdAt ? { ...split, createdAt } : split;
}

async function readRollout(store: Store, namespace: string, service: string): Promise<StoredRecord<RolloutRecord> | undefined> {
  const stored = await store.get<RolloutRecord>(keys.rollout(namespace, service));
  return stored && isRecord(RolloutRecordSchema, stored.value) ? stored : undefined;
}

async function requireRollout(store: Store, namespace: string, service: string): Promise<StoredRecord<RolloutRecord>> {
  const stored = await readRollout(store, namespace, service);
  if (!stored) throw new IsthmusError('ISTHMUS_ERR_ROLLOUT_NOT_FOUND', `${namespace}/${service} has no rollout; isthmus rollout status -n ${namespace} lists the rollouts there are`);
  return stored;
}

function conflict(what: string): IsthmusError {
  return new IsthmusError('ISTHMUS_ERR_ETCD_CONFLICT', `${what} changed while this command ran; run it again`);
}

/** Writes the record and the split it implies, if the record is still at `revision` (0: absent). */
async function writeRollout(store: Store, record: RolloutRecord, revision: number, weight: number, now: Date): Promise<boolean> {
  const key = keys.rollout(record.namespace, record.service);
  const splitKey = keys.policy('trafficsplit', record.namespace, record.split);
  const existingSplit = await store.get<PolicyRecord>(splitKey);
  return await store.transact({
    ...(revision === 0 ? { ifAbsent: [key] } : { ifModRevision: { [key]: revision } }),
    puts: [{ key, value: record }, { key: splitKey, value: rolloutSplit(record, weight, existingSplit?.value.createdAt, now) }],
  });
}

/**
 * Starts a rollout: checks the request, refuses when the service already has a route or split
 * of the user's (sidecars would follow that one), then writes the record with its first step
 * begun and the split at the first step's weight, in one transaction.
 */
export async function startRollout(store: Store, request: StartRolloutRequest): Promise<RolloutRecord> {
  const { namespace, service, to, steps, intervalSeconds, objective } = request;
  const now = request.now ?? new Date();
  const existing = await readRollout(store, namespace, service);
  if (existing && activePhases.includes(existing.value.phase)) {
    throw new IsthmusError('ISTHMUS_ERR_ROLLOUT_ACTIVE', `${namespace}/${service} already has a rollout ${existing.value.phase} (to ${existing.value.to}); wait for it or isthmus rollout abort ${service} -n ${namespace}`);
  }
  const from = request.from ?? (existing?.value.phase === 'succeeded' ? existing.value.to : service);
  const names = request.names ?? flagNames;
  if (from === to) throw invalidField('to', names, `${to} is what already has the traffic (${names('from')} ${from}); name the new version`);
  if (steps.length === 0 || steps.at(-1) !== 100 || steps.some((s, i) => !Number.isInteger(s) || s < 1 || s > 100 || (i > 0 && s <= steps[i - 1]!))) {
    throw invalidField('steps', names, 'must be increasing whole percents ending at 100 (10,50,100)');
  }
  if (!Number.isInteger(intervalSeconds) || intervalSeconds < 1) throw invalidField('interval', names, 'must be at least 1s');
  const slo = await store.get<SloPolicy>(keys.policy('slo', namespace, objective));
  if (!slo) {
    throw invalidField('objective', names, `${objective}: no ServiceLevelObjective ${namespace}/${objective} is stored (isthmus policy list); apply one first, a rollout needs it to judge each step`);
  }
  // Sidecars count a request under the backend the split sent it to, so only an objective on
  // `to` measures the new version; one on the service or on `from` would judge the old one and
  // pass a bad version (docs/rollouts.md, "How each step is judged").
  if (!isRecord(SloPolicySchema, slo.value) || slo.value.service !== to) {
    const judged = isRecord(SloPolicySchema, slo.value) ? `${namespace}/${slo.value.service}` : 'nothing (its record is not valid)';
    throw invalidField('objective', names, `${objective} judges ${judged}, not ${namespace}/${to}, the new version this rollout sends traffic to (${names('to')} ${to}); its burn rate would not measure ${to}. Give an objective whose spec.service is ${to}`);
  }
  const split = rolloutSplitName(service);
  const { records } = await store.list<PolicyRecord>(keys.policies);
  const taken = records.filter((r) => isRecord(PolicyRecordSchema, r.value) && (r.value.kind === 'HTTPRoute' || r.value.kind === 'TrafficSplit')
    && r.value.namespace === namespace && r.value.services.includes(service) && !(r.value.kind === 'TrafficSplit' && r.value.name === split));
  if (taken.length > 0) {
    const names = taken.map((r) => `${(r.value as PolicyRecord).kind.toLowerCase()} ${namespace}/${(r.value as PolicyRecord).name}`);
    throw new IsthmusError('ISTHMUS_ERR_ROLLOUT_SPLIT_TAKEN', `${namespace}/${service} already has ${names.join(', ')}, which sidecars would follow instead of the rollout's split; delete it (isthmus policy delete ${names[0]}) and start again`);
  }
  const at = now.toISOString();
  const record: RolloutRecord = {
    version: recordVersion, namespace, service, from, to, steps, intervalSeconds, objective, split, phase: 'progressing',
    history: [{ step: 0, weight: steps[0]!, startedAt: at, by: request.by ?? 'cli', pausedMs: 0 }], createdAt: at, updatedAt: at,
  };
  if (!(await writeRollout(store, record, existing?.modRevision ?? 0, steps[0]!, now))) throw conflict(`the rollout of ${namespace}/${service}`);
  return record;
}

/**
 * Starts a rollout from what a person typed (the CLI's flags, the dashboard's form): the one
 * reading of steps and interval, then startRollout. Refusals name the field as `names` says.
 */
export async function startRolloutFrom(store: Store, namespace: string, service: string, input: RolloutStartInput, opts: { by: string; names: FieldNames }): Promise<RolloutRecord> {
  const { steps, intervalSeconds } = readRolloutTiming(input, opts.names);
  return await startRollout(store, {
    namespace, service, to: input.to, from: input.from, steps, intervalSeconds, objective: input.objective, by: opts.by, names: opts.names,
  });
}

export async function rolloutStatus(store: Store, namespace: string, service: string): Promise<RolloutRecord> {
  return (await requireRollout(store, namespace, service)).value;
}

/** Every rollout, or those of one namespace, by namespace and service. */
export async function listRollouts(store: Store, namespace?: string): Promise<RolloutRecord[]> {
  const { records } = await store.list<RolloutRecord>(keys.rollouts);
  return records.flatMap((r) => (isRecord(RolloutRecordSchema, r.value) && (!namespace || r.value.namespace === namespace) ? [r.value] : []))
    .sort((a, b) => compareText(`${a.namespace}/${a.service}`, `${b.namespace}/${b.service}`));
}

/** Reads, changes and writes back a rollout that is still in one of `phases`; the split follows the new record's last step. */
async function changeRollout(store: Store, namespace: string, service: string, verb: string, change: (r: RolloutRecord, at: string) => { record: RolloutRecord; weight: number }, now: Date): Promise<RolloutRecord> {
  // The driver writes the record too (a step begun, why a step waits): a lost race is read
  // again and the change made on what is there now, a few times, before giving up.
  for (let attempt = 0; attempt < 3; attempt += 1) {
    const stored = await requireRollout(store, namespace, service);
    if (!activePhases.includes(stored.value.phase)) {
      throw new IsthmusError('ISTHMUS_ERR_ROLLOUT_FINISHED', `the rollout of ${namespace}/${service} has ${stored.value.phase === 'aborted' ? 'been aborted' : stored.value.phase}, so it cannot be ${verb}; start a new one with isthmus rollout start`);
    }
    const { record, weight } = change(stored.value, now.toISOString());
    if (await writeRollout(store, record, stored.modRevision, weight, now)) return record;
  }
  throw conflict(`the rollout of ${namespace}/${service}`);
}

const currentWeight = (r: RolloutRecord) => r.history.at(-1)?.weight ?? 0;

/** Holds the current step: the driver leaves a paused rollout alone, and the pause does not count towards the step's hold. */
export async function pauseRollout(store: Store, namespace: string, service: string, now = new Date()): Promise<RolloutRecord> {
  return await changeRollout(store, namespace, service, 'paused', (r, at) => {
    if (r.phase === 'paused') throw new IsthmusError('ISTHMUS_ERR_ROLLOUT_ACTIVE', `the rollout of ${namespace}/${service} is paused already; isthmus rollout resume ${service} -n ${namespace} goes on`);
    return { record: { ...r, phase: 'paused', pausedAt: at, updatedAt: at }, weight: currentWeight(r) };
  }, now);
}

export async function resumeRollout(store: Store, namespace: string, service: string, now = new Date()): Promise<RolloutRecord> {
  return await changeRollout(store, namespace, service, 'resumed', (r, at) => {
    if (r.phase !== 'paused' || !r.pausedAt) throw new IsthmusError('ISTHMUS_ERR_ROLLOUT_ACTIVE', `the rollout of ${namespace}/${service} is not paused; it is ${r.phase}`);
    const pausedMs = Math.max(0, now.getTime() - Date.parse(r.pausedAt));
    const history = r.history.map((step, i) => (i === r.history.length - 1 ? { ...step, pausedMs: step.pausedMs + pausedMs } : step));
    const { pausedAt: _, ...rest } = r;
    return { record: { ...rest, phase: 'progressing', history, updatedAt: at }, weight: currentWeight(r) };
  }, now);
}

/** Ends the rollout and sends every request back to `from` at once. */
export async function abortRollout(store: Store, namespace: string, service: string, opts: { by?: string; now?: Date } = {}): Promise<RolloutRecord> {
  return await changeRollout(store, namespace, service, 'aborted', (r, at) => {
    const { pausedAt: _, waiting: _held, ...rest } = r;
    return { record: { ...rest, phase: 'aborted', updatedAt: at, ended: { at, by: opts.by ?? 'cli', reason: `aborted; every request back to ${r.from}` } }, weight: 0 };
  }, opts.now ?? new Date());
}

/** The verbs on a running rollout, by name, as `isthmus rollout <verb>` and the dashboard's buttons call them; `by` is who (cli, dashboard). */
export const rolloutActions = {
  pause: (store: Store, namespace: string, service: string, _by: string) => pauseRollout(store, namespace, service),
  resume: (store: Store, namespace: string, service: string, _by: string) => resumeRollout(store, namespace, service),
  abort: (store: Store, namespace: string, service: string, by: string) => abortRollout(store, namespace, service, { by }),
} as const;
export type RolloutAction = keyof typeof rolloutActions;

/** How often at most the driver rewrites a held step's `waiting` count while it moves. */
const waitingNoteMs = 2000;

export interface RolloutDriverOptions {
  cluster: string;
  store: Pick<FederationStore, 'get' | 'list' | 'transact' | 'leaseSession'>;
  /** The objectives' current verdicts, the same the SLO alerter pages from. */
  views: () => SloView[];
  ledger: Pick<TrafficLedger, 'addEvent'>;
  /** Records the objective's violation and pages its webhook once across the mesh (SloAlerter.record). */
  page: (view: SloView, rollout: string) => Promise<void>;
  logger: Logger;
  leaseTtlSeconds: number;
  /** How often the driver evaluates every rollout (ms; default 1000): a rollback follows a burn rate above 1 within this. */
  intervalMs?: number;
  now?: () => number;
}

/**
 * Moves rollouts on. Every federation runs one; the one that holds `/rolloutdriver` (a record
 * under its own lease, taken when absent) acts, the others wait. When that federation dies its
 * lease expires and the next to look takes over, reading the steps from the record: a step's
 * hold counts from its recorded start, so nothing is repeated or skipped. Writes are guarded by
 * the record's revision, so even two drivers at once (a lease lost and re-granted) cannot both
 * act on one state.
 */
export class RolloutDriver {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private session: LeaseSession | undefined;
  private driving = false;
  private gating = new Set<string>();

  constructor(private readonly opts: RolloutDriverOptions) {}

  async start(): Promise<void> {
    this.session = await this.opts.store.leaseSession({ ttlSeconds: this.opts.leaseTtlSeconds });
    this.timer = setInterval(() => void this.check(), this.opts.intervalMs ?? 1000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.running;
    await this.session?.revoke();
  }

  /**
   * Whether a progressing rollout is gated by this objective: its violation is then paged by the
   * driver when it rolls the rollout back (with what it did), not by the SLO alerter's round.
   */
  gates(namespace: string, objective: string): boolean {
    return this.gating.has(`${namespace}/${objective}`);
  }

  /** One round; one at a time. */
  check(): Promise<void> {
    this.running ??= this.round().catch((err: unknown) => {
      this.opts.logger.warn({ err: (err as Error).message }, 'rollout round failed; trying again next round');
    }).finally(() => { this.running = undefined; });
    return this.running;
  }

  private async elected(): Promise<boolean> {
    const session = this.session;
    if (!session) return false;
    const held = await this.opts.store.get<{ cluster: string }>(keys.rolloutDriver);
    let mine = held?.lease === session.id;
    if (!held) {
      mine = await this.opts.store.transact({
        ifAbsent: [keys.rolloutDriver],
        puts: [{ key: keys.rolloutDriver, value: { version: recordVersion, cluster: this.opts.cluster, since: new Date(this.now()).toISOString() }, lease: session }],
      });
    }
    if (mine !== this.driving) this.opts.logger.info({ driving: mine, held: held?.value.cluster }, mine ? 'driving rollouts' : 'another federation drives rollouts');
    this.driving = mine;
    return mine;
  }

  private now(): number {
    return this.opts.now?.() ?? Date.now();
  }

  private async round(): Promise<void> {
    const { records } = await this.opts.store.list<RolloutRecord>(keys.rollouts);
    const progressing = records.filter((r) => isRecord(RolloutRecordSchema, r.value) && r.value.phase === 'progressing');
    this.gating = new Set(progressing.map((r) => `${r.value.namespace}/${r.value.objective}`));
    if (progressing.length === 0 || !(await this.elected())) return;
    const views = this.opts.views();
    for (const stored of progressing) {
      const view = views.find((v) => v.namespace === stored.value.namespace && v.name === stored.value.objective);
      const verdict = view ? { burnRate: view.burnRate.window, requests: view.observed.requests, minRequests: view.objective.minRequests } : undefined;
      const decision = decideRollout(stored.value, verdict, this.now());
      if (decision.kind === 'hold') continue;
      if (decision.kind === 'wait') await this.noteWaiting(stored, decision.waiting);
      else await this.act(stored, decision, view);
    }
  }

  /**
   * Records why a step is held past its interval, for `rollout status` and the page: when the
   * reason starts, and then as the count moves, at most every `waitingNoteMs` (the record only,
   * not the split, so sidecars see no change).
   */
  private async noteWaiting(stored: StoredRecord<RolloutRecord>, waiting: Extract<RolloutDecision, { kind: 'wait' }>['waiting']): Promise<void> {
    const r = stored.value;
    const now = this.now();
    const at = new Date(now).toISOString();
    const before = r.waiting;
    const same = before?.reason === waiting.reason && (waiting.reason !== 'too-few-requests' || (before.reason === 'too-few-requests' && before.requests === waiting.requests && before.minRequests === waiting.minRequests));
    if (same || (before?.reason === waiting.reason && now - Date.parse(before.updatedAt) < waitingNoteMs)) return;
    const record: RolloutRecord = { ...r, waiting: { ...waiting, since: before?.reason === waiting.reason ? before.since : at, updatedAt: at } };
    const key = keys.rollout(r.namespace, r.service);
    if (!(await this.opts.store.transact({ ifModRevision: { [key]: stored.modRevision }, puts: [{ key, value: record }] }))) return;
    if (before?.reason !== waiting.reason) {
      this.opts.logger.info({ rollout: `${r.namespace}/${r.service}`, waiting }, describeWaiting(record) ?? 'rollout step held');
    }
  }

  private async act(stored: StoredRecord<RolloutRecord>, decision: Exclude<RolloutDecision, { kind: 'hold' | 'wait' }>, view: SloView | undefined): Promise<void> {
    const { waiting: _held, ...r } = stored.value;
    const nowDate = new Date(this.now());
    const at = nowDate.toISOString();
    const name = `${r.namespace}/${r.service}`;
    const by = this.opts.cluster;
    let record: RolloutRecord;
    let weight: number;
    switch (decision.kind) {
      case 'advance':
        record = { ...r, history: [...r.history, { step: decision.step, weight: decision.weight, startedAt: at, by, pausedMs: 0 }], updatedAt: at };
        weight = decision.weight;
        break;
      case 'succeed':
        record = { ...r, phase: 'succeeded', updatedAt: at, ended: { at, by, reason: `every step held; ${r.to} has every request` } };
        weight = 100;
        break;
      case 'roll-back':
        record = { ...r, phase: 'rolled-back', updatedAt: at, ended: { at, by, reason: `${r.objective}'s burn rate ${decision.burnRate} is above 1; every request back to ${r.from}`, burnRate: decision.burnRate } };
        weight = 0;
        break;
    }
    if (!(await writeRollout(this.opts.store, record, stored.modRevision, weight, nowDate))) return; // someone else moved it; next round reads anew
    const service = name;
    const step = r.history.at(-1);
    if (decision.kind === 'advance') {
      const summary = `rollout of ${name}: step ${decision.step + 1} of ${r.steps.length}, ${decision.weight}% to ${r.to}`;
      this.opts.ledger.addEvent({ at, kind: 'rollout-step', service, summary });
      this.opts.logger.info({ rollout: name, step: decision.step, weight: decision.weight }, summary);
    } else if (decision.kind === 'succeed') {
      const summary = `rollout of ${name} succeeded: ${r.to} has every request`;
      this.opts.ledger.addEvent({ at, kind: 'rollout-succeeded', service, summary });
      this.opts.logger.info({ rollout: name }, summary);
    } else {
      const summary = `rollout of ${name} rolled back at step ${(step?.step ?? 0) + 1} (${step?.weight ?? 0}% to ${r.to}): ${r.objective}'s burn rate ${decision.burnRate} is above 1; every request back to ${r.from}`;
      this.opts.ledger.addEvent({ at, kind: 'rollout-rolled-back', service, summary });
      this.opts.logger.warn({ rollout: name, burnRate: decision.burnRate }, summary);
      if (view) await this.opts.page(view, summary).catch((err: unknown) => this.opts.logger.warn({ rollout: name, err: (err as Error).message }, 'could not page for the rollback'));
    }
  }
}
