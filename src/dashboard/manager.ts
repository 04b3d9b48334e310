import { IsthmusError } from '../core/errors.js';
import { Type, type Static } from '../core/typebox.js';
import { compileAuthorization } from '../model/authorization.js';
import { summariseAuthorization } from '../model/authorization-summary.js';
import { schemaProblems } from '../model/policy-kinds.js';
import { policyDocument, type PolicyRecord } from '../model/policy-records.js';
import { summarisePolicies, type PolicySummary } from '../model/policy-summary.js';
import { compileResiliencePolicies } from '../model/resilience-policy.js';
import { compileTrafficPolicies } from '../model/traffic-policy.js';
import { describeWaiting, stepProgress, type RolloutRecord } from '../model/rollout.js';
import type { SloView } from './overview.js';
import { liveShares } from './service-policies.js';
import { compareText } from '../core/compare-text.js';

/**
 * The manager view (docs/dashboard.md, "The service page"): everything in force on one service,
 * its rollout, and the two policy edits an operator makes there (a rollout's verbs are those of
 * src/federation/rollouts.ts). An edit never writes a record itself: it turns the
 * stored record back into the document that was applied, changes the one field, and hands that
 * document to the checks and the transaction of `isthmus policy apply`. Pure.
 */

/** One weighted rule an operator may edit: an HTTPRoute rule or a TrafficSplit. */
export interface SplitView {
  kind: 'HTTPRoute' | 'TrafficSplit';
  /** The document's name (in the service's namespace). */
  policy: string;
  /** The rule's index in `spec.rules` (0 for a TrafficSplit). */
  rule: number;
  match: string;
  /** As written: a backendRef without a weight counts 1, as Gateway API says. */
  backends: { backend: string; weight: number }[];
}

export interface FaultView {
  policy: string;
  /** Percent of requests delayed / aborted; absent when the document has no delay / abort. */
  delayPercent?: number;
  abortPercent?: number;
  /** Whether it touches any request now: some percent above 0. */
  on: boolean;
  settings: string;
}

export interface ServiceDetail {
  namespace: string;
  name: string;
  /** The routing rules in the order a sidecar tries them, and the resilience settings in force (`isthmus explain`). */
  routes: PolicySummary['rules'];
  resilience: PolicySummary['resilience'];
  authorization: { allowList: boolean; rules: string[]; problems: string[] } | null;
  splits: SplitView[];
  faults: FaultView[];
  /** How the last window's requests were shared among the split's backends; null without traffic or split. */
  live: { backend: string; share: number }[] | null;
  /** The service's rollout (running or the last one ended); null when it never had one. */
  rollout: RolloutPanel | null;
}

/** The rollout panel: the record as stored, where its step stands, and the objective judging it as this dashboard sees it. */
export interface RolloutPanel {
  record: RolloutRecord;
  /** Why the step is held past its interval, as `rollout status` says it (describeWaiting); absent when it is not. */
  held?: string;
  /** The current step and its time held and left; absent once the rollout ended. */
  progress?: { step: number; of: number; weight: number; heldMs: number; remainingMs: number };
  /** Null when the objective is not stored (the driver then holds the step). */
  objective: {
    name: string;
    service: string;
    /** Burn rate over the objective's window; null with fewer requests than minRequests. */
    burnRate: number | null;
    requests: number;
    minRequests: number;
    windowSeconds: number;
    state: SloView['state'];
  } | null;
}

export function rolloutPanel(record: RolloutRecord, view: SloView | undefined, nowMs: number): RolloutPanel {
  const progress = stepProgress(record, nowMs);
  const held = describeWaiting(record);
  return {
    record,
    ...(held ? { held } : {}),
    ...(progress ? { progress } : {}),
    objective: view ? {
      name: view.name, service: view.service, burnRate: view.burnRate.window, requests: view.observed.requests,
      minRequests: view.objective.minRequests, windowSeconds: view.objective.windowSeconds, state: view.state,
    } : null,
  };
}

const ofService = (records: readonly PolicyRecord[], namespace: string, name: string) =>
  records.filter((r) => r.namespace === namespace && r.services.includes(name));

