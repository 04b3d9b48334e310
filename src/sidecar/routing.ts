import { channels } from '../core/channels.js';
import type { Catalog } from '../model/catalog.js';
import { serviceProtocol, type AppProtocol } from './tcp-protocol.js';
import { pickEndpoint, pickPrepared, prepareEndpoints, retryOrder, type PickedEndpoint, type PreparedEndpoints } from '../model/balancer.js';
import { withClusterOrder } from '../model/failover-order.js';
import { withinScope } from '../model/failover-scope.js';
import { localitiesFor, type ServiceLocalities } from '../model/localities.js';
import { endpointLoad, forgetLatency, type EndpointLoad } from '../model/peak-ewma.js';
import { ejectedAddresses, isEjected, outlierState, recordResult, unejectHost, withHosts, type OutlierConfig, type OutlierResult, type OutlierState } from '../model/outlier.js';
import { healthCounts, priorityLoad, type PriorityLoad } from '../model/priority-load.js';
import { hasLabels } from '../model/labels.js';
import { formatServiceSni } from '../model/sni.js';
import type { PolicyRecord } from '../model/policy-records.js';
import { compileAuthorization, emptyAuthorization, type AuthorizationTable } from '../model/authorization.js';
import { summariseAuthorization, type AuthorizationSummary } from '../model/authorization-summary.js';
import { backendName, liveSplit, summarisePolicies, type LiveSplit, type PolicySummary } from '../model/policy-summary.js';
import { compileTrafficPolicies, type Backend, type ServiceRoutes } from '../model/traffic-policy.js';
import { ResiliencePolicies } from './resilience-state.js';
import type { UpstreamKey } from './upstreams.js';

export const failoverChannel = channels.balancerFailover;
const ejectionChannel = channels.balancerEjection;

export interface LocalEndpointsSnapshot {
  version: number;
  cluster: string;
  services: { namespace: string; name: string; identities: string[]; endpoints: { address: string; zone: string; healthy: boolean; labels?: Record<string, string> }[] }[];
}

export interface Route {
  namespace: string;
  service: string;
  /** `<namespace>/<service>`, made once per route: telemetry keys and labels use this one string. */
  name: string;
  localities: ServiceLocalities;
  load: PriorityLoad;
  /** Where most traffic goes now: the lowest priority with load. */
  primary: number | undefined;
  /** Each priority's eligible endpoints, worked out once per route so a pick allocates nothing. */
  prepared: PreparedEndpoints;
  /** Per endpoint address: the SNI to send and the identities allowed to answer, worked out once per route. */
  upstreams: ReadonlyMap<string, UpstreamKey>;
  computedAt: number;
}

/** How long a service counts as called after the app's last request to it: between one and two of these. */
export const calledWindowMs = 5 * 60_000;

/**
 * The sidecar's routing state: catalog + local endpoints + health (active checks, outlier
 * ejections) → per-service localities and priority load. Decisions are cached per service and
 * recomputed only when an input changes, never per request.
 */
