import { Type, type Static, type TSchema } from '../core/typebox.js';
import { dnsLabelPattern } from '../core/names.js';

/**
 * The `isthmus.dev/v1alpha1` kinds for what neither Gateway API nor SMI says: retries with a
 * budget, circuit breaking, outlier detection, local rate limits, fault injection, failover
 * order, and subsets of a service's instances by label. Each names one service in its
 * namespace with `spec.service`. Their schemas are checked at apply time; the sidecar carries
 * out ServiceSubset and the resilience kinds (model/resilience-policy.ts), a FailoverPolicy's
 * order included (failover-order.ts).
 */
const service = Type.String({ pattern: dnsLabelPattern, description: 'the service (a DNS label) in metadata.namespace' });
const duration = (description: string) => Type.String({ pattern: '^([0-9]{1,5}(h|m|s|ms)){1,4}$', description: `${description}, a duration such as 250ms, 2s or 1m30s` });
const percent = (description: string) => Type.Number({ minimum: 0, maximum: 100, description: `${description}, in percent (0 to 100)` });
const count = (description: string) => Type.Integer({ minimum: 1, description });
const strict = { additionalProperties: false } as const;

export const retryConditions = ['connect-failure', 'reset', '5xx', 'gateway-error', 'retriable-4xx', 'unavailable', 'resource-exhausted', 'cancelled', 'deadline-exceeded'] as const;

export const RetryPolicySpecSchema = Type.Object({
  service,
  attempts: Type.Integer({ minimum: 1, maximum: 10, description: 'attempts in all, the first included' }),
  perTryTimeout: Type.Optional(duration('how long one attempt may wait for its answer\'s head')),
  retryOn: Type.Array(Type.Union(retryConditions.map((c) => Type.Literal(c))), { minItems: 1, description: `conditions among ${retryConditions.join(', ')}` }),
  budget: Type.Object({
    percent: Type.Number({ exclusiveMinimum: 0, maximum: 100, description: 'retries may add at most this share of the requests, in percent' }),
    minRetriesPerSecond: Type.Optional(Type.Integer({ minimum: 0, description: 'retries allowed each second whatever the share' })),
  }, strict),
}, strict);

export const CircuitBreakerSpecSchema = Type.Object({
  service,
  maxConnections: Type.Optional(count('connections per upstream address')),
  maxPendingRequests: Type.Optional(count('requests waiting for a connection')),
  maxRequests: Type.Optional(count('requests in flight to the service')),
}, strict);

export const OutlierDetectionSpecSchema = Type.Object({
  service,
  consecutive5xx: Type.Optional(count('5xx answers in a row that eject an endpoint')),
  consecutiveConnectErrors: Type.Optional(count('connect failures in a row that eject an endpoint')),
  baseEjectionTime: Type.Optional(duration('how long a first ejection lasts')),
  interval: Type.Optional(duration('each this long back in service forgives one past ejection')),
  maxEjectionPercent: Type.Optional(percent('the most of a service\'s endpoints ejected at once')),
}, strict);

export const LocalRateLimitSpecSchema = Type.Object({
  service,
  requestsPerSecond: Type.Number({ exclusiveMinimum: 0, description: 'the rate tokens come back at' }),
  burst: Type.Optional(count('the bucket\'s size: requests allowed at once after a quiet spell')),
  per: Type.Optional(Type.Union([Type.Literal('service'), Type.Literal('caller')], { description: 'one bucket for the service, or one per calling identity' })),
}, strict);

const HeaderMatch = Type.Object({ name: Type.String(), value: Type.String() }, strict);

export const FaultInjectionSpecSchema = Type.Object({
  service,
  delay: Type.Optional(Type.Object({ fixed: duration('the delay'), percent: percent('the share of requests delayed') }, strict)),
  abort: Type.Optional(Type.Object({
    status: Type.Optional(Type.Integer({ minimum: 200, maximum: 599, description: 'the HTTP status to answer with' })),
    grpcStatus: Type.Optional(Type.Integer({ minimum: 1, maximum: 16, description: 'the gRPC status code to answer with' })),
    percent: percent('the share of requests aborted'),
  }, strict)),
  headers: Type.Optional(Type.Array(HeaderMatch, { description: 'only requests with all these headers (exact values) are affected' })),
}, strict);

export const FailoverPolicySpecSchema = Type.Object({
  service,
  scope: Type.Optional(Type.Union([Type.Literal('zone'), Type.Literal('cluster'), Type.Literal('region'), Type.Literal('mesh')], { description: 'how far traffic may go when the nearer endpoints fail: zone, cluster, region or mesh (the default)' })),
  order: Type.Optional(Type.Array(Type.String({ pattern: dnsLabelPattern }), { minItems: 1, description: 'cluster names, tried in this order after the caller\'s own cluster' })),
}, strict);

export const ServiceSubsetSpecSchema = Type.Object({
  service,
  labels: Type.Record(Type.String({ pattern: '^[A-Za-z0-9]([-A-Za-z0-9_./]{0,61}[A-Za-z0-9])?$' }), Type.String(), { minProperties: 1, description: 'instance labels (isthmus register --label k=v) an instance must all have' }),
}, strict);
export type ServiceSubsetSpec = Static<typeof ServiceSubsetSpecSchema>;

/**
 * Rules a schema cannot say: the path of the offending field and why, or nothing. Checked after
 * the schema, so every field has its declared type here.
 */
export function crossFieldProblems(kind: string, spec: Record<string, unknown>): { path: string; message: string }[] {
  const problems: { path: string; message: string }[] = [];
  if (kind === 'FaultInjection') {
    if (spec.delay === undefined && spec.abort === undefined) problems.push({ path: '/spec', message: 'give spec.delay, spec.abort, or both' });
    const abort = spec.abort as { status?: number; grpcStatus?: number } | undefined;
    if (abort && (abort.status === undefined) === (abort.grpcStatus === undefined)) problems.push({ path: '/spec/abort', message: 'give exactly one of status and grpcStatus' });
  }
  if (kind === 'CircuitBreaker' && spec.maxConnections === undefined && spec.maxPendingRequests === undefined && spec.maxRequests === undefined) {
    problems.push({ path: '/spec', message: 'give at least one of maxConnections, maxPendingRequests, maxRequests' });
  }
  if (kind === 'FailoverPolicy') {
    const order = spec.order as string[] | undefined;
    const twice = order?.find((c, i) => order.indexOf(c) !== i);
    if (twice) problems.push({ path: '/spec/order', message: `cluster ${twice} is listed twice` });
    if (spec.scope === undefined && order === undefined) problems.push({ path: '/spec', message: 'give spec.scope, spec.order, or both' });
  }
  return problems;
}

/** The isthmus.dev kinds beside ServiceLevelObjective, each with its spec's schema. */
export const isthmusKindSchemas: Record<string, TSchema> = {
  RetryPolicy: RetryPolicySpecSchema,
  CircuitBreaker: CircuitBreakerSpecSchema,
  OutlierDetection: OutlierDetectionSpecSchema,
  LocalRateLimit: LocalRateLimitSpecSchema,
  FaultInjection: FaultInjectionSpecSchema,
  FailoverPolicy: FailoverPolicySpecSchema,
  ServiceSubset: ServiceSubsetSpecSchema,
};