export function serviceDetail(records: readonly PolicyRecord[], namespace: string, name: string, requestsTo: (backend: string) => number, rollout: RolloutPanel | null = null): ServiceDetail {
  const service = `${namespace}/${name}`;
  const summary = summarisePolicies(compileTrafficPolicies(records).get(service), compileResiliencePolicies(records).get(service));
  const mine = ofService(records, namespace, name).sort((a, b) => compareText(`${a.kind}/${a.name}`, `${b.kind}/${b.name}`));
  const splits = mine.flatMap(splitViews);
  const faults = mine.filter((r) => r.kind === 'FaultInjection').map(faultView);
  const authorization = compileAuthorization(records);
  const a = authorization.services.has(service) ? summariseAuthorization(authorization, namespace, name) : undefined;
  const backends = [...new Set(splits.filter((s) => s.backends.length > 1).flatMap((s) => s.backends.map((b) => b.backend)))].sort();
  return {
    namespace, name,
    routes: summary?.rules ?? [],
    resilience: summary?.resilience ?? [],
    authorization: a ? { allowList: a.allowList, rules: [...a.deny.map((d) => `deny ${d.rule}: ${d.matches}`), ...a.allow.map((r) => `allow ${r.rule}: ${r.matches}`)], problems: a.problems } : null,
    splits, faults,
    live: backends.length > 1 ? liveShares(backends, requestsTo) : null,
    rollout,
  };
}

interface RefLike { name: string; namespace?: string; kind?: string; weight?: number }
interface RuleLike { matches?: { path?: { value?: string }; method?: string; headers?: { name: string; value: string }[]; queryParams?: { name: string; value: string }[] }[]; backendRefs: RefLike[] }

function splitViews(r: PolicyRecord): SplitView[] {
  if (r.kind === 'TrafficSplit') {
    const spec = r.spec as { backends: { service: string; weight: number }[] };
    return [{ kind: 'TrafficSplit', policy: r.name, rule: 0, match: 'every request', backends: spec.backends.map((b) => ({ backend: `${r.namespace}/${b.service}`, weight: b.weight })) }];
  }
  if (r.kind !== 'HTTPRoute') return [];
  return (r.spec as { rules: RuleLike[] }).rules.map((rule, i) => ({
    kind: 'HTTPRoute', policy: r.name, rule: i, match: describeRuleMatches(rule),
    backends: rule.backendRefs.map((ref) => ({
      backend: ref.kind === 'ServiceSubset' ? `${ref.namespace ?? r.namespace}/subset ${ref.name}` : `${ref.namespace ?? r.namespace}/${ref.name}`,
      weight: ref.weight ?? 1,
    })),
  }));
}

function describeRuleMatches(rule: RuleLike): string {
  if (!rule.matches || rule.matches.length === 0) return 'every request';
  return rule.matches.map((m) => [
    m.path?.value !== undefined ? `path ${m.path.value}` : undefined,
    m.method ? `method ${m.method}` : undefined,
    ...(m.headers ?? []).map((h) => `header ${h.name}: ${h.value}`),
    ...(m.queryParams ?? []).map((q) => `query ${q.name}=${q.value}`),
  ].filter(Boolean).join(', ') || 'every request').join(' or ');
}

function faultView(r: PolicyRecord): FaultView {
  const spec = r.spec as { delay?: { fixed: string; percent: number }; abort?: { status?: number; grpcStatus?: number; percent: number }; headers?: { name: string; value: string }[] };
  const settings = [
    spec.delay ? `delay ${spec.delay.fixed} for ${spec.delay.percent}%` : undefined,
    spec.abort ? `abort with ${spec.abort.status !== undefined ? `status ${spec.abort.status}` : `grpc-status ${spec.abort.grpcStatus}`} for ${spec.abort.percent}%` : undefined,
    spec.headers?.length ? `only requests with ${spec.headers.map((h) => `${h.name}: ${h.value}`).join(', ')}` : undefined,
  ].filter(Boolean).join(', ');
  return {
    policy: r.name,
    ...(spec.delay ? { delayPercent: spec.delay.percent } : {}),
    ...(spec.abort ? { abortPercent: spec.abort.percent } : {}),
    on: (spec.delay?.percent ?? 0) > 0 || (spec.abort?.percent ?? 0) > 0,
    settings,
  };
}