export class RoutingTable {
  private catalog: Catalog | undefined;
  private endpoints: LocalEndpointsSnapshot | undefined;
  /** `<ns>/<name>` → the service's entry in each snapshot: lookups stay O(1) with a catalog of thousands. */
  private catalogServices = new Map<string, Catalog['services'][number]>();
  private localServices = new Map<string, LocalEndpointsSnapshot['services'][number]>();
  private readonly routes = new Map<string, Route>();
  private outliers: OutlierState = outlierState();
  /** host:port of every other cluster's gateway (remoteGateways()), for record() on the request path. */
  private gateways = new Set<string>();
  /** serviceAtGateway's keys by gateway and service, made once each rather than per answer. */
  private readonly gatewayKeys = new Map<string, Map<string, string>>();
  private readonly lastPrimary = new Map<string, number | undefined>();
  /**
   * The closest priority each service has had as its primary in this table. A move to a closer
   * one than that is capacity coming into service (the first healthy decision at start-up, or
   * local instances whose first check passes after remote ones were in use), not a failover.
   */
  private readonly closestEver = new Map<string, number>();
  /**
   * Latency and outstanding requests per endpoint address, for the balancer (peak-ewma.ts): one
   * object per address for its life in the catalog, so routes recomputed on a health change keep
   * what was measured, and the request path updates it in place.
   */
  private readonly loads = new Map<string, EndpointLoad>();
  /** When each address last answered a request (this table's clock); few entries: one per endpoint or gateway ever called. */
  private readonly answeredAt = new Map<string, number>();
  /**
   * Services (`<ns>/<name>`) the app has sent a request or a connection to since `calledSince`,
   * and in the window before (`calledBefore`): only their local instances are checked actively,
   * so a service the app stopped calling leaves the checks after one to two windows.
   */
  private called = new Set<string>();
  private calledBefore = new Set<string>();
  private calledSince: number | undefined;
  /** Routing policies by `<ns>/<service>` (model/traffic-policy.ts), compiled once per policy snapshot. */
  private policies = new Map<string, ServiceRoutes>();
  /** Retries, breakers, outlier settings, rate limits, faults and failover per service (resilience-state.ts). */
  readonly resilience = new ResiliencePolicies();
  /** Requests per backend the policy step chose, since the last policy snapshot (explain's live split); keyed by objects, so counting allocates nothing. */
  private splitCounts = new Map<ServiceRoutes, Map<Backend, number>>();
  /** Who may call each service (enforced by the destinations' inbounds; kept here for explain). */
  private authorization: AuthorizationTable = emptyAuthorization;

  constructor(
    private readonly caller: { cluster: string; zone: string },
    private readonly activeHealthy: (address: string) => boolean,
    private readonly now: () => number = Date.now,
  ) {}

  get ready(): boolean {
    return this.catalog !== undefined;
  }

  setCatalog(catalog: Catalog): void {
    this.catalog = catalog;
    this.catalogServices = new Map(catalog.services.map((s) => [`${s.namespace}/${s.name}`, s]));
    this.trackHosts();
  }

  setEndpoints(endpoints: LocalEndpointsSnapshot): void {
    this.endpoints = endpoints;
    this.localServices = new Map(endpoints.services.map((s) => [`${s.namespace}/${s.name}`, s]));
    this.trackHosts();
  }

  setPolicies(records: readonly PolicyRecord[]): void {
    this.policies = compileTrafficPolicies(records);
    this.splitCounts = new Map();
    this.resilience.set(records);
    this.authorization = compileAuthorization(records);
    // A FailoverPolicy changes localities.
    this.invalidate();
  }

  /** Some routing or resilience policy exists: requests go through the policy step. */
  get hasPolicies(): boolean {
    return this.policies.size > 0 || this.resilience.size > 0;
  }

  /** The routing policy of a service the app called, if any applies to it. */
  policyFor(namespace: string, service: string): ServiceRoutes | undefined {
    return this.policies.size === 0 ? undefined : this.policies.get(`${namespace}/${service}`);
  }

  /** One request of `routes`' service went to `backend` (the policy step's choice). */
  countSplit(routes: ServiceRoutes, backend: Backend): void {
    let counts = this.splitCounts.get(routes);
    if (!counts) this.splitCounts.set(routes, (counts = new Map()));
    counts.set(backend, (counts.get(backend) ?? 0) + 1);
  }

  /**
   * Every split's counts since the policy snapshot arrived, for the traffic reporter: the same
   * objects as keys on every call until the next snapshot, so a reader can keep what it saw
   * last by them and send only the difference. Read every few seconds, never per request.
   */
  forEachSplitCount(fn: (routes: ServiceRoutes, backend: Backend, requests: number) => void): void {
    for (const [routes, counts] of this.splitCounts) for (const [backend, n] of counts) fn(routes, backend, n);
  }

