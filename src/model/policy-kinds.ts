import { IsthmusError } from '../core/errors.js';
import { dnsLabelPattern } from '../core/names.js';
import { Type, Value, type TSchema } from '../core/typebox.js';
import { recordVersion } from '../core/keys.js';
import { gatewayDurationMs, HttpRouteSpecSchema, type HttpRouteSpec } from './http-route-spec.js';
import type { PolicyRecord } from './policy-records.js';
import {
  AuthorizationPolicySpecSchema, authorizationProblems, HttpRouteGroupSpecSchema, MeshNamespaceSpecSchema, TrafficTargetSpecSchema,
  type AuthorizationPolicySpec, type TrafficTargetSpec,
} from './authorization-spec.js';
import { crossFieldProblems, isthmusKindSchemas } from './resilience-spec.js';
import { TrafficSplitSpecSchema, type TrafficSplitSpec } from './traffic-split-spec.js';

/**
 * Every traffic-policy kind `isthmus policy` takes: its apiVersion, the key segment it is stored
 * under (`/policies/<segment>/<ns>/<name>`), the schema of its spec, and which services it
 * attaches to and names as backends. Pure: a document in, a record or a field-path error out.
 */
export interface PolicyKind {
  kind: string;
  apiVersion: string;
  segment: string;
  spec: TSchema;
  services(spec: never, namespace: string): string[];
  backends(spec: never, namespace: string): string[];
}

const isthmusApi = 'isthmus.dev/v1alpha1';

export const policyKinds: readonly PolicyKind[] = [
  {
    kind: 'HTTPRoute', apiVersion: 'gateway.networking.k8s.io/v1', segment: 'httproute', spec: HttpRouteSpecSchema,
    services: (spec: HttpRouteSpec) => [...new Set(spec.parentRefs.map((p) => p.name))],
    backends: (spec: HttpRouteSpec) => [...new Set(spec.rules.flatMap((r) => r.backendRefs.filter((b) => (b.kind ?? 'Service') === 'Service').map((b) => b.name)))],
  },
  {
    kind: 'TrafficSplit', apiVersion: 'split.smi-spec.io/v1alpha4', segment: 'trafficsplit', spec: TrafficSplitSpecSchema,
    services: (spec: TrafficSplitSpec) => [spec.service],
    backends: (spec: TrafficSplitSpec) => [...new Set(spec.backends.map((b) => b.service))],
  },
  ...Object.entries(isthmusKindSchemas).map(([kind, spec]): PolicyKind => ({
    kind, apiVersion: isthmusApi, segment: kind.toLowerCase(), spec,
    services: (s: { service: string }) => [s.service],
    backends: () => [],
  })),
  // Authorization (docs/authorization.md): enforced by the destination's inbound sidecar.
  {
    kind: 'AuthorizationPolicy', apiVersion: isthmusApi, segment: 'authorizationpolicy', spec: AuthorizationPolicySpecSchema,
    services: (spec: AuthorizationPolicySpec) => [spec.service],
    backends: () => [],
  },
  {
    kind: 'TrafficTarget', apiVersion: 'access.smi-spec.io/v1alpha3', segment: 'traffictarget', spec: TrafficTargetSpecSchema,
    services: (spec: TrafficTargetSpec) => [spec.destination.name],
    backends: () => [],
  },
  { kind: 'HTTPRouteGroup', apiVersion: 'specs.smi-spec.io/v1alpha4', segment: 'httproutegroup', spec: HttpRouteGroupSpecSchema, services: () => [], backends: () => [] },
  /** Namespace-wide settings: one per namespace, named after it (metadata.name is the namespace). */
  { kind: 'MeshNamespace', apiVersion: isthmusApi, segment: 'meshnamespace', spec: MeshNamespaceSpecSchema, services: () => [], backends: () => [] },
];

export const kindsByName: ReadonlyMap<string, PolicyKind> = new Map(policyKinds.map((k) => [k.kind, k]));
/** `policy get|delete <kind>` takes the kind (HTTPRoute) or its segment (httproute), any case. */
export function kindByWord(word: string): PolicyKind | undefined {
  const lower = word.toLowerCase();
  return policyKinds.find((k) => k.segment === lower || k.kind.toLowerCase() === lower);
}

const MetadataSchema = Type.Object({
  name: Type.String({ pattern: dnsLabelPattern, description: 'a DNS label naming this policy' }),
  namespace: Type.Optional(Type.String({ pattern: dnsLabelPattern, description: 'the namespace of the service; default "default"' })),
  labels: Type.Optional(Type.Record(Type.String(), Type.String())),
  annotations: Type.Optional(Type.Record(Type.String(), Type.String())),
}, { additionalProperties: false });

export interface FieldProblem { path: string; message: string }

/**
 * One parsed document → the record to store, or an error naming each bad field's path. The
 * published schema (Gateway API's, for an HTTPRoute) is the caller's to check first; this checks
 * what Isthmus carries out and the rules no schema can say.
 */
