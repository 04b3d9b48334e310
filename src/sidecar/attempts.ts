import { errorCodes, type ErrorCode } from '../core/errors.js';
import type { PickedEndpoint } from '../model/balancer.js';
import type { RequestFacts, RuleAction } from '../model/traffic-policy.js';
import type { OutboundObserver } from './outbound-observer.js';
import type { ResolvedTarget } from './request-target.js';
import type { BreakerLimits } from '../model/circuit-breaker.js';
import type { OutlierResult } from '../model/outlier.js';
import { grpcServerError } from './grpc-status.js';
import { requestEnded, requestStarted } from '../model/peak-ewma.js';
import type { RetryCondition } from '../model/resilience-policy.js';
import type { RetryBudget } from '../model/retry-budget.js';
import { publishPolicyAction } from './policy-actions.js';
import { failureKind, mayRepeatEndpoint, shouldRetry, type FailureKind, type RetryQuestion } from './retry-policy.js';
import type { Route, RoutingTable } from './routing.js';
import { choosePolicyBackend } from './traffic-layer.js';
import type { UpstreamKey } from './upstreams.js';

/**
 * The route → pick → attempt/retry → record steps of the outbound request path, shared by every
 * protocol: an HTTP/1.1 request (undici dispatch) and an HTTP/2 stream (an h2 session) differ
 * only in how one attempt is made, so each passes its own `attempt` and answers errors in its
 * own protocol. The decisions stay in retry-policy.ts and routing.ts.
 */

/** Attempts per request or tunnel, the first included, without a RetryPolicy. */
export const maxAttempts = 3;

/** What a RetryPolicy sets for one request; without one, `builtInRetries`. */
export interface RetryLimits {
  maxAttempts: number;
  /** retryOn; absent, the built-in table of retry-policy.ts. */
  conditions?: ReadonlySet<RetryCondition>;
  perTryTimeoutMs?: number;
  budget?: RetryBudget;
  /** The document, for the budget-exhausted event. */
  policy?: string;
}

export const builtInRetries: Readonly<RetryLimits> = Object.freeze({ maxAttempts });

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
  const name = route.name;
  if (route.load.status === 'no-healthy-endpoints') {
    return { code: 'ISTHMUS_ERR_DATAPLANE_NO_HEALTHY_ENDPOINT', service: name, message: `${name} has no healthy endpoint in any cluster (isthmus explain ${service} -n ${namespace})` };
  }
  if (!choice) return { route, service: name };
  if (policy) routing.countSplit(policy, choice.backend);
  return { route, service: name, action: choice.action };
}

/**
 * The retry limits and circuit-breaker limits of a routed request: a RetryPolicy of the service
 * the app named, else of the backend a split chose; the CircuitBreaker of the backend (its pools).
 */
export function resilienceOf(routing: RoutingTable, resolved: ResolvedTarget, route: Route): { retry: RetryLimits; breaker: BreakerLimits | undefined } {
  if (routing.resilience.size === 0) return { retry: builtInRetries, breaker: undefined };
  const named = `${resolved.target.namespace}/${resolved.target.service}`;
  const routed = route.name;
  const retry = routing.resilience.of(named)?.retry ? routing.resilience.retryLimits(named) : routing.resilience.retryLimits(routed);
  return { retry, breaker: routing.resilience.of(routed)?.breaker };
}

/** How long one attempt may wait for its answer's head: the request's limit, or a shorter per-try timeout. */
export function attemptTimeout(requestMs: number, retry: RetryLimits): number {
  return retry.perTryTimeoutMs === undefined ? requestMs : Math.min(requestMs, retry.perTryTimeoutMs);
}

const failureCodes: Record<FailureKind, ErrorCode> = {
  connect: 'ISTHMUS_ERR_DATAPLANE_UPSTREAM_UNREACHABLE',
  unprocessed: 'ISTHMUS_ERR_DATAPLANE_UPSTREAM_REFUSED',
  reset: 'ISTHMUS_ERR_DATAPLANE_UPSTREAM_RESET',
  timeout: 'ISTHMUS_ERR_DATAPLANE_UPSTREAM_TIMEOUT',
  response: 'ISTHMUS_ERR_DATAPLANE_UPSTREAM_RESET',
  overflow: 'ISTHMUS_ERR_DATAPLANE_CIRCUIT_OPEN',
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
  /** Limits from the service's RetryPolicy, or the built-in ones (`builtInRetries`). */
  retry: RetryLimits;
  /** A gRPC request: its grpc-status answers may be retried (retry-policy.ts). */
  grpc?: boolean;
}

