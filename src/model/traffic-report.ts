import { Type, type Static } from '../core/typebox.js';
import { isoTime } from '../core/utc-text.js';
import { add, type Buckets } from './latency-histogram.js';
import { MeshEventSchema, type MeshEvent } from './records.js';

const count = Type.Integer({ minimum: 0 });
const label = Type.String({ minLength: 1, maxLength: 253 });

/** One route's requests since the sidecar's previous accepted report (deltas, not totals). */
export const RouteCountsSchema = Type.Object({
  namespace: label,
  service: label,
  /** Destination cluster; "" when no endpoint answered. */
  to: Type.String({ maxLength: 253 }),
  requests: count,
  errors: count,
  buckets: Type.Array(count, { maxItems: 85 }),
});
export type RouteCounts = Static<typeof RouteCountsSchema>;

/**
 * Requests a traffic split (HTTPRoute, TrafficSplit) of the service the app called sent to one
 * backend, as the policy step chose it: the live split counts these, so a direct call to a
 * backend service is not mistaken for the split's. `backend` as explain names it
 * (`<ns>/<service>` or `<ns>/<service> (subset <name>)`). Deltas, as routes.
 */
export const SplitCountsSchema = Type.Object({
  namespace: label,
  service: label,
  backend: Type.String({ minLength: 1, maxLength: 600 }),
  requests: count,
});
export type SplitCounts = Static<typeof SplitCountsSchema>;

export const splitKey = (s: { namespace: string; service: string; backend: string }): string => `${s.namespace}/${s.service}\u0000${s.backend}`;

/** Adds `from` into `into` split by split. */
export function mergeSplits(into: Map<string, SplitCounts>, from: Iterable<SplitCounts>): Map<string, SplitCounts> {
  for (const s of from) {
    const key = splitKey(s);
    const have = into.get(key);
    if (have) have.requests += s.requests;
    else into.set(key, { ...s });
  }
  return into;
}

/**
 * One TCP service's connections through the sidecar's fixed TCP listeners since its previous
 * accepted report (deltas, as routes): `connections` the app opened to the listener, `failed`
 * of them never spliced (no endpoint, upstream unreachable), `closed` spliced ones that ended,
 * and the bytes the app sent and received through them, counted while they are open. `to` is
 * the destination cluster ("" when none was reached).
 */
export const TcpCountsSchema = Type.Object({
  namespace: label,
  service: label,
  to: Type.String({ maxLength: 253 }),
  connections: count,
  failed: count,
  closed: count,
  sentBytes: count,
  receivedBytes: count,
});
export type TcpCounts = Static<typeof TcpCountsSchema>;

/** Adds `from` into `into` row by row (keyed as routes are). */
export function mergeTcp(into: Map<string, TcpCounts>, from: Iterable<TcpCounts>): Map<string, TcpCounts> {
  for (const r of from) {
    const key = routeKey(r);
    const have = into.get(key);
    if (have) {
      have.connections += r.connections;
      have.failed += r.failed;
      have.closed += r.closed;
      have.sentBytes += r.sentBytes;
      have.receivedBytes += r.receivedBytes;
    } else into.set(key, { ...r });
  }
  return into;
}

/** True when a row says nothing (no connection came, ended or moved a byte). */
export const tcpRowEmpty = (r: TcpCounts): boolean => r.connections === 0 && r.closed === 0 && r.sentBytes === 0 && r.receivedBytes === 0;

/**
 * What a sidecar sends its federation every few seconds (POST /v1/reports): its requests since
 * the last report the federation accepted, the events it saw, and where its admin port is (so
 * `isthmus trace` can find a sidecar of a cluster). The caller's identity is its client
 * certificate, never a field of the body.
 */
export const TrafficReportSchema = Type.Object({
  version: Type.Literal(1),
  admin: Type.Optional(Type.String({ maxLength: 300 })),
  routes: Type.Array(RouteCountsSchema, { maxItems: 2000 }),
  splits: Type.Optional(Type.Array(SplitCountsSchema, { maxItems: 2000 })),
  /** Connections through TCP fixed listeners; absent when there were none (a federation before this field refuses a report that has it). */
  tcp: Type.Optional(Type.Array(TcpCountsSchema, { maxItems: 2000 })),
  events: Type.Array(Type.Omit(MeshEventSchema, ['id']), { maxItems: 100 }),
}, { additionalProperties: false });
export type TrafficReport = Static<typeof TrafficReportSchema>;

