import { Counter, type Registry } from './prom.js';
import { TallyCounter, TallyHistogram, type TallyCounterChild, type TallyHistogramChild } from './tally-metrics.js';
import { channels } from '../core/channels.js';
import { parseSpiffeId } from '../trust/spiffe.js';
import { certificateExpiry, type CertificateFacts, type Listen } from './shared.js';
import { tcpMetrics } from './tcp-metrics.js';

export interface SidecarSources {
  /** The workload's own service, `<ns>/<name>`: the destination of its inbound requests. */
  service?: string;
  certificates?: () => CertificateFacts[];
}

/** Request latency inside a mesh: from a millisecond (same host) to seconds (a slow remote). */
export const latencyBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * A sidecar's request metrics. Every label value comes from the catalog, the config or a
 * certificate the mesh issued: never a path, a host typed by an app, or an IP address.
 */
export function sidecarMetrics(registry: Registry, cluster: string, sources: SidecarSources, listen: Listen): void {
  const registers = [registry];
  // Counted on every request: tally metrics (tally-metrics.ts), whose children count without
  // hashing the labels each time. The label sets are few and bounded (catalog services ×
  // clusters × codes), so each one's child is looked up once, by a key cheaper than the labels.
  const requests = new TallyCounter({
    name: 'isthmus_requests_total',
    help: 'Requests the app sent through this sidecar, by where they were answered and the status (or connect_error).',
    registers,
  });
  const duration = new TallyHistogram({
    name: 'isthmus_request_duration_seconds',
    help: 'Time from the app\'s request to the response headers, through this sidecar, retries included.',
    buckets: latencyBuckets, registers,
  });
  const outbound = new ChildrenByKeys<{ requests: TallyCounterChild; duration: TallyHistogramChild }>();
  listen(channels.outboundRequest, (m) => {
    const to = m.cluster ?? 'none';
    const service = m.service ?? 'unknown';
    let children = outbound.get(to, service, m.code);
    if (!children) {
      const labels = { source_cluster: cluster, destination_cluster: to, destination_service: service };
      children = outbound.set(to, service, m.code, { requests: requests.labels({ ...labels, code: String(m.code) }), duration: duration.labels(labels) });
    }
    children.requests.inc();
    children.duration.observe(m.seconds);
  });

  const inbound = new TallyCounter({
    name: 'isthmus_inbound_requests_total',
    help: 'Requests that reached this workload through its sidecar, by the caller\'s SPIFFE namespace and service account.',
    registers,
  });
  const inboundDuration = new TallyHistogram({
    name: 'isthmus_inbound_request_duration_seconds',
    help: 'Time from a request\'s arrival at the inbound listener to the app\'s response headers.',
    buckets: latencyBuckets, registers,
  });
  const destination = { destination_cluster: cluster, destination_service: sources.service ?? 'unknown' };
  const inboundDurationChild = inboundDuration.labels(destination);
  const inboundChildren = new ChildrenByKeys<TallyCounterChild>();
  listen(channels.inboundRequest, (m) => {
    const peer = m.peer ?? '';
    const child = inboundChildren.get(peer, '', m.code) ?? inboundChildren.set(peer, '', m.code, inbound.labels({ ...destination, ...callerLabels(m.peer), code: String(m.code) }));
    child.inc();
    inboundDurationChild.observe(m.seconds);
  });

  // gRPC calls by the status they ended with, counted when their stream closes: a gRPC error is
  // an HTTP 200 with a grpc-status in its trailers, which the counters above cannot see.
  const grpcCalls = new TallyCounter({
    name: 'isthmus_grpc_requests_total',
    help: 'gRPC calls the app made through this sidecar, counted when they end, by the grpc-status they ended with (0 OK, 14 UNAVAILABLE, ...; "none": the stream was reset before a status).',
    registers,
  });
  const grpcOutbound = new Map<string, TallyCounterChild>();
  listen(channels.grpcOutboundEnded, (m) => {
    const status = grpcStatusLabel(m.grpcStatus);
    const key = `${m.cluster ?? 'none'}\u0000${m.service ?? 'unknown'}\u0000${status}`;
    const child = grpcOutbound.get(key)
      ?? keep(grpcOutbound, key, grpcCalls.labels({ source_cluster: cluster, destination_cluster: m.cluster ?? 'none', destination_service: m.service ?? 'unknown', grpc_status: status }));
    child.inc();
  });
  const grpcInboundCalls = new TallyCounter({
    name: 'isthmus_inbound_grpc_requests_total',
    help: 'gRPC calls that reached this workload through its sidecar, counted when they end, by the caller\'s SPIFFE namespace and service account and the grpc-status they ended with ("none": reset before a status).',
    registers,
  });
  const grpcInbound = new Map<string, TallyCounterChild>();
  listen(channels.grpcInboundEnded, (m) => {
    const status = grpcStatusLabel(m.grpcStatus);
    const key = `${m.peer ?? ''}\u0000${status}`;
    const child = grpcInbound.get(key) ?? keep(grpcInbound, key, grpcInboundCalls.labels({ ...destination, ...callerLabels(m.peer), grpc_status: status }));
    child.inc();
  });

  const ejections = new Counter({
    name: 'isthmus_endpoint_ejections_total',
    help: 'Endpoints (local instances or remote gateways) ejected by outlier detection, by the request that tipped it.',
    labelNames: ['source_cluster', 'destination_cluster', 'destination_service', 'reason'], registers,
  });
  listen(channels.balancerEjection, (m) => {
    ejections.inc({ source_cluster: cluster, destination_cluster: m.cluster ?? 'unknown', destination_service: m.service ?? 'unknown', reason: m.reason });
  });

  const failovers = new Counter({
    name: 'isthmus_failovers_total',
    help: 'Times a service\'s primary traffic moved to another locality priority (0 = same zone; "none" = no healthy endpoint).',
    labelNames: ['source_cluster', 'destination_service', 'from_priority', 'to_priority'], registers,
  });
  listen(channels.balancerFailover, (m) => {
    failovers.inc({ source_cluster: cluster, destination_service: `${m.namespace}/${m.service}`, from_priority: String(m.from ?? 'none'), to_priority: String(m.to ?? 'none') });
  });

  const policyActions = new Counter({
    name: 'isthmus_policy_actions_total',
    help: 'What resilience policies did to the app\'s requests: retry_budget_exhausted (a retry the budget refused), circuit_open, rate_limited, fault_abort, fault_delay.',
    labelNames: ['source_cluster', 'destination_service', 'action'], registers,
  });
  listen(channels.policyAction, (m) => {
    policyActions.inc({ source_cluster: cluster, destination_service: m.service ?? 'unknown', action: m.action });
  });

  const refused = new Counter({
    name: 'isthmus_requests_refused_total',
    help: 'Bytes a sidecar listener refused before they became a request, so nothing was forwarded: malformed (400: not HTTP/1.1 as RFC 9112 frames it, e.g. Content-Length with Transfer-Encoding, obs-fold, a bare CR, two Host fields), header_too_large (431), head_timeout (408).',
    labelNames: ['cluster', 'listener', 'reason'], registers,
  });
  listen(channels.requestRefused, (m) => {
    refused.inc({ cluster, listener: m.listener, reason: m.reason });
  });

  const authzDenied = new Counter({
    name: 'isthmus_authz_denied_total',
    help: 'Requests and connections this workload\'s inbound refused by authorization: reason deny_rule (rule names it), no_rule_allows, path_refused (400), or plaintext (a plain-text caller while the namespace\'s mTLS mode is strict).',
    labelNames: ['destination_cluster', 'destination_service', 'reason', 'rule'], registers,
  });
  // Rules come from stored policies (bounded); the caller is not a label (the event names it).
  listen(channels.authzDenied, (m) => {
    authzDenied.inc({ ...destination, reason: m.reason, rule: m.rule ?? '' });
  });

  tcpMetrics(registry, cluster, destination, callerLabels, listen);

  certificateExpiry(registry, cluster, sources.certificates);
}