/**
 * May the answer whose head just arrived be held back and the request sent again? Asked by an
 * attempt before it passes the head on; true means the decision is taken (and the budget spent):
 * the attempt drops the answer and rejects with retriedAnswerCode.
 */
export type RetryAnswer = (status: number, grpcStatus: number | undefined) => boolean;

/**
 * The grpc-status of an answer's trailers, told by an HTTP/2 attempt once they came, when its
 * head had none and was not a 5xx (those were judged at the head): a gRPC call that sent its
 * head, maybe messages, and then its status.
 */
export type TrailersStatus = (grpcStatus: number) => void;

/**
 * One attempt at one endpoint: resolves with the status once the answer's head was passed to
 * the app, rejects (with an error code retry-policy.ts knows) when it failed before that.
 */
export type Attempt = (upstream: UpstreamKey, endpoint: PickedEndpoint, retryAnswer: RetryAnswer, trailersStatus: TrailersStatus) => Promise<number>;

/** `answered`: the app has its answer (or left); otherwise the error it must be given. */
export type AttemptsOutcome = { answered: true } | { answered: false; code: ErrorCode; message: string };

export async function attemptEndpoints(routing: RoutingTable, request: AttemptedRequest, attempt: Attempt): Promise<AttemptsOutcome> {
  const { route, service, observer, retry } = request;
  retry.budget?.request(Date.now());
  const tried = new Set<string>();
  // One clock read serves the pick and the first attempt's start (peak-ewma.ts).
  let startedAt = performance.now();
  let endpoint: PickedEndpoint | undefined = routing.pick(route, undefined, startedAt);
  let failure: FailureKind = 'connect';
  let lastError = 'no eligible endpoint';
  let lastCluster: string | undefined;
  let attempts = 1;
  let answerRetried = false;
  let repeatable: PickedEndpoint | undefined;
  // The retry table first, then the budget: a retry the table refuses spends nothing.
  const mayRetry = (q: Pick<RetryQuestion, 'failure' | 'status' | 'grpcStatus'>): boolean => {
    if (!shouldRetry({ ...q, method: request.method, bodyReplayable: request.replayable(), attempts, maxAttempts: retry.maxAttempts, ...(retry.conditions ? { conditions: retry.conditions } : {}), grpc: request.grpc === true })) return false;
    if (!retry.budget || retry.budget.tryRetry(Date.now())) return true;
    publishPolicyAction(routing, service, 'retry_budget_exhausted', retry.policy);
    return false;
  };
  // A gRPC error the destination answered at once comes trailers-only: its status is in the head.
  let headGrpcStatus: number | undefined;
  const retryAnswer: RetryAnswer = (status, grpcStatus) => {
    headGrpcStatus = grpcStatus;
    if (!retry.conditions || (status < 400 && !grpcStatus) || request.gone()) return false;
    answerRetried = mayRetry({ failure: 'response', status, ...(grpcStatus === undefined ? {} : { grpcStatus }) });
    return answerRetried;
  };
  for (; endpoint; attempts += 1) {
    tried.add(endpoint.address);
    lastCluster = endpoint.cluster;
    observer.tried(endpoint);
    const upstream = route.upstreams.get(endpoint.address);
    if (!upstream) break; // cannot happen: every endpoint of a route has its key
    const about = { service, cluster: endpoint.cluster };
    // The balancer's view of the endpoint (peak-ewma.ts): outstanding while the attempt runs,
    // then the time to the answer's head, or to the failure.
    const load = endpoint.load;
    if (attempts > 1) startedAt = performance.now();
    if (load) requestStarted(load);
    headGrpcStatus = undefined;
    try {
      const status = await attempt(upstream, endpoint, retryAnswer, request.grpc === true ? trailersVerdict(routing, endpoint.address, about) : ignoreTrailers);
      if (load) { const now = performance.now(); requestEnded(load, now - startedAt, true, now); }
      // Outlier detection counts a gRPC server error (UNAVAILABLE, INTERNAL…, grpc-status.ts) as a
      // 5xx. A gRPC answer whose head has no grpc-status is judged by its trailers, when they come
      // (a call that fails after it began); one that ends without them gets no verdict.
      if (status >= 500 || request.grpc !== true) routing.record(endpoint.address, status >= 500 ? serverError : answered, about);
      else if (headGrpcStatus !== undefined) routing.record(endpoint.address, grpcVerdict(headGrpcStatus), about);
      observer.answered(status, service, endpoint.cluster);
      return { answered: true };
    } catch (err) {
      if (load) { const now = performance.now(); requestEnded(load, now - startedAt, false, now); }
      failure = failureKind(err);
      lastError = `${endpoint.address}: ${(err as Error).message}`;
      if (failure === 'overflow') {
        // The breaker refused before anything was sent: no verdict on the endpoint, no retry.
        publishPolicyAction(routing, service, 'circuit_open', undefined);
        observer.answered(errorCodes.ISTHMUS_ERR_DATAPLANE_CIRCUIT_OPEN.status, service, endpoint.cluster);
        return { answered: false, code: 'ISTHMUS_ERR_DATAPLANE_CIRCUIT_OPEN', message: `${service}: ${(err as Error).message}` };
      }
      routing.record(endpoint.address, outlierResult(failure, (err as { status?: number }).status), about);
      if (request.gone()) {
        observer.answered(499, service, endpoint.cluster);
        return { answered: true };
      }
      const retrying = failure === 'response' ? answerRetried : mayRetry({ failure });
      answerRetried = false;
      if (!retrying) break;
      // With every endpoint tried, the retry goes back to the latest one whose failure allows
      // another try there, not only to the last one: a GET that timed out on a busy endpoint and
      // then could not connect to the only other one gets its third attempt on the first.
      if (mayRepeatEndpoint(failure, retry.conditions !== undefined)) repeatable = endpoint;
      endpoint = routing.retries(route, endpoint, tried)[0] ?? repeatable;
    }
  }
  const code = tried.size === 0 ? 'ISTHMUS_ERR_DATAPLANE_NO_HEALTHY_ENDPOINT' : failureCodes[failure];
  observer.answered(failure === 'connect' && tried.size > 0 ? 'connect_error' : errorCodes[code].status, service, lastCluster);
  return { answered: false, code, message: `${service}: ${describeFailure(failure, tried.size)}; last: ${lastError}` };
}

