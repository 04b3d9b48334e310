import { keys } from '../core/keys.js';
import type { Catalog } from '../model/catalog.js';
import { isRecord, ProbeRecordSchema, type ProbeRecord } from '../model/records.js';

/** What the dashboard page draws: one JSON document, sent by /api/overview and pushed by /api/stream. */
export interface Overview {
  /** The cluster whose federation serves this page. */
  servedBy: string;
  generatedAt: string;
  catalogRevision: number;
  clusters: { name: string; region: string; alive: boolean; gateways: number }[];
  services: { namespace: string; name: string; clusters: { cluster: string; healthy: number; total: number }[] }[];
  /** Every `/probes/<from>/<to>` record in our mirror, sorted by pair. */
  probes: Omit<ProbeRecord, 'version' | 'gateways'>[];
}

/** The parts of a Federation the overview reads (an interface so it can be tested without etcd). */
export interface OverviewSource {
  cluster: string;
  catalog: Catalog;
  mirror: { entries(prefix: string): [string, unknown][] };
}

export function buildOverview(source: OverviewSource, now = new Date()): Overview {
  const { catalog } = source;
  return {
    servedBy: source.cluster,
    generatedAt: now.toISOString(),
    catalogRevision: catalog.revision,
    clusters: catalog.clusters
      .map((c) => ({ name: c.name, region: c.region, alive: c.alive, gateways: c.gateways.length }))
      .sort((a, b) => a.name.localeCompare(b.name)),
    services: catalog.services
      .map((s) => ({
        namespace: s.namespace,
        name: s.name,
        clusters: s.clusters.map((c) => ({
          cluster: c.cluster,
          healthy: c.zones.reduce((n, z) => n + z.healthy, 0),
          total: c.zones.reduce((n, z) => n + z.total, 0),
        })).sort((a, b) => a.cluster.localeCompare(b.cluster)),
      }))
      .sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`)),
    probes: probeRecords(source.mirror.entries(keys.probes))
      .map(({ version: _v, gateways: _g, ...rest }) => rest),
  };
}

/** The same selection as the API's /v1/probes: `<prefix><from>/<to>` keys holding a valid record. */
function probeRecords(entries: [string, unknown][]): ProbeRecord[] {
  return entries
    .flatMap(([key, value]) => (key.slice(keys.probes.length).split('/').length === 2 && isRecord(ProbeRecordSchema, value) ? [value] : []))
    .sort((a, b) => a.from.localeCompare(b.from) || a.to.localeCompare(b.to));
}
