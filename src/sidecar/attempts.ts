import { errorCodes, type ErrorCode } from '../core/errors.js';
import type { PickedEndpoint } from '../model/balancer.js';
import type { RequestFacts, RuleAction } from '../model/traffic-policy.js';
import type { OutboundObserver } from './outbound-observer.js';
import type { ResolvedTarget } from './request-target.js';
import { failureKind, mayRepeatEndpoint, shouldRetry, type FailureKind } from './retry-policy.js';
import type { Route, RoutingTable } from './routing.js';
import { choosePolicyBackend } from './traffic-layer.js';
import type { UpstreamKey } from './upstreams.js';

/**
 * The route → pick → attempt/retry → record steps of the outbound request path, shared by every
 * protocol: an HTTP/1.1 request (undici dispatch) and an HTTP/2 stream (an h2 session) differ
 * only in how one attempt is made, so each passes its own `attempt` and answers errors in its
 * own protocol. The decisions stay in retry-policy.ts and routing.ts.
 */

/** Attempts per request or tunnel, the first included. */
export const maxAttempts = 3;

/** `action`: the traffic-policy rule that chose the route's service, when one did (its timeout and header changes apply). */
export type Routed = { route: Route; service: string; action?: RuleAction } | { code: ErrorCode; message: string; service?: string };

/**
 * The route for a resolved name, or the refusal an app gets for it. With `request` (an HTTP
 * request the policy step can match), the service's traffic policy picks the backend service
 * or subset first (traffic-layer.ts); without it the named service is routed as it is.
 */
export function routeOf(routing: RoutingTable, resolved: ResolvedTarget | { refused: string }, request?: RequestFacts): Routed {
  if ('refused' in resolved) return { code: 'ISTHMUS_ERR_DATAPLANE_NO_ROUTE', message: resolved.refused };
  const { namespace, service } = resolved.target;
  const policy = request === undefined ? undefined : routing.policyFor(namespace, service);
  const choice = policy && request ? choosePolicyBackend(policy, request, Math.random) : undefined;
  if (choice && 'code' in choice) return { ...choice, service: `${namespace}/${service}` };
  const backend = choice?.backend;
  const route = backend ? routing.route(backend.namespace, backend.service, backend.subset) : routing.route(namespace, service);
  if (!route) {
    if (backend) return { code: 'ISTHMUS_ERR_DATAPLANE_NO_BACKEND', service: `${namespace}/${service}`, message: `${choice.action.policy} sends ${namespace}/${service} to ${backend.namespace}/${backend.service}${backend.subset ? ` (subset ${backend.subset.name})` : ''}, which is not in the mesh (isthmus services)` };
    return { code: 'ISTHMUS_ERR_DATAPLANE_NO_ROUTE', message: `${namespace}/${service} is not in the mesh: no cluster runs or exports it (isthmus services)` };
  }
  const name = `${route.namespace}/${route.service}`;
  if (route.load.status === 'no-healthy-endpoints') {
    return { code: 'ISTHMUS_ERR_DATAPLANE_NO_HEALTHY_ENDPOINT', service: name, message: `${name} has no healthy endpoint in any cluster (isthmus explain ${service} -n ${namespace})` };
  }
  return choice ? { route, service: name, action: choice.action } : { route, service: name };
}

const failureCodes: Record<FailureKind, ErrorCode> = {
  connect: 'ISTHMUS_ERR_DATAPLANE_UPSTREAM_UNREACHABLE',
  unprocessed: 'ISTHMUS_ERR_DATAPLANE_UPSTREAM_REFUSED',
  reset: 'ISTHMUS_ERR_DATAPLANE_UPSTREAM_RESET',
  timeout: 'ISTHMUS_ERR_DATAPLANE_UPSTREAM_TIMEOUT',
  response: 'ISTHMUS_ERR_DATAPLANE_UPSTREAM_RESET',
};

export interface AttemptedRequest {
  route: Route;
  service: string;
  method: string;
  observer: OutboundObserver;
  /** The request has no body, or every byte sent so far is still kept (request-body.ts). */
  replayable: () => boolean;
  /** The app went away: no answer is owed, and nothing is retried. */
  gone: () => boolean;
}

/**
 * One attempt at one endpoint: resolves with the status once the answer's head was passed to
 * the app, rejects (with an error code retry-policy.ts knows) when it failed before that.
 */
export type Attempt = (upstream: UpstreamKey, endpoint: PickedEndpoint) => Promise<number>;

/** `answered`: the app has its answer (or left); otherwise the error it must be given. */
export type AttemptsOutcome = { answered: true } | { answered: false; code: ErrorCode; message: string };

export async function attemptEndpoints(routing: RoutingTable, request: AttemptedRequest, attempt: Attempt): Promise<AttemptsOutcome> {
  const { route, service, observer } = request;
  const tried = new Set<string>();
  let endpoint: PickedEndpoint | undefined = routing.pick(route);
  let failure: FailureKind = 'connect';
  let lastError = 'no eligible endpoint';
  let lastCluster: string | undefined;
  for (let attempts = 1; endpoint; attempts += 1) {
    tried.add(endpoint.address);
    lastCluster = endpoint.cluster;
    observer.tried(endpoint);
    const upstream = route.upstreams.get(endpoint.address);
    if (!upstream) break; // cannot happen: every endpoint of a route has its key
    const about = { service, cluster: endpoint.cluster };
    try {
      const status = await attempt(upstream, endpoint);
      routing.record(endpoint.address, status >= 500 ? { ok: false, kind: '5xx' } : { ok: true, kind: 'ok' }, about);
      observer.answered(status, service, endpoint.cluster);
      return { answered: true };
    } catch (err) {
      failure = failureKind(err);
      lastError = `${endpoint.address}: ${(err as Error).message}`;
      // A refused stream counts as a refused connection would: the endpoint did not take the request.
      routing.record(endpoint.address, { ok: false, kind: failure === 'connect' || failure === 'unprocessed' ? 'connect-error' : '5xx' }, about);
      if (request.gone()) {
        observer.answered(499, service, endpoint.cluster);
        return { answered: true };
      }
      if (!shouldRetry({ failure, method: request.method, bodyReplayable: request.replayable(), attempts, maxAttempts })) break;
      endpoint = routing.retries(route, endpoint, tried)[0] ?? (mayRepeatEndpoint(failure) ? endpoint : undefined);
    }
  }
  const code = tried.size === 0 ? 'ISTHMUS_ERR_DATAPLANE_NO_HEALTHY_ENDPOINT' : failureCodes[failure];
  observer.answered(failure === 'connect' && tried.size > 0 ? 'connect_error' : errorCodes[code].status, service, lastCluster);
  return { answered: false, code, message: `${service}: ${describeFailure(failure, tried.size)}; last: ${lastError}` };
}

function describeFailure(failure: FailureKind, tried: number): string {
  switch (failure) {
    case 'connect': return `no endpoint could be reached after ${tried} attempt(s)`;
    case 'unprocessed': return `the destination refused the request without processing it (HTTP/2 REFUSED_STREAM or GOAWAY) on ${tried} endpoint(s)`;
    case 'timeout': return 'the destination did not start its answer in time (timeouts.responseHeaders, or timeouts.streamIdle while the request body was silent)';
    case 'reset':
    case 'response': return `the connection broke before an answer came (${tried} attempt(s); a request whose body was not kept, or that is not idempotent, is not retried)`;
  }
}
