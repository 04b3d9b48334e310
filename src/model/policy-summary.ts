import type { ServiceResilience } from './resilience-policy.js';
import type { Backend, CompiledMatch, ServiceRoutes } from './traffic-policy.js';
import { compareText } from '../core/compare-text.js';

/**
 * The policies in force for one service, as `isthmus explain` and the admin port's /routes show
 * them: the routing rules in the order they are tried (which document and rule, the match, the
 * backends with their weights as percents) and one line per resilience setting. Built from the
 * compiled policies the request path uses, so it shows what the sidecar does, not what a file
 * says. Pure.
 */
export interface PolicySummary {
  rules: {
    policy: string;
    match: string;
    backends: { backend: string; weight: number; percent: number }[];
    timeoutMs?: number;
    headerChanges?: string;
  }[];
  /** One entry per resilience kind in force: `{ kind: 'RetryPolicy', policy: 'RetryPolicy demo/r', settings: '3 attempts ...' }`. */
  resilience: { kind: string; policy: string; settings: string }[];
}

/** What a live split counted since the policy snapshot arrived: requests per backend. */
export interface LiveSplit { backend: string; requests: number; percent: number }

export function summarisePolicies(routes: ServiceRoutes | undefined, resilience: ServiceResilience | undefined): PolicySummary | undefined {
  if (!routes && !resilience) return undefined;
  const rules = (routes?.entries ?? []).map(({ match, action }) => ({
    policy: action.policy,
    match: describeMatch(match),
    backends: action.backends.map((b) => ({ backend: backendName(b), weight: b.weight, percent: percentOf(b.weight, action.totalWeight) })),
    ...(action.timeoutMs === undefined ? {} : { timeoutMs: action.timeoutMs }),
    ...(action.headers ? { headerChanges: [...action.headers.set.map(([n, v]) => `set ${n}: ${v}`), ...action.headers.add.map(([n, v]) => `add ${n}: ${v}`), ...action.headers.remove.map((n) => `remove ${n}`)].join(', ') } : {}),
  }));
  return { rules, resilience: resilience ? describeResilience(resilience) : [] };
}

/** `demo/hello-v2`, or `demo/hello (subset v2)` for a ServiceSubset backend. */
export function backendName(b: Pick<Backend, 'namespace' | 'service'> & { subset?: { name: string } | undefined }): string {
  return `${b.namespace}/${b.service}${b.subset ? ` (subset ${b.subset.name})` : ''}`;
}

export function describeMatch(m: CompiledMatch): string {
  const parts = [
    m.exactPath !== undefined ? `path = ${m.exactPath}` : m.prefix !== undefined && m.prefix !== '' ? `path prefix ${m.prefix}/` : undefined,
    m.method ? `method ${m.method}` : undefined,
    ...m.headers.map(([n, v]) => `header ${n}: ${v}`),
    ...m.query.map(([n, v]) => `query ${n}=${v}`),
  ].filter((p): p is string => p !== undefined);
  return parts.length === 0 ? 'every request' : parts.join(', ');
}

function describeResilience(r: ServiceResilience): PolicySummary['resilience'] {
  const out: PolicySummary['resilience'] = [];
  if (r.retry) {
    const perTry = r.retry.perTryTimeoutMs === undefined ? '' : `, ${r.retry.perTryTimeoutMs} ms per try`;
    out.push({ kind: 'RetryPolicy', policy: r.retry.policy, settings: `${r.retry.maxAttempts} attempts on ${[...r.retry.conditions].join(', ')}${perTry}; budget ${r.retry.budget.percent}% of requests, at least ${r.retry.budget.minRetriesPerSecond}/s` });
  }
  if (r.breaker) {
    const limits = (['maxConnections', 'maxPendingRequests', 'maxRequests'] as const).flatMap((k) => (r.breaker?.[k] === undefined ? [] : [`${k} ${r.breaker[k]}`]));
    out.push({ kind: 'CircuitBreaker', policy: r.breaker.policy, settings: `${limits.join(', ')} per upstream` });
  }
  if (r.outlier) {
    const o = r.outlier;
    out.push({ kind: 'OutlierDetection', policy: 'OutlierDetection', settings: `eject after ${o.consecutive5xx} 5xx or ${o.consecutiveConnectErrors} connect errors in a row, for ${o.baseEjectionMs} ms at first, at most ${o.maxEjectionPercent}% of endpoints` });
  }
  if (r.rateLimit) out.push({ kind: 'LocalRateLimit', policy: r.rateLimit.policy, settings: `${r.rateLimit.requestsPerSecond} requests/s, burst ${r.rateLimit.burst}, ${r.rateLimit.per === 'caller' ? 'per caller identity at each instance' : 'per instance'}; 429 with retry-after beyond, at the destination's inbound` });
  if (r.fault) {
    const f = r.fault;
    const what = [
      f.delay ? `delay ${f.delay.ms} ms for ${f.delay.percent}%` : undefined,
      f.abort ? `abort with ${f.abort.status !== undefined ? `status ${f.abort.status}` : `grpc-status ${f.abort.grpcStatus}`} for ${f.abort.percent}%` : undefined,
    ].filter(Boolean).join(', ');
    const only = f.headers.length === 0 ? '' : ` of requests with ${f.headers.map(([n, v]) => `${n}: ${v}`).join(', ')}`;
    out.push({ kind: 'FaultInjection', policy: f.policy, settings: `${what}${only}` });
  }
  if (r.failover) {
    const order = r.failover.order.length === 0 ? '' : `, clusters in order ${r.failover.order.join(', ')}`;
    out.push({ kind: 'FailoverPolicy', policy: r.failover.policy, settings: `scope ${r.failover.scope}${order}` });
  }
  return out;
}

/** Per backend, its share of `counts` (requests since the policy arrived), by backend name. */
export function liveSplit(counts: ReadonlyMap<string, number>): LiveSplit[] {
  const total = [...counts.values()].reduce((a, b) => a + b, 0);
  return [...counts].sort(([a], [b]) => compareText(a, b)).map(([backend, requests]) => ({ backend, requests, percent: percentOf(requests, total) }));
}

/** Lines for people (`isthmus explain`), after the priorities. */
export function formatPolicySummary(summary: PolicySummary, live: readonly LiveSplit[]): string[] {
  const lines = ['', 'Policies in force:'];
  summary.rules.forEach((rule, i) => {
    const split = rule.backends.map((b) => `${b.backend} ${b.percent}%`).join(' / ');
    const extras = [rule.timeoutMs === undefined ? '' : `, timeout ${rule.timeoutMs} ms`, rule.headerChanges ? `, ${rule.headerChanges}` : ''].join('');
    lines.push(`  ${i + 1}. ${rule.policy}: ${rule.match} → ${split}${extras}`);
  });
  for (const r of summary.resilience) lines.push(`  ${r.policy === r.kind ? r.kind : r.policy}: ${r.settings}`);
  if (live.length > 0) {
    const total = live.reduce((a, b) => a + b.requests, 0);
    lines.push(`  live split (${total} requests since the policies arrived): ${live.map((l) => `${l.backend} ${l.percent}%`).join(' / ')}`);
  } else if (summary.rules.length > 0) {
    lines.push('  live split: no request since the policies arrived');
  }
  return lines;
}

/** One decimal, so 1 in 1000 still shows. */
function percentOf(part: number, total: number): number {
  return total > 0 ? Math.round((part / total) * 1000) / 10 : 0;
}
