import { Gauge, type Registry } from './prom.js';
import { certificateExpiry, type CertificateFacts } from './shared.js';

export interface CatalogFacts {
  services: unknown[];
  clusters: { name: string; alive: boolean }[];
}

export interface FederationSources {
  /** Per cluster, when we last received a write of its heartbeat (local clock, ms): StoreMirror.clusterSyncs(). */
  clusterSyncs?: () => { cluster: string; seenAt: number }[];
  catalog?: () => CatalogFacts;
  certificates?: () => CertificateFacts[];
  /** This federation's latest gateway probe summaries, one per other cluster (GatewayProber.records()). */
  probes?: () => readonly { to: string; p50Ms: number | null; p99Ms: number | null }[];
  /** Every objective's verdict as the dashboard computes it (src/dashboard/overview.ts SloView). */
  slos?: () => readonly { namespace: string; name: string; service: string; burnRate: { window: number | null; short: number | null }; state: string }[];
  /** Endpoints of this cluster's services left out of the mesh, by reason (Platform.skippedEndpoints). */
  skippedEndpoints?: () => Record<string, number>;
  now?: () => number;
}

/** A federation service's metrics, all read on scrape from its mirror and catalog. */
export function federationMetrics(registry: Registry, cluster: string, sources: FederationSources): void {
  const registers = [registry];
  const now = sources.now ?? Date.now;
  const { clusterSyncs, catalog } = sources;
  if (clusterSyncs) {
    new Gauge({
      name: 'isthmus_federation_sync_lag_seconds',
      help: 'Seconds since this federation service last received a heartbeat write of each other cluster in its catalog (it writes one every lease TTL / 3).',
      labelNames: ['cluster', 'remote_cluster'], registers,
      collect() {
        this.reset();
        // A cluster that left the mesh drops out of the catalog; its last heartbeat is no lag to alert on.
        const known = catalog ? new Set(catalog().clusters.map((c) => c.name)) : undefined;
        const at = now();
        for (const sync of clusterSyncs()) {
          if (sync.cluster === cluster || (known && !known.has(sync.cluster))) continue;
          this.set({ cluster, remote_cluster: sync.cluster }, Math.max(0, (at - sync.seenAt) / 1000));
        }
      },
    });
  }
  if (catalog) {
    const gauge = (name: string, help: string, value: (c: CatalogFacts) => number) => new Gauge({
      name, help, labelNames: ['cluster'], registers,
      collect() {
        this.set({ cluster }, value(catalog()));
      },
    });
    gauge('isthmus_catalog_services', 'Services in this federation service\'s merged catalog (any cluster).', (c) => c.services.length);
    gauge('isthmus_catalog_clusters', 'Clusters in the catalog, alive or not.', (c) => c.clusters.length);
    gauge('isthmus_catalog_clusters_alive', 'Clusters in the catalog whose lease and heartbeat are current.', (c) => c.clusters.filter((x) => x.alive).length);
  }
  const { probes } = sources;
  if (probes) {
    new Gauge({
      name: 'isthmus_gateway_probe_latency_seconds',
      help: 'Round trip of GET /healthz from this federation service through each other cluster\'s gateways to its federation, over a kept TLS connection (the handshake is not included), over the last 60 probes.',
      labelNames: ['cluster', 'remote_cluster', 'quantile'], registers,
      collect() {
        this.reset();
        // A pair with no successful probe in its window has no latency; its absence is the signal.
        for (const probe of probes()) {
          if (probe.p50Ms !== null) this.set({ cluster, remote_cluster: probe.to, quantile: '0.5' }, probe.p50Ms / 1000);
          if (probe.p99Ms !== null) this.set({ cluster, remote_cluster: probe.to, quantile: '0.99' }, probe.p99Ms / 1000);
        }
      },
    });
  }
  const { slos } = sources;
  if (slos) {
    const labelNames = ['cluster', 'slo', 'destination_service', 'window'];
    new Gauge({
      name: 'isthmus_slo_burn_rate',
      help: 'Error-budget burn of each service level objective as this federation reads the mesh\'s traffic: 1 spends the budget exactly over the window, above 1 misses it. window="objective" is the objective\'s own window, "5m" the last five minutes. Absent with too few requests.',
      labelNames, registers,
      collect() {
        this.reset();
        for (const slo of slos()) {
          const labels = { cluster, slo: `${slo.namespace}/${slo.name}`, destination_service: `${slo.namespace}/${slo.service}` };
          if (slo.burnRate.window !== null) this.set({ ...labels, window: 'objective' }, slo.burnRate.window);
          if (slo.burnRate.short !== null) this.set({ ...labels, window: '5m' }, slo.burnRate.short);
        }
      },
    });
  }
  const { skippedEndpoints } = sources;
  if (skippedEndpoints) {
    new Gauge({
      name: 'isthmus_kubernetes_endpoints_skipped',
      help: 'Endpoints of this cluster\'s Services left out of the mesh, by reason: no-sidecar (its pod has no isthmus sidecar: inject the workload), not-a-pod (an EndpointSlice endpoint without a Pod). Each ServiceExport\'s Valid condition names its own.',
      labelNames: ['cluster', 'reason'], registers,
      collect() {
        this.reset();
        for (const [reason, count] of Object.entries(skippedEndpoints())) this.set({ cluster, reason }, count);
      },
    });
  }
  certificateExpiry(registry, cluster, sources.certificates);
}
