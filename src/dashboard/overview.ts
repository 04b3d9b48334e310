import { keys } from '../core/keys.js';
import type { Catalog } from '../model/catalog.js';
import { isRecord, ProbeRecordSchema, SloPolicySchema, SloStatusRecordSchema, type MeshEvent, type ProbeRecord, type SloPolicy } from '../model/records.js';
import { evaluateSlo } from '../model/slo.js';
import { PolicyRecordSchema } from '../model/policy-records.js';
import { recentEvents } from './recent-events.js';
import { liveShares, servicePolicies, type PolicyBadge } from './service-policies.js';
import { emptyWindow, splitRequests, statsOf, type RouteWindow, type TcpWindow, type TrafficHistory, type Window } from './traffic-history.js';
import { compareText } from '../core/compare-text.js';

/** What the dashboard page draws: one JSON document, sent by /api/overview and pushed by /api/stream. */
export interface Overview {
  /** The cluster whose federation serves this page. */
  servedBy: string;
  generatedAt: string;
  catalogRevision: number;
  clusters: { name: string; region: string; alive: boolean; gateways: number }[];
  services: {
    namespace: string; name: string; clusters: { cluster: string; healthy: number; total: number }[]; traffic: ServiceTraffic | null;
    /** The protocols its exported ports declare (http, http2, grpc, tcp…), distinct and sorted. */
    protocols: string[];
    /** Connections through fixed TCP listeners (a TCP service's port); null when none came, closed or was open in the window. */
    tcp: ServiceTcp | null;
    /** Policies in force (service-policies.ts), and how the window's requests were shared among a split's backends; absent without a policy. */
    policies?: { badges: PolicyBadge[]; live: { backend: string; share: number }[] | null };
  }[];
  /** Every `/probes/<from>/<to>` record in our mirror, sorted by pair. */
  probes: Omit<ProbeRecord, 'version' | 'gateways'>[];
  /** Real requests, as the sidecars of each cluster reported them, over the last `windowSeconds`. */
  traffic: {
    windowSeconds: number;
    /** One row per source → destination cluster pair that carried requests in the window, sorted by pair. */
    pairs: TrafficStats[];
  };
  /** The most recent events of every cluster, newest first (at most 50). */
  events: (MeshEvent & { cluster: string })[];
  /** Every objective in `/policies/slo/`, sorted by namespace/name. */
  slos: SloView[];
}

/** Requests over a window. Rates are per second; null where the window held no request. */
export interface TrafficStats {
  from: string;
  to: string;
  requests: number;
  rps: number;
  successPercent: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
}

/** A service's traffic over the window, from every source cluster together. */
export interface ServiceTraffic {
  requests: number;
  rps: number;
  successPercent: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
  /** Share of the window's requests each destination cluster answered (0..1), largest first. */
  servedFrom: { cluster: string; share: number }[];
}

/**
 * A TCP service's connections over the window, from every source cluster's fixed listeners
 * together; bytes are from the apps' side (sent by the callers, received by them).
 */
export interface ServiceTcp {
  /** Connections the apps opened to the listeners in the window, and per second. */
  connections: number;
  connectionsPerSecond: number;
  /** Share of them spliced to an endpoint (the rest found none or could not reach one); null without connections. */
  successPercent: number | null;
  /** Spliced connections open at the window's end. */
  open: number;
  sentBytesPerSecond: number;
  receivedBytesPerSecond: number;
  /**
   * Share of the window's spliced connections each destination cluster took (0..1), largest
   * first; when none was opened in the window, the share of those open.
   */
  servedFrom: { cluster: string; share: number }[];
}

export interface SloView {
  namespace: string;
  name: string;
  service: string;
  objective: { latency?: { percentile: number; belowMs: number }; successPercent?: number; windowSeconds: number; minRequests: number };
  /** How much of the window the reader has history for (a fresh dashboard has little). */
  coveredSeconds: number;
  observed: { requests: number; successPercent: number | null; latencyMs: number | null };
  /**
   * Error budget burn: 1 spends the budget exactly over the window, above 1 the objective is
   * being missed. `window` over the objective's window, `short` over the last five minutes
   * (a fast burn shows there first). Null when there were too few requests to say.
   */
  burnRate: { window: number | null; short: number | null };
  state: 'ok' | 'violated' | 'no-data';
  /** Whether a change of verdict sends a webhook (its URL stays out of the page: it may hold a token). */
  webhook: boolean;
  /** What `/slostatus/` holds: the last verdict a federation acted on (and paged for). */
  alerted?: { state: 'ok' | 'violated'; since: string; by: string };
}