export const routeKey = (r: { namespace: string; service: string; to: string }): string => `${r.namespace}/${r.service}\u0000${r.to}`;

/** Adds `from` into `into` route by route (a report not delivered is merged into the next). */
export function mergeRoutes(into: Map<string, RouteCounts>, from: Iterable<RouteCounts>): Map<string, RouteCounts> {
  for (const r of from) {
    const key = routeKey(r);
    const have = into.get(key);
    if (have) {
      have.requests += r.requests;
      have.errors += r.errors;
      add(have.buckets, r.buckets);
    } else {
      into.set(key, { namespace: r.namespace, service: r.service, to: r.to, requests: r.requests, errors: r.errors, buckets: [...r.buckets] as Buckets });
    }
  }
  return into;
}

export type ReportedEvent = Omit<MeshEvent, 'id'>;

const priorityNames = ['same zone', 'same cluster', 'same region', 'other regions'];

function where(clusters: readonly string[], priority: number | undefined): string {
  if (priority === undefined) return 'nowhere (no healthy endpoint)';
  const name = priorityNames[priority] ?? `priority ${priority}`;
  return clusters.length > 0 ? `${clusters.join(', ')} (P${priority}, ${name})` : `P${priority} (${name})`;
}

/**
 * A sidecar's failover as people read it: where the service's primary traffic was and where it
 * is now. Moving to a lower number is a failback (traffic returns closer).
 */
export function failoverEvent(m: { namespace: string; service: string; from: number | undefined; to: number | undefined; fromClusters: readonly string[]; toClusters: readonly string[]; at: number }): ReportedEvent {
  const service = `${m.namespace}/${m.service}`;
  const back = m.from !== undefined && m.to !== undefined && m.to < m.from;
  const summary = m.to === undefined
    ? `${service}: no healthy endpoint left (was ${where(m.fromClusters, m.from)})`
    : back
      ? `${service}: traffic back to ${where(m.toClusters, m.to)} from ${where(m.fromClusters, m.from)}`
      : `${service}: traffic moved from ${where(m.fromClusters, m.from)} to ${where(m.toClusters, m.to)}`;
  return { at: isoTime(m.at), kind: back ? 'failback' : 'failover', service, summary };
}

/**
 * Outlier detection took an endpoint out. A remote gateway is named by its cluster (its address
 * is in the catalog anyway); a local instance is not named by address, since events cross
 * clusters and pod addresses do not (docs/architecture.md, "Contracts": only aggregates cross clusters).
 */
export function ejectionEvent(m: { address: string; reason: 'connect-error' | '5xx'; service: string | undefined; cluster: string | undefined; at: number }, ownCluster: string): ReportedEvent {
  const why = m.reason === '5xx' ? 'consecutive 5xx answers' : 'connections refused or timed out';
  const what = m.cluster !== undefined && m.cluster !== ownCluster ? `${m.cluster}'s gateway ${m.address}` : `an instance in ${m.cluster ?? ownCluster}`;
  return {
    at: isoTime(m.at),
    kind: 'ejection',
    ...(m.service ? { service: m.service } : {}),
    summary: `ejected ${what}${m.service ? ` for ${m.service}` : ''} after ${why}`,
  };
}

/**
 * A destination's inbound refused a caller by authorization. One summary per service, caller,
 * reason and rule, so a caller refused fifty times in a few seconds is one line counted fifty
 * times (the ledger folds equal summaries). The path is left out: it is the app's data, and
 * events cross clusters.
 */
export function authzDeniedEvent(m: { service: string; caller: string | undefined; cluster: string | undefined; reason: 'deny_rule' | 'no_rule_allows' | 'path_refused' | 'plaintext'; rule: string | undefined; at: number }): ReportedEvent {
  const who = `${m.caller ?? 'a plain-text caller'}${m.cluster === undefined ? '' : ` (cluster ${m.cluster})`}`;
  const why = m.reason === 'deny_rule' ? `denied by ${m.rule ?? 'a deny rule'}`
    : m.reason === 'no_rule_allows' ? 'no rule allows it'
      : m.reason === 'plaintext' ? 'the namespace\'s mTLS mode is strict (no plain text)'
        : 'its path cannot be matched safely';
  return { at: isoTime(m.at), kind: 'authz-denied', service: m.service, summary: `${m.service} refused ${who}: ${why}` };
}