const grpcStatusLabel = (status: number | undefined): string => (status === undefined ? 'none' : String(status));

/**
 * Keeps a metric's child for one label set under `key`, a string cheaper to build than the
 * labels, and returns it; the listeners look it up first and make it only when missing. The sets
 * are bounded (catalog services, mesh identities, status codes); the cap is a guard that costs nothing.
 */
function keep<C>(children: Map<string, C>, key: string, child: C): C {
  if (children.size >= 10_000) children.clear();
  children.set(key, child);
  return child;
}

/**
 * Metric children by three keys, map within map: the keys of a request's labels (catalog names, a
 * mesh identity, a status code) are the same string objects request after request, so each lookup
 * hashes nothing new, where one key joined from them would be a new string to hash every time.
 * Bounded as `keep` is.
 */
export class ChildrenByKeys<C> {
  private readonly children = new Map<string, Map<string, Map<number | string, C>>>();
  private size = 0;

  get(a: string, b: string, c: number | string): C | undefined {
    return this.children.get(a)?.get(b)?.get(c);
  }

  set(a: string, b: string, c: number | string, child: C): C {
    if (this.size >= 10_000) {
      this.children.clear();
      this.size = 0;
    }
    let byB = this.children.get(a);
    if (!byB) this.children.set(a, (byB = new Map()));
    let byC = byB.get(b);
    if (!byC) byB.set(b, (byC = new Map()));
    if (!byC.has(c)) this.size += 1;
    byC.set(c, child);
    return child;
  }
}

const callers = new Map<string, { source_namespace: string; source_service_account: string }>();

/** Namespace and service account from `spiffe://<td>/ns/<ns>/sa/<sa>`; other IDs are "other". Cached: IDs are few. */
export function callerLabels(peer: string | undefined): { source_namespace: string; source_service_account: string } {
  if (peer === undefined) return { source_namespace: 'unauthenticated', source_service_account: 'unauthenticated' };
  let labels = callers.get(peer);
  if (!labels) {
    let id: ReturnType<typeof parseSpiffeId> | undefined;
    try {
      id = parseSpiffeId(peer);
    } catch {
      id = undefined;
    }
    labels = { source_namespace: id?.namespace ?? 'other', source_service_account: id?.serviceAccount ?? 'other' };
    if (callers.size >= 10_000) callers.clear();
    callers.set(peer, labels);
  }
  return labels;
}