  /** Who may call a service, as its inbound decides it (the same policy snapshot reaches every sidecar). */
  authorizationOf(namespace: string, service: string): AuthorizationSummary {
    return summariseAuthorization(this.authorization, namespace, service);
  }

  /** The policies in force for a service the app names, and the split its requests took since they arrived. */
  policiesOf(namespace: string, service: string): { policies: PolicySummary; liveSplit: LiveSplit[] } | undefined {
    const routes = this.policyFor(namespace, service);
    const policies = summarisePolicies(routes, this.resilience.of(`${namespace}/${service}`));
    if (!policies) return undefined;
    const counts = new Map<string, number>();
    for (const [backend, n] of (routes && this.splitCounts.get(routes)) ?? []) {
      const name = backendName(backend);
      counts.set(name, (counts.get(name) ?? 0) + n);
    }
    return { policies, liveSplit: liveSplit(counts) };
  }

  /**
   * Called with every address the sidecar may send to, each time the catalog or the local
   * endpoints change: the sidecar closes its connections to the others (upstreams.ts retireExcept).
   */
  onAddresses: ((present: ReadonlySet<string>) => void) | undefined;

  /** Outlier history is kept for every endpoint of every service, and dropped only when it leaves. */
  private trackHosts(): void {
    const addresses = this.addresses();
    const present = new Set(addresses);
    this.gateways = new Set(this.remoteGateways());
    this.gatewayKeys.clear();
    // A gateway's answers per service (record()) are kept while the gateway is.
    const perService = [...this.outliers.hosts.keys()].filter((key) => {
      const split = key.indexOf(' ');
      return split > 0 && present.has(key.slice(0, split));
    });
    this.outliers = withHosts(this.outliers, [...addresses, ...perService]);
    for (const address of this.loads.keys()) if (!present.has(address)) this.loads.delete(address);
    this.invalidate();
    this.onAddresses?.(present);
  }

  /** The balancer's record of `address` (made on first use). */
  loadOf(address: string): EndpointLoad {
    let load = this.loads.get(address);
    if (!load) this.loads.set(address, (load = endpointLoad()));
    return load;
  }

  /**
   * `address` is back in service (its check passes again, or its ejection ended early): the
   * balancer's latency estimate restarts, so a peak from the outage does not keep it unused.
   */
  forgetLatency(address: string): void {
    const load = this.loads.get(address);
    if (load) forgetLatency(load, performance.now());
  }

  /** Health of some endpoint changed (active check or ejection): recompute on next use. */
  invalidate(): void {
    this.routes.clear();
  }

  /** Every address the sidecar may send to: outlier and balancer records are kept for these, and dropped with them. */
  addresses(): string[] {
    const local = this.endpoints?.services.flatMap((s) => s.endpoints.map((e) => e.address)) ?? [];
    return [...new Set([...local, ...this.remoteGateways()])];
  }

  /**
   * What this sidecar checks itself (sidecar.ts, HealthChecker): the local instances of the
   * services its app has called, and the gateway of every other cluster. The federation already
   * checks every local instance and sends its verdict with the endpoints; a sidecar that checked
   * them all as well made each cluster's checks grow with the square of its instances, for
   * services most sidecars never call. An instance not checked here is as healthy as the
   * federation says; a service's instances are checked from the round after its first request,
   * and no longer once the app has not called it for one to two `calledWindowMs`.
   */
  checkedAddresses(): string[] {
    const now = this.now();
    this.calledSince ??= now;
    if (now - this.calledSince >= calledWindowMs) {
      this.calledBefore = this.called;
      this.called = new Set();
      this.calledSince = now;
    }
    const local: string[] = [];
    for (const key of new Set([...this.calledBefore, ...this.called])) for (const e of this.localServices.get(key)?.endpoints ?? []) local.push(e.address);
    return [...new Set([...local, ...this.remoteGateways()])];
  }

