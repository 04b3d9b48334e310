import { formatAuthorizationSummary, type AuthorizationSummary } from '../model/authorization-summary.js';
import { formatPolicySummary, type LiveSplit, type PolicySummary } from '../model/policy-summary.js';
import { serviceAtGateway, type Route } from './routing.js';
import { isoTime } from '../core/utc-text.js';
import type { AppProtocol } from './tcp-protocol.js';

export interface RouteExplanation {
  namespace: string;
  service: string;
  from: { cluster: string; zone: string };
  status: string;
  /** The priority taking most of the traffic, if any. */
  primary: number | null;
  priorities: { priority: number; healthy: number; total: number; health: number; load: number; reason: string }[];
  localities: {
    priority: number;
    region: string;
    cluster: string;
    zone: string;
    endpoints: { address: string; kind: string; sni?: string; healthy: boolean; ejected: boolean }[];
  }[];
  computedAt: string;
  /** The policies in force for the service (absent: none), and the split its requests took since they arrived. */
  policies?: PolicySummary;
  liveSplit?: LiveSplit[];
  /** Who may call the service: its namespace's mTLS mode and default, and its authorization rules. */
  authorization?: AuthorizationSummary;
  /** What its ports declare in the catalog: `tcp` for a TCP service (its traffic is connections), else `http` (absent from a sidecar before this field: http). */
  protocol?: AppProtocol;
}

/** Where traffic for one service goes now and why, as data (admin /routes) for people and tools. */
export function explainRoute(
  route: Route, from: { cluster: string; zone: string }, ejected: ReadonlySet<string>, policies?: { policies: PolicySummary; liveSplit: LiveSplit[] },
  authorization?: AuthorizationSummary, protocol: AppProtocol = 'http',
): RouteExplanation {
  const primary = route.load.loads.reduce((best, load, priority) => (load > (route.load.loads[best] ?? 0) ? priority : best), 0);
  return {
    namespace: route.namespace,
    service: route.service,
    from,
    status: route.load.status,
    primary: route.load.status === 'no-healthy-endpoints' ? null : primary,
    priorities: route.load.explain.filter((p) => p.total > 0 || p.load > 0).map((p) => ({ ...p })),
    localities: route.localities.localities.map((l) => ({
      priority: l.priority,
      region: l.region,
      cluster: l.cluster,
      zone: l.zone,
      // A gateway may be ejected for this service's answers alone (routing.ts, record()).
      endpoints: l.endpoints.map((e) => ({
        address: e.address, kind: e.kind, ...(e.sni ? { sni: e.sni } : {}), healthy: e.healthy,
        ejected: ejected.has(e.address) || (e.kind === 'gateway' && ejected.has(serviceAtGateway(e.address, route.name))),
      })),
    })),
    computedAt: isoTime(route.computedAt),
    ...policies,
    ...(authorization ? { authorization } : {}),
    protocol,
  };
}

/** The same, as a person reads it (`isthmus explain`). */
export function formatExplanation(e: RouteExplanation): string {
  const tcp = e.protocol === 'tcp';
  const lines = [`${e.namespace}/${e.service} as seen from ${e.from.cluster} (zone ${e.from.zone}): ${e.status === 'no-healthy-endpoints' ? 'NO HEALTHY ENDPOINT' : `most traffic to P${e.primary}`}`];
  // A TCP service's traffic is connections: say so, and how an app reaches it.
  if (tcp) lines.push(`  a TCP service: apps reach it through a fixed TCP listener, or CONNECT ${e.service}.${e.namespace}.mesh:<port> on the proxy port`);
  lines.push('');
  for (const p of e.priorities) {
    lines.push(`  P${p.priority}  ${String(p.load).padStart(3)}% of ${tcp ? 'connections' : 'requests'}  ${p.healthy}/${p.total} healthy  — ${p.reason}`);
    for (const l of e.localities.filter((x) => x.priority === p.priority)) {
      for (const ep of l.endpoints) {
        // Ejected but healthy: every endpoint of the service is ejected, and it is routed to anyway (routing.ts).
        const state = ep.ejected ? (ep.healthy ? 'EJECTED, still used (every endpoint is)' : 'EJECTED (outlier detection)') : ep.healthy ? 'healthy' : 'unhealthy';
        const via = ep.kind === 'gateway' ? `gateway of ${l.cluster}, SNI ${ep.sni}` : `local sidecar`;
        lines.push(`        ${l.cluster}/${l.zone}  ${ep.address}  ${state}  (${via})`);
      }
    }
  }
  if (e.priorities.length === 0) lines.push('  no endpoint in any cluster');
  if (e.policies) lines.push(...formatPolicySummary(e.policies, e.liveSplit ?? []));
  if (e.authorization) lines.push(...formatAuthorizationSummary(e.authorization));
  return `${lines.join('\n')}\n`;
}