/** The parts of a Federation the overview reads (an interface so it can be tested without etcd). */
export interface OverviewSource {
  cluster: string;
  catalog: Catalog;
  mirror: { entries(prefix: string): [string, unknown][] };
}

/** How far back the matrix and the services table look. */
export const trafficWindowSeconds = 60;
const shortBurnSeconds = 300;

export function buildOverview(source: OverviewSource, history?: TrafficHistory, now = new Date()): Overview {
  const { catalog } = source;
  const t = now.getTime();
  const recent = history?.window(trafficWindowSeconds * 1000, t) ?? emptyWindow;
  const seconds = recent.coveredMs / 1000;
  const policies = servicePolicies(source.mirror.entries(keys.policies).flatMap(([, value]) => (isRecord(PolicyRecordSchema, value) ? [value] : [])));
  return {
    servedBy: source.cluster,
    generatedAt: now.toISOString(),
    catalogRevision: catalog.revision,
    clusters: catalog.clusters
      .map((c) => ({ name: c.name, region: c.region, alive: c.alive, gateways: c.gateways.length }))
      .sort((a, b) => compareText(a.name, b.name)),
    services: catalog.services
      .map((s) => {
        const held = policies.get(`${s.namespace}/${s.name}`);
        return {
          namespace: s.namespace,
          name: s.name,
          protocols: [...new Set(s.clusters.flatMap((c) => c.ports.map((p) => p.protocol)))].sort(compareText),
          clusters: s.clusters.map((c) => ({
            cluster: c.cluster,
            healthy: c.zones.reduce((n, z) => n + z.healthy, 0),
            total: c.zones.reduce((n, z) => n + z.total, 0),
          })).sort((a, b) => compareText(a.cluster, b.cluster)),
          traffic: serviceTraffic(recent.routes.filter((r) => r.namespace === s.namespace && r.service === s.name), seconds),
          tcp: serviceTcp(recent.tcp.filter((r) => r.namespace === s.namespace && r.service === s.name), seconds),
          ...(held ? { policies: { badges: held.badges, live: held.backends ? liveShares(held.backends, (backend) => splitRequests(recent.splits, `${s.namespace}/${s.name}`, backend)) : null } } : {}),
        };
      })
      .sort((a, b) => compareText(`${a.namespace}/${a.name}`, `${b.namespace}/${b.name}`)),
    probes: probeRecords(source.mirror)
      .map(({ version: _v, gateways: _g, ...rest }) => rest),
    traffic: { windowSeconds: trafficWindowSeconds, pairs: trafficPairs(recent.routes, seconds) },
    events: recentEvents(source.mirror.entries(keys.events)),
    slos: sloViews(source.mirror, history, t),
  };
}

function serviceTraffic(routes: RouteWindow[], seconds: number): ServiceTraffic | null {
  if (routes.length === 0) return null;
  const { errors: _e, buckets: _b, ...stats } = statsOf(routes, seconds);
  const byCluster = new Map<string, number>();
  for (const r of routes) if (r.to !== '') byCluster.set(r.to, (byCluster.get(r.to) ?? 0) + r.requests);
  const answered = [...byCluster.values()].reduce((a, b) => a + b, 0);
  const servedFrom = [...byCluster]
    .map(([cluster, n]) => ({ cluster, share: Math.round((n / answered) * 1000) / 1000 }))
    .sort((a, b) => b.share - a.share || compareText(a.cluster, b.cluster));
  return { ...stats, servedFrom };
}

const round3 = (n: number) => Math.round(n * 1000) / 1000;