  private remoteGateways(): string[] {
    return this.catalog?.clusters.filter((c) => c.name !== this.caller.cluster).flatMap((c) => c.gateways.map((g) => `${g.address}:${g.port}`)) ?? [];
  }

  /** The remote cluster whose gateway listens at `address` (host:port), or undefined for any other address. */
  gatewayCluster(address: string): string | undefined {
    return this.catalog?.clusters.find((c) => c.name !== this.caller.cluster && c.gateways.some((g) => `${g.address}:${g.port}` === address))?.name;
  }

  /** The service's entry in the current catalog (every cluster that exports it, with its ports). */
  catalogService(namespace: string, service: string): Catalog['services'][number] | undefined {
    return this.catalogServices.get(`${namespace}/${service}`);
  }

  /** What the catalog declares for a service now (tcp-protocol.ts serviceProtocol); undefined when no cluster exports it. */
  protocolOf(namespace: string, service: string, port?: number): AppProtocol | undefined {
    return serviceProtocol(this.catalogService(namespace, service), port);
  }

  knows(namespace: string, service: string): boolean {
    const key = `${namespace}/${service}`;
    return this.catalogServices.has(key) || this.localServices.has(key);
  }

  /**
   * A service's route, or with `subset` the route to those of its instances that carry all the
   * subset's labels: this cluster's own instances by their labels, and the other clusters whose
   * export counts healthy instances of a matching label set, through their gateways with the
   * subset named in the SNI (the gateway there picks only that subset's instances).
   */
  route(namespace: string, service: string, subset?: Backend['subset']): Route | undefined {
    const serviceKey = `${namespace}/${service}`;
    if (!this.called.has(serviceKey) && this.knows(namespace, service)) this.called.add(serviceKey);
    return this.resolve(serviceKey, namespace, service, subset);
  }

  /** The route as route() gives it, for a reader (admin /routes, explain): the service does not count as called. */
  peek(namespace: string, service: string): Route | undefined {
    return this.resolve(`${namespace}/${service}`, namespace, service);
  }

