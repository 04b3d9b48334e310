import type { ErrorCode } from '../core/errors.js';
import { matchRequest, pickBackend, type Backend, type RequestFacts, type RuleAction, type ServiceRoutes } from '../model/traffic-policy.js';

/**
 * The traffic-policy step of the request path, between resolving the mesh name and routing:
 * the service the app named → the rule that matches the request (model/traffic-policy.ts) → a
 * backend by weight. Plain weights draw at random per request; a request is pinned to a backend
 * only by a rule whose match selects it (a header, say) and that has that one backend.
 */
export type PolicyChoice =
  | { backend: Backend; action: RuleAction }
  | { code: ErrorCode; message: string }
  /** No rule applies and none is required: route the named service as it is. */
  | undefined;

export function choosePolicyBackend(routes: ServiceRoutes, request: RequestFacts, random: () => number): PolicyChoice {
  const entry = matchRequest(routes, request);
  const name = `${routes.namespace}/${routes.service}`;
  if (!entry) {
    if (!routes.routeAttached) return undefined;
    return { code: 'ISTHMUS_ERR_DATAPLANE_NO_MATCHING_RULE', message: `no rule of the HTTPRoute(s) attached to ${name} matches ${request.method} ${request.path.split('?')[0]} (isthmus policy list)` };
  }
  const backend = pickBackend(entry.action, random());
  if (!backend) return { code: 'ISTHMUS_ERR_DATAPLANE_NO_BACKEND', message: `${entry.action.policy} gives ${name} no backend with a weight above 0` };
  return { backend, action: entry.action };
}