const serverError: OutlierResult = { ok: false, kind: '5xx' };
const answered: OutlierResult = { ok: true, kind: 'ok' };

/** Outlier detection's verdict on a gRPC status: a server error (grpc-status.ts) counts as a 5xx. */
function grpcVerdict(grpcStatus: number): OutlierResult {
  return grpcServerError(grpcStatus) ? serverError : answered;
}

const ignoreTrailers: TrailersStatus = () => undefined;

/** Outlier detection's verdict on a gRPC answer from the status in its trailers. */
function trailersVerdict(routing: RoutingTable, address: string, about: { service: string; cluster: string }): TrailersStatus {
  return (grpcStatus) => routing.record(address, grpcVerdict(grpcStatus), about);
}

function outlierResult(failure: FailureKind, status: number | undefined): OutlierResult {
  // A refused stream counts as a refused connection would: the endpoint did not take the request.
  if (failure === 'connect' || failure === 'unprocessed') return { ok: false, kind: 'connect-error' };
  if (failure === 'response' && status !== undefined && status < 500) return answered;
  return serverError;
}

function describeFailure(failure: FailureKind, tried: number): string {
  switch (failure) {
    case 'connect': return `no endpoint could be reached after ${tried} attempt(s)`;
    case 'unprocessed': return `the destination refused the request without processing it (HTTP/2 REFUSED_STREAM or GOAWAY) on ${tried} endpoint(s)`;
    case 'timeout': return 'the destination did not start its answer in time (timeouts.responseHeaders, or timeouts.streamIdle while the request body was silent)';
    case 'overflow': return 'a circuit breaker refused the request';
    case 'reset':
    case 'response': return `the connection broke before an answer came (${tried} attempt(s); a request whose body was not kept, or that is not idempotent, is not retried)`;
  }
}