  private resolve(serviceKey: string, namespace: string, service: string, subset?: Backend['subset']): Route | undefined {
    const key = subset ? `${serviceKey}#${subset.name}` : serviceKey;
    const cached = this.routes.get(key);
    if (cached) return cached;
    if (!this.catalog || !this.knows(namespace, service)) return undefined;
    const region = this.catalog.clusters.find((c) => c.name === this.caller.cluster)?.region ?? '';
    const all = this.localServices.get(serviceKey)?.endpoints ?? [];
    const local = subset ? all.filter((e) => hasLabels(e.labels, subset.labels)) : all;
    const now = this.now();
    const ejectedNow = ejectedAddresses(this.outliers, now);
    const catalogService = this.catalogServices.get(serviceKey) ?? null;
    const unscoped = localitiesFor({ catalog: this.catalog, namespace, service, caller: { ...this.caller, region }, localEndpoints: local, catalogService, ...(subset ? { subset } : {}) });
    // A FailoverPolicy's scope keeps traffic within the caller's zone, cluster or region; its
    // order then ranks the remaining clusters, one priority level each.
    const failover = this.resilience.of(serviceKey)?.failover;
    const base = failover ? withClusterOrder(withinScope(unscoped, failover.scope), failover.order, this.caller.cluster) : unscoped;
    // Health as this sidecar sees it: what the federation reports, and our own checks, and not
    // ejected (a gateway also not for this service's answers through it). If ejections alone would
    // leave the service nothing, they are set aside for it, as Envoy's panic threshold routes to
    // every host when too few are healthy: an app that answers 5xx on some paths then still serves
    // the rest, instead of none for the ejection's time.
    const ejected = (e: { address: string; kind: string }) => ejectedNow.has(e.address) || (e.kind === 'gateway' && ejectedNow.has(serviceAtGateway(e.address, serviceKey)));
    const checked = (e: { address: string; healthy: boolean }) => e.healthy && this.activeHealthy(e.address);
    const panic = ejectedNow.size > 0 && !base.localities.some((l) => l.endpoints.some((e) => checked(e) && !ejected(e)));
    const localities: ServiceLocalities = {
      localities: base.localities.map((l) => ({
        ...l,
        endpoints: l.endpoints.map((e) => ({ ...e, healthy: checked(e) && (panic || !ejected(e)), load: this.loadOf(e.address) })),
      })),
    };
    const load = priorityLoad(healthCounts(localities));
    const primary = load.loads.findIndex((l) => l > 0);
    const route: Route = { namespace, service, name: `${namespace}/${service}`, localities, load, prepared: prepareEndpoints(localities), primary: primary < 0 ? undefined : primary, upstreams: this.upstreamKeys(namespace, service, localities), computedAt: now };
    this.routes.set(key, route);
    // "From nowhere" before any healthy decision is the mesh starting (or a service appearing),
    // not traffic moving: no failover event and no failover count for it. Nor is a move to a
    // priority closer than any this service has used here: at start-up the remote clusters'
    // instances may pass their checks before the local ones do, and the local ones then come
    // into service. Once routed, losing every endpoint, moving away, and coming back to where
    // traffic was are failovers (and failbacks) like any other move.
    const closest = this.closestEver.get(key);
    const closer = route.primary !== undefined && (closest === undefined || route.primary < closest);
    if (closer) this.closestEver.set(key, route.primary as number);
    if (closest !== undefined && !closer && this.lastPrimary.has(key) && this.lastPrimary.get(key) !== route.primary && failoverChannel.hasSubscribers) {
      const from = this.lastPrimary.get(key);
      const clustersAt = (priority: number | undefined) => [...new Set(localities.localities.filter((l) => l.priority === priority).map((l) => l.cluster))].sort();
      failoverChannel.publish({ origin: this, namespace, service, from, to: route.primary, fromClusters: clustersAt(from), toClusters: clustersAt(route.primary), loads: load.loads, at: now });
    }
    this.lastPrimary.set(key, route.primary);
    return route;
  }

  /**
   * A direct connection to a local sidecar names the service with our own cluster's SNI; a
   * gateway endpoint carries the remote SNI already. The allowed identities come from the local
   * endpoints snapshot or from the exporting cluster's catalog entry.
   */
  private upstreamKeys(namespace: string, service: string, localities: ServiceLocalities): Map<string, UpstreamKey> {
    const localIdentities = this.localServices.get(`${namespace}/${service}`)?.identities ?? [];
    const exported = this.catalogServices.get(`${namespace}/${service}`);
    const keys = new Map<string, UpstreamKey>();
    for (const locality of localities.localities) {
      for (const endpoint of locality.endpoints) {
        const sni = endpoint.sni ?? formatServiceSni({ service, namespace, cluster: this.caller.cluster });
        const identities = endpoint.kind === 'local' ? localIdentities : (exported?.clusters.find((c) => c.cluster === locality.cluster)?.identities ?? []);
        keys.set(endpoint.address, { address: endpoint.address, sni, identities, id: `${endpoint.address}|${sni}|${identities.join(',')}` });
      }
    }
    return keys;
  }

  /**
   * `now`: performance.now(), the clock the request path stamps latencies with (attempts.ts);
   * a caller that reads it anyway passes it, since a read costs as much as the rest of the pick.
   */
  pick(route: Route, exclude?: ReadonlySet<string>, now = performance.now()): PickedEndpoint | undefined {
    if (!exclude || exclude.size === 0) return pickPrepared(route.prepared, route.load.loads, Math.random, now);
    return pickEndpoint(route.localities, route.load.loads, Math.random, exclude, now);
  }

