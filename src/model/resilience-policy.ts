import { Value } from '../core/typebox.js';
import type { BreakerLimits } from './circuit-breaker.js';
import type { FaultSettings } from './fault-injection.js';
import { gatewayDurationMs } from './http-route-spec.js';
import { outlierConfig, type OutlierConfig } from './outlier.js';
import type { PolicyRecord } from './policy-records.js';
import {
  CircuitBreakerSpecSchema, FailoverPolicySpecSchema, FaultInjectionSpecSchema, LocalRateLimitSpecSchema, OutlierDetectionSpecSchema, RetryPolicySpecSchema,
  type retryConditions,
} from './resilience-spec.js';
import type { Static } from '../core/typebox.js';
import { compareText } from '../core/compare-text.js';

/**
 * The isthmus.dev resilience kinds → per-service settings the request path reads: retries and
 * their budget, circuit-breaker limits, outlier-detection settings, a local rate limit, faults to
 * inject and a failover scope and order. Pure, compiled once per policy snapshot. When two
 * documents of one kind name the same service, the older one (first applied) wins, then the
 * first by `<ns>/<name>`, as route precedence breaks ties.
 */
export type RetryCondition = (typeof retryConditions)[number];

export interface RetrySettings {
  policy: string;
  maxAttempts: number;
  conditions: ReadonlySet<RetryCondition>;
  perTryTimeoutMs?: number;
  budget: { percent: number; minRetriesPerSecond: number };
}

export interface RateLimitSettings {
  policy: string;
  requestsPerSecond: number;
  burst: number;
  /** One bucket per instance of the service, or one per verified caller identity at each instance. */
  per: 'service' | 'caller';
}

export type FailoverScope = 'zone' | 'cluster' | 'region' | 'mesh';

export interface FailoverSettings {
  policy: string;
  scope: FailoverScope;
  order: readonly string[];
}

export interface ServiceResilience {
  retry?: RetrySettings;
  breaker?: BreakerLimits;
  outlier?: Readonly<OutlierConfig>;
  rateLimit?: RateLimitSettings;
  fault?: FaultSettings;
  failover?: FailoverSettings;
}

/** Linkerd's default floor: a quiet service may still retry a little. */
export const defaultMinRetriesPerSecond = 10;

const compilers: Record<string, (spec: never, policy: string) => Partial<ServiceResilience> | undefined> = {
  RetryPolicy: (spec: Static<typeof RetryPolicySpecSchema>, policy) => {
    const perTry = spec.perTryTimeout === undefined ? undefined : gatewayDurationMs(spec.perTryTimeout);
    return {
      retry: {
        policy, maxAttempts: spec.attempts, conditions: new Set(spec.retryOn),
        ...(perTry ? { perTryTimeoutMs: perTry } : {}),
        budget: { percent: spec.budget.percent, minRetriesPerSecond: spec.budget.minRetriesPerSecond ?? defaultMinRetriesPerSecond },
      },
    };
  },
  CircuitBreaker: (spec: Static<typeof CircuitBreakerSpecSchema>, policy) => ({ breaker: { policy, ...withoutService(spec) } }),
  OutlierDetection: (spec: Static<typeof OutlierDetectionSpecSchema>) => {
    const base = spec.baseEjectionTime === undefined ? undefined : gatewayDurationMs(spec.baseEjectionTime);
    const interval = spec.interval === undefined ? undefined : gatewayDurationMs(spec.interval);
    const defaults = outlierConfig();
    try {
      return {
        outlier: outlierConfig({
          ...(spec.consecutive5xx !== undefined ? { consecutive5xx: spec.consecutive5xx } : {}),
          ...(spec.consecutiveConnectErrors !== undefined ? { consecutiveConnectErrors: spec.consecutiveConnectErrors } : {}),
          ...(base ? { baseEjectionMs: base, maxEjectionMs: Math.max(defaults.maxEjectionMs, base) } : {}),
          ...(interval ? { decayIntervalMs: interval } : {}),
          ...(spec.maxEjectionPercent !== undefined ? { maxEjectionPercent: Math.floor(spec.maxEjectionPercent) } : {}),
        }),
      };
    } catch {
      return undefined;
    }
  },
  LocalRateLimit: (spec: Static<typeof LocalRateLimitSpecSchema>, policy) => ({
    // Without a burst, one second's worth of requests may come at once.
    rateLimit: { policy, requestsPerSecond: spec.requestsPerSecond, burst: spec.burst ?? Math.max(1, Math.ceil(spec.requestsPerSecond)), per: spec.per ?? 'service' },
  }),
  FaultInjection: (spec: Static<typeof FaultInjectionSpecSchema>, policy) => {
    const delayMs = spec.delay ? gatewayDurationMs(spec.delay.fixed) : undefined;
    return {
      fault: {
        policy,
        ...(spec.delay && delayMs !== undefined ? { delay: { ms: delayMs, percent: spec.delay.percent } } : {}),
        ...(spec.abort ? { abort: spec.abort } : {}),
        headers: (spec.headers ?? []).map((h) => [h.name.toLowerCase(), h.value] as const),
      },
    };
  },
  FailoverPolicy: (spec: Static<typeof FailoverPolicySpecSchema>, policy) => ({ failover: { policy, scope: spec.scope ?? 'mesh', order: spec.order ?? [] } }),
};

const schemas = {
  RetryPolicy: RetryPolicySpecSchema, CircuitBreaker: CircuitBreakerSpecSchema, OutlierDetection: OutlierDetectionSpecSchema,
  LocalRateLimit: LocalRateLimitSpecSchema, FaultInjection: FaultInjectionSpecSchema, FailoverPolicy: FailoverPolicySpecSchema,
} as const;

/** Every service with a resilience policy, by `<ns>/<service>`. Records that do not check out are skipped. */
export function compileResiliencePolicies(records: readonly PolicyRecord[]): Map<string, ServiceResilience> {
  const ordered = records
    .filter((r) => r.kind in schemas && Value.Check(schemas[r.kind as keyof typeof schemas], r.spec))
    .sort((a, b) => (Date.parse(a.createdAt) || 0) - (Date.parse(b.createdAt) || 0) || compareText(`${a.namespace}/${a.name}`, `${b.namespace}/${b.name}`));
  const out = new Map<string, ServiceResilience>();
  for (const record of ordered) {
    const spec = record.spec as { service: string };
    const key = `${record.namespace}/${spec.service}`;
    const compiled = (compilers[record.kind] as (spec: unknown, policy: string) => Partial<ServiceResilience> | undefined)(spec, `${record.kind} ${record.namespace}/${record.name}`);
    if (!compiled) continue;
    const held = out.get(key) ?? {};
    // The first (oldest) document of a kind wins.
    for (const [field, value] of Object.entries(compiled)) if (!(field in held)) (held as Record<string, unknown>)[field] = value;
    out.set(key, held);
  }
  return out;
}

function withoutService<T extends { service: string }>(spec: T): Omit<T, 'service'> {
  const { service: _service, ...rest } = spec;
  return rest;
}
