import type { EndpointLoad } from './peak-ewma.js';
import { findService, type Catalog, type CatalogService } from './catalog.js';
import { subsetCounts } from './labels.js';
import { formatServiceSni } from './sni.js';
import { compareText } from '../core/compare-text.js';

/**
 * The endpoints of one service as one caller sees them, grouped by locality and ranked by
 * priority relative to that caller (docs/sidecar.md, "Locality priorities and spill-over"). Shaped like Envoy's
 * ClusterLoadAssignment: localities with a priority, each holding endpoints with health and
 * weight. A remote cluster is one more locality whose endpoints are its east-west gateways.
 */
export type Priority = number;
/**
 * The four levels of the default ranking. A FailoverPolicy's cluster order (failover-order.ts)
 * gives each listed cluster a level of its own, so a service may have more: code that walks the
 * levels asks `priorityLevels` instead of assuming four.
 */
export const priorities: readonly Priority[] = [0, 1, 2, 3];

/** The levels of a service's ranking: at least the default four, more when an order adds some. */
export function priorityLevels(service: ServiceLocalities): Priority[] {
  const deepest = service.localities.reduce((max, l) => Math.max(max, l.priority), priorities.length - 1);
  return Array.from({ length: deepest + 1 }, (_, i) => i);
}

export interface Endpoint {
  /** Where to connect: `host:port` of a workload (`local`) or of an east-west gateway (`gateway`). */
  address: string;
  healthy: boolean;
  /** Relative share among the healthy endpoints of the same priority; any positive number. */
  weight: number;
  kind: 'local' | 'gateway';
  /** Gateway endpoints only: the SNI that names the service to the remote gateway (contract). */
  sni?: string;
  /** The sidecar's latency and outstanding requests for this address (peak-ewma.ts); absent, the balancer goes by weight alone. */
  load?: EndpointLoad;
}

export interface Locality {
  region: string;
  zone: string;
  cluster: string;
  priority: Priority;
  endpoints: Endpoint[];
}

export interface ServiceLocalities {
  localities: Locality[];
}

export interface CallerLocality { region: string; zone: string; cluster: string }

/** An instance of the service in the caller's own cluster, as the local platform reports it. */
export interface LocalEndpoint { address: string; zone: string; healthy: boolean; weight?: number }

export interface LocalitiesInput {
  catalog: Catalog;
  namespace: string;
  service: string;
  caller: CallerLocality;
  localEndpoints: readonly LocalEndpoint[];
  /**
   * The service's entry in `catalog` (null: not in it), when the caller has it indexed already:
   * scanning a catalog of thousands for every route made explaining all routes quadratic.
   */
  catalogService?: CatalogService | null;
  /**
   * Only a ServiceSubset's instances: `localEndpoints` are already those; another cluster counts
   * only its instances of a matching label set (its export's `labelSets`), is left out without
   * one, and is dialled with the subset in the SNI.
   */
  subset?: { name: string; labels: Readonly<Record<string, string>> };
}


/**
 * Ranks every endpoint the caller may use for `namespace/service`:
 * P0 its own zone, P1 the other zones of its cluster, P2 other clusters of its region, P3 the
 * rest. Pure: the same snapshot and caller always give the same, sorted answer, so a sidecar can
 * compare two results to decide whether anything changed.
 */
export function localitiesFor(opts: LocalitiesInput): ServiceLocalities {
  const { caller } = opts;
  const localities: Locality[] = [];

  // The caller's own cluster comes from the local platform, with real addresses; the catalog's
  // copy of our own export only has counts, so it is skipped below.
  const localByZone = new Map<string, Endpoint[]>();
  for (const e of opts.localEndpoints) {
    const endpoint: Endpoint = { address: e.address, healthy: e.healthy, weight: e.weight ?? 1, kind: 'local' };
    pushTo(localByZone, e.zone, endpoint);
  }
  for (const [zone, endpoints] of localByZone) {
    localities.push({
      region: caller.region, zone, cluster: caller.cluster,
      priority: zone === caller.zone ? 0 : 1,
      endpoints: endpoints.sort(byAddress),
    });
  }

  const service = opts.catalogService === undefined ? findService(opts.catalog, opts.namespace, opts.service) : opts.catalogService;
  for (const exported of service?.clusters ?? []) {
    if (exported.cluster === caller.cluster) continue;
    // A cluster without a live gateway cannot be reached, however healthy its pods are.
    if (exported.gateways.length === 0) continue;
    const inSubset = opts.subset ? subsetCounts(exported.labelSets, opts.subset.labels) : undefined;
    if (inSubset && inSubset.total === 0) continue;
    const healthyBehind = inSubset ? inSubset.healthy : exported.zones.reduce((sum, z) => sum + Math.max(0, z.healthy), 0);
    // The gateway picks a healthy pod itself, so it is usable as soon as any zone has one.
    const healthy = healthyBehind > 0;
    // Spread the cluster's capacity over its gateways: a cluster's share of its priority then
    // follows how many healthy endpoints it has, not how many gateways it happens to run.
    const weight = Math.max(1, healthyBehind) / exported.gateways.length;
    const sni = formatServiceSni({ service: opts.service, namespace: opts.namespace, cluster: exported.cluster, ...(opts.subset ? { subset: opts.subset.name } : {}) });

    const gatewaysByZone = new Map<string, Endpoint[]>();
    for (const gateway of exported.gateways) {
      pushTo(gatewaysByZone, gateway.zone, {
        address: `${gateway.address}:${gateway.port}`, healthy, weight, kind: 'gateway', sni,
      });
    }
    for (const [zone, endpoints] of gatewaysByZone) {
      localities.push({
        region: exported.region, zone, cluster: exported.cluster,
        priority: exported.region === caller.region ? 2 : 3,
        endpoints: endpoints.sort(byAddress),
      });
    }
  }

  localities.sort((x, y) => x.priority - y.priority || compareText(x.cluster, y.cluster) || compareText(x.zone, y.zone));
  return { localities };
}

function byAddress(x: Endpoint, y: Endpoint): number {
  return compareText(x.address, y.address);
}

function pushTo<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}
