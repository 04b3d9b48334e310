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
 * The ALPN id that names one port of the destination's app (`isthmus-tcp/6379`): offered before
 * `isthmus-tcp` by a listener that says which port it is for, so an inbound in front of several
 * app ports picks that one (inbound-ports.ts); a single-port inbound selects `isthmus-tcp`.
 */
export function tcpPortAlpn(port: number): string {
  return `${tcpAlpn}/${port}`;
}

/** `isthmus-tcp`, or `isthmus-tcp/<port>`. */
export function isTcpAlpn(name: string | false | null | undefined): boolean {
  return typeof name === 'string' && (name === tcpAlpn || name.startsWith(`${tcpAlpn}/`));
}

/**
 * The protocol the catalog declares for a service: `tcp` when every port that any exporting
 * cluster publishes for it is `tcp` (`isthmus register --protocol tcp`, or `protocol: tcp` in
 * cluster.yaml), `http` when any is something else, undefined when no cluster exports it.
 * Clusters that disagree are a mistake; HTTP then wins, as it is the default everywhere.
 * With `port` (a listener for one port of a multi-port service), only that port counts.
 * `entry`: the service's catalog entry (RoutingTable.protocolOf finds it by name).
 */
export function serviceProtocol(entry: Catalog['services'][number] | undefined, port?: number): AppProtocol | undefined {
  const ports = (entry?.clusters.flatMap((c) => c.ports) ?? []).filter((p) => port === undefined || p.port === port);
  if (ports.length === 0) return undefined;
  return ports.every((p) => p.protocol === 'tcp') ? 'tcp' : 'http';
}

/**
 * What a CONNECT to `<service>.<ns>.mesh:<port>` reaches: for a service the catalog declares
 * `tcp`, the TCP inbound, with the ALPN to offer (`isthmus-tcp/<port>` first when `port` is one of
 * its published ports, as a fixed TCP listener for that port offers); undefined for anything
 * else (an HTTP CONNECT tunnel to the destination's HTTP inbound, as before). When `port` is
 * not a published port, the whole service's ports decide, as for a listener without a port.
 */
export function connectTcpAlpn(entry: Catalog['services'][number] | undefined, port: number | undefined): string[] | undefined {
  if (!entry) return undefined;
  const published = entry.clusters.some((c) => c.ports.some((p) => p.port === port));
  const one = published ? port : undefined;
  if (serviceProtocol(entry, one) !== 'tcp') return undefined;
  return one === undefined ? [tcpAlpn] : [tcpPortAlpn(one), tcpAlpn];
}

/** A listener's own `protocol` wins; else what the catalog says now; else HTTP (the default). */
export function listenerProtocol(configured: AppProtocol | undefined, fromCatalog: AppProtocol | undefined): AppProtocol {
  return configured ?? fromCatalog ?? 'http';
}