export function policyRecordFromDocument(doc: Record<string, unknown>, source: string, now: Date): PolicyRecord {
  const kind = kindsByName.get(String(doc.kind));
  if (!kind) throw invalid(source, [{ path: '/kind', message: `${JSON.stringify(doc.kind ?? null)} is not a kind Isthmus knows; one of ServiceLevelObjective, ${policyKinds.map((k) => k.kind).join(', ')}` }]);
  if (doc.apiVersion !== kind.apiVersion) throw invalid(source, [{ path: '/apiVersion', message: `${kind.kind} is ${kind.apiVersion}, got ${JSON.stringify(doc.apiVersion ?? null)}` }]);
  const problems = [
    ...schemaProblems(MetadataSchema, doc.metadata, '/metadata'),
    ...schemaProblems(kind.spec, doc.spec, '/spec'),
    ...Object.keys(doc).filter((k) => !['apiVersion', 'kind', 'metadata', 'spec', 'status'].includes(k)).map((k) => ({ path: `/${k}`, message: 'unknown field; remove it or check its spelling' })),
  ];
  if (problems.length > 0) throw invalid(source, problems);
  const spec = doc.spec as Record<string, unknown>;
  const metadata = doc.metadata as { name: string; namespace?: string };
  // A MeshNamespace is about the namespace it is named after, and is stored in it.
  const namespace = kind.kind === 'MeshNamespace' ? metadata.name : metadata.namespace ?? 'default';
  const more = [
    ...crossFieldProblems(kind.kind, spec),
    ...authorizationProblems(kind.kind, spec, namespace),
    ...(kind.kind === 'HTTPRoute' ? httpRouteProblems(spec as HttpRouteSpec, namespace) : []),
    ...(kind.kind === 'MeshNamespace' && metadata.namespace !== undefined && metadata.namespace !== metadata.name
      ? [{ path: '/metadata/namespace', message: `a MeshNamespace is named after the namespace it configures: leave metadata.namespace out, or make it ${metadata.name}` }] : []),
  ];
  if (more.length > 0) throw invalid(source, more);
  return {
    version: recordVersion,
    apiVersion: kind.apiVersion,
    kind: kind.kind,
    namespace,
    name: metadata.name,
    services: kind.services(spec as never, namespace),
    backends: kind.backends(spec as never, namespace),
    createdAt: now.toISOString(),
    spec,
  };
}

/** What Gateway API allows but a mesh route of Isthmus cannot mean. */
function httpRouteProblems(spec: HttpRouteSpec, namespace: string): FieldProblem[] {
  const problems: FieldProblem[] = [];
  spec.parentRefs.forEach((p, i) => {
    if (p.namespace !== undefined && p.namespace !== namespace) problems.push({ path: `/spec/parentRefs/${i}/namespace`, message: `a route attaches to Services of its own namespace (${namespace}) only` });
  });
  spec.rules.forEach((rule, r) => {
    rule.backendRefs.forEach((b, i) => {
      const path = `/spec/rules/${r}/backendRefs/${i}`;
      if (b.namespace !== undefined && b.namespace !== namespace) problems.push({ path: `${path}/namespace`, message: `backends must be in the route's namespace (${namespace}); ReferenceGrant is not supported` });
      const subset = b.kind === 'ServiceSubset';
      if (subset !== (b.group === 'isthmus.dev')) problems.push({ path, message: 'a ServiceSubset backend has group isthmus.dev and kind ServiceSubset; a Service backend has neither (or group "" and kind Service)' });
    });
    if (rule.timeouts?.request !== undefined && gatewayDurationMs(rule.timeouts.request) === undefined) {
      problems.push({ path: `/spec/rules/${r}/timeouts/request`, message: `"${rule.timeouts.request}" is not a duration such as 10s or 1m30s` });
    }
    rule.matches?.forEach((m, i) => {
      if (m.method !== undefined && !/^[A-Z]+$/.test(m.method)) problems.push({ path: `/spec/rules/${r}/matches/${i}/method`, message: 'an HTTP method in capitals, such as GET' });
    });
  });
  return problems;
}

export function schemaProblems(schema: TSchema, value: unknown, at: string): FieldProblem[] {
  return [...Value.Errors(schema, value)].slice(0, 10).map((e) => {
    const hint = typeof e.schema.description === 'string' ? ` (${e.schema.description})` : '';
    const message = e.message.startsWith('Unexpected property') ? 'a field Isthmus does not know or does not carry out (docs/traffic-policy.md lists them); remove it or check its spelling' : e.message.charAt(0).toLowerCase() + e.message.slice(1);
    return { path: `${at}${e.path}` || '/', message: `${message}, got ${e.value === undefined ? 'nothing' : JSON.stringify(e.value)?.slice(0, 60)}${hint}` };
  });
}

export function invalid(source: string, problems: FieldProblem[]): IsthmusError {
  const lines = problems.map((p) => `  ${p.path}: ${p.message}`).join('\n');
  return new IsthmusError('ISTHMUS_ERR_POLICY_INVALID', `${source} is not valid, so nothing was applied:\n${lines}`, { details: problems });
}
