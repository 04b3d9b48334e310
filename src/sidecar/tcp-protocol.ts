import type { Catalog } from '../model/catalog.js';

/** What a fixed listener or an inbound listener carries: HTTP requests, or a TCP byte stream. */
export type AppProtocol = 'http' | 'tcp';

/**
 * The ALPN protocol id a client sidecar offers for a TCP stream, and the only one a TCP inbound
 * accepts (RFC 7301). It keeps the two kinds of listener apart: an HTTP request never reaches a
 * TCP app's port, and TCP bytes never reach an HTTP app, whatever the configs say.
 */
export const tcpAlpn = 'isthmus-tcp';

/**
 * The protocol the catalog declares for a service: `tcp` when every port that any exporting
 * cluster publishes for it is `tcp` (`isthmus register --protocol tcp`, or `protocol: tcp` in
 * cluster.yaml), `http` when any is something else, undefined when no cluster exports it.
 * Clusters that disagree are a mistake; HTTP then wins, as it is the default everywhere.
 */
export function catalogProtocol(catalog: { readonly services: readonly Catalog['services'][number][] } | undefined, namespace: string, service: string): AppProtocol | undefined {
  const entry = catalog?.services.find((s) => s.namespace === namespace && s.name === service);
  const ports = entry?.clusters.flatMap((c) => c.ports) ?? [];
  if (ports.length === 0) return undefined;
  return ports.every((p) => p.protocol === 'tcp') ? 'tcp' : 'http';
}

/** A listener's own `protocol` wins; else what the catalog says now; else HTTP (the default). */
export function listenerProtocol(configured: AppProtocol | undefined, fromCatalog: AppProtocol | undefined): AppProtocol {
  return configured ?? fromCatalog ?? 'http';
}
