import type { GatewayRoutes } from '../model/records.js';
import { hasLabels } from '../model/labels.js';
import { parseGatewayHealthSni, parseProbeSni, parseServiceSni } from '../model/sni.js';

export type { GatewayRoutes };

/** Why a connection was refused; stable strings, counted per reason. */
export type GatewayRefusal =
  | 'client-hello-timeout'
  | 'not-client-hello'
  | 'no-sni'
  | 'sni-not-mesh'
  | 'sni-other-cluster'
  | 'service-not-exported'
  | 'unknown-subset'
  | 'no-healthy-endpoint'
  | 'connect-failed'
  | 'not-ready';

export type RouteDecision =
  | { kind: 'route'; service: string; namespace: string; endpoints: string[] }
  /** A gateway probe of this cluster: the gateway pipes it to its own federation API. */
  | { kind: 'probe'; cluster: string }
  /** A health check of this gateway: it completes the TLS handshake itself. */
  | { kind: 'health'; cluster: string }
  | { kind: 'refuse'; reason: GatewayRefusal; detail: string };

/**
 * Which local endpoints may receive a connection for `serverName`. Pure: the gateway's whole
 * admission policy is this function of (SNI, this cluster's exports and their health).
 */
export function routeFor(serverName: string | undefined, routes: GatewayRoutes): RouteDecision {
  if (serverName === undefined) return { kind: 'refuse', reason: 'no-sni', detail: 'the ClientHello names no server' };
  const probed = parseProbeSni(serverName);
  if (probed !== undefined) {
    if (probed === routes.cluster) return { kind: 'probe', cluster: probed };
    return { kind: 'refuse', reason: 'sni-other-cluster', detail: `"${serverName}" probes cluster ${probed}; this gateway serves ${routes.cluster}` };
  }
  const checked = parseGatewayHealthSni(serverName);
  if (checked !== undefined) {
    if (checked === routes.cluster) return { kind: 'health', cluster: checked };
    return { kind: 'refuse', reason: 'sni-other-cluster', detail: `"${serverName}" checks a gateway of cluster ${checked}; this gateway serves ${routes.cluster}` };
  }
  const target = parseServiceSni(serverName);
  if (!target) return { kind: 'refuse', reason: 'sni-not-mesh', detail: `"${serverName}" is not [<subset>.]<service>.<ns>.svc.<cluster>.isthmus nor probe.gateway.<cluster>.isthmus nor health.gateway.<cluster>.isthmus` };
  if (target.cluster !== routes.cluster) {
    return { kind: 'refuse', reason: 'sni-other-cluster', detail: `"${serverName}" names cluster ${target.cluster}; this gateway serves ${routes.cluster}` };
  }
  const service = routes.services.find((s) => s.name === target.service && s.namespace === target.namespace);
  if (!service) return { kind: 'refuse', reason: 'service-not-exported', detail: `${target.namespace}/${target.service} is not exported from ${routes.cluster}` };
  // A subset SNI: only the instances carrying all of the ServiceSubset's labels, as this cluster knows the subset.
  const labels = target.subset === undefined ? undefined : service.subsets?.[target.subset];
  if (target.subset !== undefined && !labels) {
    return { kind: 'refuse', reason: 'unknown-subset', detail: `${target.namespace}/${target.service} has no ServiceSubset ${target.subset} in ${routes.cluster}'s policies` };
  }
  const endpoints = service.endpoints.filter((e) => e.healthy && (!labels || hasLabels(e.labels, labels))).map((e) => e.address);
  const what = target.subset === undefined ? `${target.namespace}/${target.service}` : `${target.namespace}/${target.service} (subset ${target.subset})`;
  if (endpoints.length === 0) return { kind: 'refuse', reason: 'no-healthy-endpoint', detail: `${what} has no healthy endpoint in ${routes.cluster}` };
  return { kind: 'route', service: service.name, namespace: service.namespace, endpoints };
}
