import { collectProcessMetrics, Registry } from './prom.js';
import { federationMetrics, type FederationSources } from './federation-metrics.js';
import { gatewayMetrics, type GatewaySources } from './gateway-metrics.js';
import { originListener } from './shared.js';
import { sidecarMetrics, type SidecarSources } from './sidecar-metrics.js';

export type { CertificateFacts } from './shared.js';

export type Role = 'sidecar' | 'gateway' | 'federation';

/** What each role's metrics read besides the channels: the components they observe, gauges read on scrape. */
export interface RoleSources {
  sidecar: SidecarSources;
  gateway: GatewaySources;
  federation: FederationSources;
}

/** One component's metrics: its own registry (several roles share a process in `isthmus dev up`). */
export interface Metrics {
  readonly registry: Registry;
  /** The Prometheus text exposition, for an admin port's `/metrics`. */
  exposition(): Promise<{ contentType: string; body: string }>;
  /** Unsubscribes from the channels; the registry stops moving. */
  close(): void;
}

let processRegistry: Registry | undefined;

/**
 * Process metrics (CPU, memory, event loop lag, GC) are collected once per process and shown on
 * every registry: collectDefaultMetrics starts observers that are never stopped, so one per
 * sidecar would pile up as a dev mesh restarts its workloads.
 */
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectProcessMetrics(processRegistry, 'isthmus_');
  }
  return processRegistry;
}

/**
 * The metrics of one sidecar, gateway or federation service of cluster `base.cluster`, fed by
 * the diagnostics channels of src/core/channels.ts. With `origins`, only messages published by
 * those objects count; without, every message in the process does (one component per process).
 */
export function createMetrics<R extends Role>(role: R, base: { cluster: string }, sources: RoleSources[R] & { origins?: readonly object[] } = {}): Metrics {
  const registry = new Registry();
  const shared = processMetrics();
  for (const { name } of shared.getMetricsAsArray()) {
    const metric = shared.getSingleMetric(name);
    if (metric) registry.registerMetric(metric);
  }
  const { listen, close } = originListener(sources.origins);
  if (role === 'sidecar') sidecarMetrics(registry, base.cluster, sources as SidecarSources, listen);
  else if (role === 'gateway') gatewayMetrics(registry, base.cluster, sources as GatewaySources, listen);
  else federationMetrics(registry, base.cluster, sources as FederationSources);
  return {
    registry,
    exposition: async () => ({ contentType: registry.contentType, body: await registry.metrics() }),
    close,
  };
}
