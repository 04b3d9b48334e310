import type { GatewayRoutes } from '../model/records.js';
import { parseProbeSni, parseServiceSni } from '../model/sni.js';

export type { GatewayRoutes };

/** Why a connection was refused; stable strings, counted per reason. */
export type GatewayRefusal =
  | 'client-hello-timeout'
  | 'not-client-hello'
  | 'no-sni'
  | 'sni-not-mesh'
  | 'sni-other-cluster'
  | 'service-not-exported'
  | 'no-healthy-endpoint'
  | 'connect-failed'
  | 'not-ready';

export type RouteDecision =
  | { kind: 'route'; service: string; namespace: string; endpoints: string[] }
  /** A gateway probe of this cluster: the gateway pipes it to its own federation API. */
  | { kind: 'probe'; cluster: string }
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
  const target = parseServiceSni(serverName);
  if (!target) return { kind: 'refuse', reason: 'sni-not-mesh', detail: `"${serverName}" is not <service>.<ns>.svc.<cluster>.isthmus nor probe.gateway.<cluster>.isthmus` };
  if (target.cluster !== routes.cluster) {
    return { kind: 'refuse', reason: 'sni-other-cluster', detail: `"${serverName}" names cluster ${target.cluster}; this gateway serves ${routes.cluster}` };
  }
  const service = routes.services.find((s) => s.name === target.service && s.namespace === target.namespace);
  if (!service) return { kind: 'refuse', reason: 'service-not-exported', detail: `${target.namespace}/${target.service} is not exported from ${routes.cluster}` };
  const endpoints = service.endpoints.filter((e) => e.healthy).map((e) => e.address);
  if (endpoints.length === 0) return { kind: 'refuse', reason: 'no-healthy-endpoint', detail: `${target.namespace}/${target.service} has no healthy endpoint in ${routes.cluster}` };
  return { kind: 'route', service: service.name, namespace: service.namespace, endpoints };
}