  /**
   * Whether the health checker must probe `address` this round although it is idle: requests
   * sent there wait for their answers (they may hang there now), or outlier detection ejected
   * it (a fresh check may end a connect-error ejection early; an old verdict must not).
   */
  needsCheck(address: string): boolean {
    return (this.loads.get(address)?.outstanding ?? 0) > 0 || isEjected(this.outliers, address, this.now());
  }

  /** Whether `address` answered a request at or after `since` (ms, this table's clock): the health checker's passive proof. */
  answeredSince(address: string, since: number): boolean {
    return (this.answeredAt.get(address) ?? Number.NEGATIVE_INFINITY) >= since;
  }

  retries(route: Route, failed: PickedEndpoint, exclude: ReadonlySet<string>): PickedEndpoint[] {
    return retryOrder(route.localities, failed, Math.random, exclude);
  }

  /**
   * Feeds outlier detection; an ejection or a return changes health, so routes are recomputed.
   * `about` is the request's `<ns>/<name>` and the endpoint's cluster.
   *
   * Another cluster's gateway carries every service that cluster exports, so what its answers
   * say is about the service behind it, not the gateway: a 5xx (or an answer) through a gateway
   * counts for that service at that gateway (`serviceAtGateway`), as Envoy counts a host per
   * cluster, and five 5xx of one service no longer eject the gateway for every other one. A
   * refused connection or failed handshake is the gateway's own, and counts for it whatever the
   * service.
   */
  record(address: string, result: OutlierResult, about?: { service: string; cluster: string }): void {
    const now = this.now();
    if (result.ok) this.answeredAt.set(address, now);
    const config = about ? this.resilience.of(about.service)?.outlier : undefined;
    if (about && result.kind !== 'connect-error' && this.gateways.has(address)) {
      // An answer also clears the gateway's own count of connect errors in a row.
      if (result.ok) this.outliers = recordResult(this.outliers, address, result, now, config);
      return this.recordAt(this.gatewayKey(address, about.service), address, result, now, config, about);
    }
    this.recordAt(address, address, result, now, config, about);
  }

  private gatewayKey(address: string, service: string): string {
    let byService = this.gatewayKeys.get(address);
    if (!byService) this.gatewayKeys.set(address, (byService = new Map()));
    let key = byService.get(service);
    if (key === undefined) byService.set(service, (key = serviceAtGateway(address, service)));
    return key;
  }

  private recordAt(key: string, address: string, result: OutlierResult, now: number, config: OutlierConfig | undefined, about: { service: string; cluster: string } | undefined): void {
    const before = isEjected(this.outliers, key, now);
    // A service's OutlierDetection policy replaces the defaults for the results of its requests.
    this.outliers = recordResult(this.outliers, key, result, now, config);
    if (isEjected(this.outliers, key, now) === before) return;
    this.invalidate();
    if (!before && !result.ok && ejectionChannel.hasSubscribers) {
      ejectionChannel.publish({ origin: this, address, reason: result.kind, service: about?.service, cluster: about?.cluster, at: now });
    }
  }

  /**
   * Hosts ejected for refusing connections return as soon as an active check connects (Envoy's
   * default). A TCP check says nothing about 5xx, so those ejections run their course.
   */
  unejectReachable(isReachable: (address: string) => boolean | undefined): void {
    const now = this.now();
    const before = this.outliers;
    for (const address of ejectedAddresses(this.outliers, now)) {
      if (isReachable(address) !== true) continue;
      const next = unejectHost(this.outliers, address, now, 'connect-error');
      if (next !== this.outliers) this.forgetLatency(address);
      this.outliers = next;
    }
    if (this.outliers !== before) this.invalidate();
  }

  ejected(): Set<string> {
    return ejectedAddresses(this.outliers, this.now());
  }
}

/** The outlier key of `service`'s answers through the gateway at `address` (RoutingTable.record). */
export function serviceAtGateway(address: string, service: string): string {
  return `${address} ${service}`;
}
