import { Type, type Static } from '../core/typebox.js';

/**
 * Traffic policies as stored at `/policies/<segment>/<ns>/<name>` (docs/federation.md, "Key
 * layout"; docs/traffic-policy.md). One record per applied document: what kind it is, which
 * services it attaches to, when it was first applied (Gateway API breaks ties between routes by
 * age), and its `spec` exactly as validated. Readers re-check `spec` with the kind's own schema
 * (traffic-policy.ts), because a record may come from a newer or a broken writer.
 *
 * ServiceLevelObjective records keep their own older shape (records.ts, SloPolicySchema).
 */
export const PolicyRecordSchema = Type.Object({
  version: Type.Literal(1),
  apiVersion: Type.String(),
  kind: Type.String(),
  namespace: Type.String(),
  name: Type.String(),
  /** The services (in `namespace`) the policy is about: an HTTPRoute's parents, a TrafficSplit's root service, a spec.service. */
  services: Type.Array(Type.String()),
  /** The other services it names (backends): checked for existence at apply time, nothing more. */
  backends: Type.Array(Type.String()),
  /** When the document was first applied; kept when it is replaced. */
  createdAt: Type.String(),
  spec: Type.Unknown(),
});
export type PolicyRecord = Static<typeof PolicyRecordSchema>;

/** What the federation serves sidecars at GET /v1/policies: every traffic-policy record, long-polled by `version`. */
export const PoliciesSnapshotSchema = Type.Object({
  version: Type.Integer(),
  policies: Type.Array(PolicyRecordSchema),
});
export type PoliciesSnapshot = Static<typeof PoliciesSnapshotSchema>;

/** A policy record as a document again (`policy get`): what was applied, plus when. */
export function policyDocument(record: PolicyRecord): Record<string, unknown> {
  return {
    apiVersion: record.apiVersion,
    kind: record.kind,
    metadata: { name: record.name, namespace: record.namespace, creationTimestamp: record.createdAt },
    spec: record.spec,
  };
}

export type ApplyChange = 'created' | 'changed' | 'unchanged';

/**
 * What applying `incoming` over what the store holds would do. The creation time of an existing
 * record is kept, so re-applying the same file is `unchanged` and route precedence by age holds.
 */
export function planPolicy(existing: PolicyRecord | undefined, incoming: PolicyRecord): { change: ApplyChange; record: PolicyRecord } {
  if (!existing) return { change: 'created', record: incoming };
  const record = { ...incoming, createdAt: existing.createdAt };
  return { change: sameJson(existing, record) ? 'unchanged' : 'changed', record };
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(canonical(a)) === JSON.stringify(canonical(b));
}

/** Key order does not make a change: YAML written in another order is the same policy. */
function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.keys(value).sort().map((k) => [k, canonical((value as Record<string, unknown>)[k])]));
  }
  return value;
}
