import type { LabelSet } from './labels.js';
import {
  AliveRecordSchema, ClusterRecordSchema, ExportRecordSchema, GatewayRecordSchema, isRecord,
  type ClusterRecord, type GatewayRecord,
} from './records.js';
import { prefix } from '../core/keys.js';
import { compareText } from '../core/compare-text.js';

/**
 * The merged catalog: what every cluster of the mesh offers, built from the federation store's
 * records by a pure function, so that merging, withdrawal of silent clusters and malformed
 * records can be tested without etcd.
 */
export interface Catalog {
  /** The etcd revision this snapshot reflects; sidecars and gateways acknowledge by it. */
  revision: number;
  clusters: CatalogCluster[];
  services: CatalogService[];
  /** Records that did not parse, so an operator can find them (`isthmus check`). */
  invalidKeys: string[];
}

export interface CatalogGateway { id: string; address: string; port: number; zone: string }

export interface CatalogCluster {
  name: string;
  region: string;
  zones: string[];
  trustDomain: string;
  federation: string;
  joinedAt: string;
  /** False when its lease lapsed or its heartbeat is older than the stale limit. */
  alive: boolean;
  gateways: CatalogGateway[];
}

export interface CatalogServiceCluster {
  cluster: string;
  region: string;
  zones: { zone: string; healthy: number; total: number }[];
  gateways: CatalogGateway[];
  identities: string[];
  ports: { port: number; protocol: string; name?: string }[];
  /** `Headless` when that cluster's Service has no cluster IP; absent means ClusterSetIP. */
  serviceType?: 'Headless';
  /** Its instances' distinct label sets with counts (model/labels.ts); absent when none is labelled. */
  labelSets?: LabelSet[];
}

export interface CatalogService {
  namespace: string;
  name: string;
  clusters: CatalogServiceCluster[];
}

export interface CatalogInput {
  /** Key → parsed JSON value, every record under the mesh prefix. */
  records: ReadonlyMap<string, unknown>;
  revision: number;
  now: Date;
  /**
   * When this process last received each cluster's heartbeat (local clock, ms). Compared with
   * `now` on the same clock, so clock skew between clusters does not matter.
   */
  heartbeatsSeenAt: ReadonlyMap<string, number>;
  /**
   * A cluster whose heartbeat has not been seen for this long is withdrawn even if its records
   * are still in our copy: we may be cut off from etcd and miss the lease's expiry.
   */
  staleAfterMs: number;
}

export function buildCatalog(input: CatalogInput): Catalog {
  const clusterRecords = new Map<string, ClusterRecord>();
  const heartbeats = new Set<string>();
  const gateways = new Map<string, CatalogGateway[]>();
  const exports: { cluster: string; namespace: string; name: string; value: unknown; key: string }[] = [];
  const invalidKeys: string[] = [];

  for (const [key, value] of input.records) {
    const parts = key.slice(prefix.length + 1).split('/');
    const [kind, a, b, c] = parts;
    if (kind === 'clusters' && parts.length === 2 && a) {
      if (isRecord(ClusterRecordSchema, value)) clusterRecords.set(a, value);
      else invalidKeys.push(key);
    } else if (kind === 'clusters' && parts.length === 3 && a && b === 'alive') {
      if (isRecord(AliveRecordSchema, value)) heartbeats.add(a);
      else invalidKeys.push(key);
    } else if (kind === 'gateways' && parts.length === 3 && a && b) {
      if (isRecord(GatewayRecordSchema, value)) pushTo(gateways, a, toGateway(b, value));
      else invalidKeys.push(key);
    } else if (kind === 'exports' && parts.length === 4 && a && b && c) {
      exports.push({ cluster: a, namespace: b, name: c, value, key });
    }
  }

  const clusters: CatalogCluster[] = [...clusterRecords.values()]
    .map((record) => {
      const seenAt = input.heartbeatsSeenAt.get(record.name);
      const alive = heartbeats.has(record.name) && seenAt !== undefined && input.now.getTime() - seenAt <= input.staleAfterMs;
      return {
        name: record.name, region: record.region, zones: [...record.zones], trustDomain: record.trustDomain,
        federation: record.federation, joinedAt: record.joinedAt, alive,
        gateways: alive ? sortGateways(gateways.get(record.name) ?? []) : [],
      };
    })
    .sort((x, y) => compareText(x.name, y.name));
  const liveClusters = new Map(clusters.filter((c) => c.alive).map((c) => [c.name, c]));

  const services = new Map<string, CatalogService>();
  for (const entry of exports) {
    const cluster = liveClusters.get(entry.cluster);
    if (!cluster) continue; // withdrawn: a silent cluster is never served stale
    if (!isRecord(ExportRecordSchema, entry.value)) {
      invalidKeys.push(entry.key);
      continue;
    }
    const id = `${entry.namespace}/${entry.name}`;
    let service = services.get(id);
    if (!service) {
      service = { namespace: entry.namespace, name: entry.name, clusters: [] };
      services.set(id, service);
    }
    service.clusters.push({
      cluster: cluster.name,
      region: cluster.region,
      zones: Object.entries(entry.value.zones)
        .map(([zone, counts]) => ({ zone, healthy: counts.healthy, total: counts.total }))
        .sort((x, y) => compareText(x.zone, y.zone)),
      gateways: cluster.gateways,
      identities: [...entry.value.identities].sort(),
      ports: entry.value.ports.map((p) => ({ ...p })),
      ...(entry.value.serviceType ? { serviceType: entry.value.serviceType } : {}),
      ...(entry.value.labelSets && entry.value.labelSets.length > 0 ? { labelSets: entry.value.labelSets.map((l) => ({ labels: { ...l.labels }, healthy: l.healthy, total: l.total })) } : {}),
    });
  }
  for (const service of services.values()) service.clusters.sort((x, y) => compareText(x.cluster, y.cluster));

  return {
    revision: input.revision,
    clusters,
    services: [...services.values()].sort((x, y) => compareText(`${x.namespace}/${x.name}`, `${y.namespace}/${y.name}`)),
    invalidKeys: invalidKeys.sort(),
  };
}

function toGateway(id: string, value: GatewayRecord): CatalogGateway {
  return { id, address: value.address, port: value.port, zone: value.zone };
}

function sortGateways(list: CatalogGateway[]): CatalogGateway[] {
  return [...list].sort((x, y) => compareText(x.id, y.id));
}

function pushTo<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

export function findService(catalog: Catalog, namespace: string, name: string): CatalogService | undefined {
  return catalog.services.find((s) => s.namespace === namespace && s.name === name);
}