function serviceTcp(rows: TcpWindow[], seconds: number): ServiceTcp | null {
  if (rows.length === 0) return null;
  let connections = 0;
  let failed = 0;
  let open = 0;
  let sent = 0;
  let received = 0;
  const spliced = new Map<string, number>();
  const openBy = new Map<string, number>();
  for (const r of rows) {
    connections += r.connections;
    failed += r.failed;
    open += r.open;
    sent += r.sentBytes;
    received += r.receivedBytes;
    if (r.to === '') continue;
    spliced.set(r.to, (spliced.get(r.to) ?? 0) + r.connections - r.failed);
    openBy.set(r.to, (openBy.get(r.to) ?? 0) + r.open);
  }
  const rate = (n: number) => (seconds > 0 ? round3(n / seconds) : 0);
  const shares = (by: Map<string, number>) => {
    const sum = [...by.values()].reduce((a, b) => a + b, 0);
    return sum === 0 ? [] : [...by].filter(([, n]) => n > 0)
      .map(([cluster, n]) => ({ cluster, share: round3(n / sum) }))
      .sort((a, b) => b.share - a.share || compareText(a.cluster, b.cluster));
  };
  const byConnections = shares(spliced);
  return {
    connections,
    connectionsPerSecond: rate(connections),
    successPercent: connections > 0 ? round3(100 * (1 - failed / connections)) : null,
    open,
    sentBytesPerSecond: rate(sent),
    receivedBytesPerSecond: rate(received),
    servedFrom: byConnections.length > 0 ? byConnections : shares(openBy),
  };
}

/** Source → destination cluster pairs; requests no endpoint answered have no destination and are left out. */
function trafficPairs(routes: RouteWindow[], seconds: number): TrafficStats[] {
  const byPair = new Map<string, RouteWindow[]>();
  for (const r of routes) {
    if (r.to === '') continue;
    const key = `${r.from}\u0000${r.to}`;
    const list = byPair.get(key);
    if (list) list.push(r);
    else byPair.set(key, [r]);
  }
  return [...byPair.values()].map((list) => {
    const { errors: _e, buckets: _b, ...stats } = statsOf(list, seconds);
    return { from: (list[0] as RouteWindow).from, to: (list[0] as RouteWindow).to, ...stats };
  }).sort((a, b) => compareText(a.from, b.from) || compareText(a.to, b.to));
}

function sloViews(mirror: OverviewSource['mirror'], history: TrafficHistory | undefined, now: number): SloView[] {
  const statuses = new Map(mirror.entries(keys.sloStatuses));
  return sloPolicies(mirror).map((policy) => {
    const forService = (w: Window) => w.routes.filter((r) => r.namespace === policy.namespace && r.service === policy.service);
    const whole = history?.window(policy.windowSeconds * 1000, now) ?? emptyWindow;
    const short = history?.window(Math.min(shortBurnSeconds, policy.windowSeconds) * 1000, now) ?? emptyWindow;
    const verdict = evaluateSlo(policy, statsOf(forService(whole), 0));
    const shortVerdict = evaluateSlo(policy, statsOf(forService(short), 0));
    const status = statuses.get(keys.sloStatus(policy.namespace, policy.name));
    return {
      namespace: policy.namespace,
      name: policy.name,
      service: policy.service,
      objective: {
        ...(policy.latency ? { latency: { ...policy.latency } } : {}),
        ...(policy.successPercent !== undefined ? { successPercent: policy.successPercent } : {}),
        windowSeconds: policy.windowSeconds,
        minRequests: policy.minRequests,
      },
      coveredSeconds: Math.round(whole.coveredMs / 1000),
      observed: verdict.observed,
      burnRate: { window: verdict.burnRate, short: shortVerdict.burnRate },
      state: verdict.state,
      webhook: policy.webhook !== undefined,
      ...(isRecord(SloStatusRecordSchema, status) ? { alerted: { state: status.state, since: status.since, by: status.by } } : {}),
    };
  });
}

/** Every valid objective under `/policies/slo/<ns>/<name>`, sorted. */
export function sloPolicies(mirror: OverviewSource['mirror']): SloPolicy[] {
  return mirror.entries(keys.sloPolicies)
    .flatMap(([key, value]) => (key.slice(keys.sloPolicies.length).split('/').length === 2 && isRecord(SloPolicySchema, value) ? [value] : []))
    .sort((a, b) => compareText(`${a.namespace}/${a.name}`, `${b.namespace}/${b.name}`));
}

/** The same selection as the API's /v1/probes: `<prefix><from>/<to>` keys holding a valid record. */
export function probeRecords(mirror: OverviewSource['mirror']): ProbeRecord[] {
  return mirror.entries(keys.probes)
    .flatMap(([key, value]) => (key.slice(keys.probes.length).split('/').length === 2 && isRecord(ProbeRecordSchema, value) ? [value] : []))
    .sort((a, b) => compareText(a.from, b.from) || compareText(a.to, b.to));
}