/** PUT /api/services/<ns>/<name>/weights. `weights` stays unknown here: the policy's own schema judges each one. */
export const WeightsEditSchema = Type.Object({
  kind: Type.Union([Type.Literal('HTTPRoute'), Type.Literal('TrafficSplit')]),
  policy: Type.String({ minLength: 1, maxLength: 253 }),
  rule: Type.Integer({ minimum: 0, maximum: 1000 }),
  weights: Type.Array(Type.Unknown(), { minItems: 1, maxItems: 100 }),
}, { additionalProperties: false });
export type WeightsEdit = Static<typeof WeightsEditSchema>;

/** PUT /api/services/<ns>/<name>/fault: on with `percent` (of delays and aborts alike), or off (0%). */
export const FaultEditSchema = Type.Object({
  policy: Type.String({ minLength: 1, maxLength: 253 }),
  on: Type.Boolean(),
  percent: Type.Optional(Type.Unknown()),
}, { additionalProperties: false });
export type FaultEdit = Static<typeof FaultEditSchema>;

/** The request body, checked; ISTHMUS_ERR_API_BAD_REQUEST naming each bad field otherwise. */
export function editRequest<T>(schema: Parameters<typeof schemaProblems>[0], body: unknown): T {
  const problems = schemaProblems(schema, body, '');
  if (problems.length > 0) throw new IsthmusError('ISTHMUS_ERR_API_BAD_REQUEST', `the request body is not valid: ${problems.map((p) => `${p.path || '/'}: ${p.message}`).join('; ')}`, { details: problems });
  return body as T;
}

/** The applied document of `record` with the weights of one rule replaced, for checkPolicyDocuments. */
export function withWeights(record: PolicyRecord, edit: WeightsEdit): Record<string, unknown> {
  const doc = appliedDocument(record);
  const spec = doc.spec as { rules?: { backendRefs: Record<string, unknown>[] }[]; backends?: Record<string, unknown>[] };
  const refs = record.kind === 'TrafficSplit' ? spec.backends : spec.rules?.[edit.rule]?.backendRefs;
  if (!refs || (record.kind === 'TrafficSplit' && edit.rule !== 0)) {
    throw new IsthmusError('ISTHMUS_ERR_API_BAD_REQUEST', `${record.kind} ${record.namespace}/${record.name} has no rule ${edit.rule}; reload the page, the policy may have changed`);
  }
  if (refs.length !== edit.weights.length) {
    throw new IsthmusError('ISTHMUS_ERR_API_BAD_REQUEST', `rule ${edit.rule} of ${record.kind} ${record.namespace}/${record.name} has ${refs.length} backends; ${edit.weights.length} weights were sent. Reload the page, the policy may have changed`);
  }
  refs.forEach((ref, i) => { ref.weight = edit.weights[i]; });
  return doc;
}

/** The applied document of a FaultInjection with its delay and abort percent set: `percent` when on, 0 when off. */
export function withFault(record: PolicyRecord, edit: FaultEdit): Record<string, unknown> {
  if (edit.on && edit.percent === undefined) throw new IsthmusError('ISTHMUS_ERR_API_BAD_REQUEST', 'turning a fault on needs its percent (0..100): send {"on": true, "percent": <n>}');
  const doc = appliedDocument(record);
  const spec = doc.spec as { delay?: { percent: unknown }; abort?: { percent: unknown } };
  for (const part of [spec.delay, spec.abort]) if (part) part.percent = edit.on ? edit.percent : 0;
  return doc;
}

/** The document as `policy apply` read it (no creation time: the stored one is kept by the write). */
function appliedDocument(record: PolicyRecord): Record<string, unknown> {
  const { metadata, ...rest } = structuredClone(policyDocument(record)) as { metadata: Record<string, unknown> } & Record<string, unknown>;
  const { creationTimestamp: _created, ...kept } = metadata;
  return { ...rest, metadata: kept };
}
