import { compileAuthorization } from '../model/authorization.js';
import { summariseAuthorization } from '../model/authorization-summary.js';
import { summarisePolicies, type PolicySummary } from '../model/policy-summary.js';
import type { PolicyRecord } from '../model/policy-records.js';
import { compileResiliencePolicies } from '../model/resilience-policy.js';
import { compileTrafficPolicies } from '../model/traffic-policy.js';

/**
 * What the dashboard's services table shows of the policies in force on a service: one badge
 * per policy (the split's weights, "fault", "retry", ...; its title the whole setting, as
 * `isthmus explain` says it), and the live split: how the requests of the last window were
 * shared among the split's backends, as the sidecars' policy steps chose them. Pure.
 */
export interface PolicyBadge {
  label: string;
  /** `split` and `fault` are the ones a person must not miss; the page colours them. */
  tone: 'split' | 'fault' | 'other';
  title: string;
}

export interface ServicePolicies {
  badges: PolicyBadge[];
  /** The backends of the service's weighted rules; absent without a split. */
  backends?: string[];
}

const labels: Record<string, string> = {
  RetryPolicy: 'retry', CircuitBreaker: 'breaker', OutlierDetection: 'outlier', LocalRateLimit: 'rate limit', FaultInjection: 'fault', FailoverPolicy: 'failover',
};

/** Every service with a routing, resilience or authorization policy, by `<ns>/<name>`. */
export function servicePolicies(records: readonly PolicyRecord[]): Map<string, ServicePolicies> {
  const routes = compileTrafficPolicies(records);
  const resilience = compileResiliencePolicies(records);
  const out = new Map<string, ServicePolicies>();
  for (const service of new Set([...routes.keys(), ...resilience.keys()])) {
    const summary = summarisePolicies(routes.get(service), resilience.get(service));
    if (summary) out.set(service, badgesOf(summary));
  }
  // Who may call it: one badge, its title the rules in the order the inbound tries them.
  const authorization = compileAuthorization(records);
  for (const [service, entry] of authorization.services) {
    const a = summariseAuthorization(authorization, entry.namespace, entry.service);
    const rules = [...a.deny.map((d) => `deny ${d.rule}: ${d.matches}`), ...a.allow.map((r) => `allow ${r.rule}: ${r.matches}`)];
    const badge: PolicyBadge = { label: a.allowList ? 'authz: allow list' : 'authz: deny rules', tone: 'other', title: [...rules, ...a.problems].join('\n') };
    const held = out.get(service);
    if (held) held.badges.push(badge);
    else out.set(service, { badges: [badge] });
  }
  return out;
}

function badgesOf(summary: PolicySummary): ServicePolicies {
  const badges: PolicyBadge[] = summary.rules.map((rule) => {
    const title = `${rule.policy}: ${rule.match} → ${rule.backends.map((b) => `${b.backend} ${b.percent}%`).join(' / ')}`;
    const weighted = rule.backends.length > 1;
    const label = weighted ? `split ${rule.backends.map((b) => b.percent).join('/')}` : `route → ${shortName(rule.backends[0]?.backend ?? '')}`;
    return { label, tone: weighted || rule.match === 'every request' ? 'split' : 'other', title };
  });
  for (const r of summary.resilience) badges.push({ label: labels[r.kind] ?? r.kind, tone: r.kind === 'FaultInjection' ? 'fault' : 'other', title: `${r.policy}: ${r.settings}` });
  const backends = [...new Set(summary.rules.flatMap((rule) => rule.backends.map((b) => b.backend)))].sort();
  return backends.length > 1 ? { badges, backends } : { badges };
}

/**
 * The live split over `backends` (as explain names them), from the requests the split itself
 * sent to each in the window (the policy step's choices, reported by the sidecars); null without any.
 */
export function liveShares(backends: readonly string[], requestsOf: (backend: string) => number): { backend: string; share: number }[] | null {
  const counts = backends.map((backend) => ({ backend, requests: requestsOf(backend) }));
  const total = counts.reduce((a, c) => a + c.requests, 0);
  if (total === 0) return null;
  return counts.map((c) => ({ backend: c.backend, share: Math.round((c.requests / total) * 1000) / 1000 }));
}

function shortName(backend: string): string {
  return backend.slice(backend.indexOf('/') + 1);
}
