import { createServer, type Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Dispatcher } from 'undici';
import { channels } from '../core/channels.js';
import { errorCodes, type ErrorCode } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { applyHeaderChanges, type RuleAction } from '../model/traffic-policy.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { attemptEndpoints, attemptTimeout, resilienceOf, routeOf } from './attempts.js';
import { admitRequest } from './policy-step.js';
import { serveHttp1, type H1Request, type H1Response } from './h1-server.js';
import { forwardableFields, forwardableHeaders } from './headers.js';
import { dispatchOverH2 } from './h2-dispatch.js';
import { repeatsHost } from './http-head.js';
import { OwnOutboundH2 } from './outbound-h2.js';
import { outboundObserver, type OutboundObserver } from './outbound-observer.js';
import { openTunnel } from './outbound-tunnel.js';
import { servePriorKnowledgeH2 } from './protocol-sniff.js';
import { RequestBody } from './request-body.js';
import { answerUnknownExpectation, clientErrorHandler, refuseMalformed } from './request-head-timeout.js';
import { resolveTarget, type MeshTarget, type ResolvedTarget } from './request-target.js';
import { ResponseRelay } from './response-relay.js';
import type { RoutingTable } from './routing.js';
import { alsoOnCloseAll, OpenSockets } from '../core/open-sockets.js';
import type { DataPlaneTimeouts } from './timeouts.js';
import { inboundReportHeader, traceHeader } from './trace.js';
import type { Upstreams } from './upstreams.js';

export { meshTarget } from './request-target.js';

export interface OutboundDeps {
  cluster: string;
  routing: RoutingTable;
  upstreams: Upstreams;
  logger: Logger;
  timeouts: Readonly<DataPlaneTimeouts>;
  /** Bytes of a request body kept so that a failed attempt can be repeated (default 1 MiB). */
  retryBufferBytes?: number;
  /**
   * The app's HTTP/1.1 requests go to other sidecars as HTTP/2 streams on one kept connection
   * per destination (h2-dispatch.ts) instead of the HTTP/1.1 pools (config outbound.upgradeToHttp2).
   */
  upgradeToHttp2?: boolean;
}

/**
 * The app's HTTP proxy (HTTP_PROXY=http://<this>) and the fixed per-service listeners. A request
 * goes through small steps, each its own function or file: resolve the mesh name
 * (request-target.ts) → route it (RoutingTable: localities, priority load) → pick an endpoint →
 * attempt over a pooled mTLS connection, retried elsewhere when retry-policy.ts allows → record
 * the outcome (outlier detection, outbound-observer.ts) → relay the answer as it streams
 * (response-relay.ts). Bodies stream both ways; nothing is held whole. WebSocket upgrades and
 * CONNECT take the same policy step, then become byte tunnels (outbound-tunnel.ts). Connections that open with the HTTP/2
 * preface are served by outbound-h2.ts, through the same steps.
 */
export function createOutbound(deps: OutboundDeps, fixedTarget?: MeshTarget): Server {
  const tunnels = new OpenSockets();
  // The server listens and holds the handlers; h1-server.ts reads and answers its connections.
  // No deadline on a whole request: uploads may take hours; silence is what is limited (a
  // connection with no byte either way for streamIdle is closed, whatever it waits for: a
  // request body that stalls mid-way holds nothing for ever).
  const server = createServer();
  serveHttp1(server, { requestHeadersMs: deps.timeouts.requestHeadersMs, keepAliveMs: deps.timeouts.connectionIdleMs, streamIdleMs: deps.timeouts.streamIdleMs, openEndedIdleMs: deps.timeouts.tunnelIdleMs, bodyViews: true });
  server.on('request', (req: H1Request, res: H1Response) => {
    if (repeatsHost(req.rawHeaders)) {
      refused(deps);
      return reply(res, 'ISTHMUS_ERR_DATAPLANE_REQUEST_MALFORMED', 'the request has two Host fields (RFC 9112 §3.2); send one', { status: 400, headers: { connection: 'close' } });
    }
    proxyRequest(deps, req, res, fixedTarget).catch((err: unknown) => {
      deps.logger.error({ err: (err as Error).message }, 'outbound request failed unexpectedly');
      if (!res.headersSent && !res.destroyed) reply(res, 'ISTHMUS_ERR_INTERNAL_UNEXPECTED', 'the sidecar failed to forward the request');
      else res.destroy();
    });
  });
  server.on('connection', (socket) => socket.setNoDelay(true));
  // An app that speaks h2c (gRPC) on the same port: its connections go to the HTTP/2 server.
  servePriorKnowledgeH2(server, new OwnOutboundH2(deps, tunnels, fixedTarget), deps.timeouts.requestHeadersMs);
  server.on('clientError', clientErrorHandler(deps.routing, 'outbound'));
  server.on('checkExpectation', answerUnknownExpectation);
  const tunnel = (req: H1Request, socket: Duplex, head: Buffer) => {
    if (repeatsHost(req.rawHeaders)) {
      refused(deps);
      return refuseMalformed(socket, false, '(two Host fields, RFC 9112 §3.2)');
    }
    openTunnel(deps, req, socket, head, tunnels, fixedTarget).catch(() => socket.destroy());
  };
  server.on('upgrade', tunnel);
  server.on('connect', tunnel);
  // Upgraded and CONNECT sockets are no longer the HTTP server's: close them with its own.
  alsoOnCloseAll(server, () => tunnels.destroyAll());
  return server;
}

async function proxyRequest(deps: OutboundDeps, req: H1Request, res: H1Response, fixed?: MeshTarget): Promise<void> {
  const observer = outboundObserver(deps.routing, deps.cluster, req);
  const resolved = resolveTarget(req.method, req.url, req.field('host'), fixed);
  // The policy step needs the request only when some policy exists.
  const withPolicies = deps.routing.hasPolicies && !('refused' in resolved);
  if (withPolicies) {
    const admission = admitRequest(deps.routing, resolved.target, req.headers);
    if (admission.delayMs > 0) await sleep(admission.delayMs);
    if (admission.refusal) {
      req.resume();
      observer.answered(admission.refusal.status, knownService(deps, resolved.target));
      return reply(res, admission.refusal.code, admission.refusal.message, admission.refusal);
    }
  }
  const facts = withPolicies ? { method: req.method ?? 'GET', path: resolved.path, headers: req.headers } : undefined;
  const routed = routeOf(deps.routing, resolved, facts);
  if ('code' in routed) {
    req.resume();
    observer.answered(errorStatus(routed.code), routed.service);
    return reply(res, routed.code, routed.message);
  }
  const { route, service, action } = routed;
  const { host, path } = resolved as ResolvedTarget;
  // Trace mode is the admin port's (POST /trace); an app cannot ask a destination for its report.
  // Expect: 100-continue was answered by this server already; the next hop must not wait for another 100.
  // The app's fields go on as they came unless a rule or a span changes some (an object then).
  const headers = action?.headers || observer.traced || deps.upgradeToHttp2
    ? changedHeaders(req, host, observer, action)
    : forwardableFields(req.rawHeaders, droppedFields, ['host', host]);
  const body = req.body ? new RequestBody(req.body, deps.retryBufferBytes) : undefined;
  if (!body) req.resume();
  const method = req.method ?? 'GET';
  const { retry, breaker } = resilienceOf(deps.routing, resolved as ResolvedTarget, route);
  // A rule's timeouts.request stands in for the response-headers timeout (docs/traffic-policy.md); a per-try timeout may shorten it.
  const headersTimeout = attemptTimeout(action?.timeoutMs ?? deps.timeouts.responseHeadersMs, retry);

  const outcome = await attemptEndpoints(deps.routing, {
    route, service, method, observer, retry, replayable: () => body?.replayable ?? true, gone: () => res.destroyed,
  }, (upstream, _endpoint, retryAnswer) => {
    const relay = new ResponseRelay(res, inboundReportHeader, undefined, retryAnswer);
    const options = {
      path, method, headers, body: body ? body.open() : null, headersTimeout, bodyTimeout: deps.timeouts.streamIdleMs, openEndedTimeout: deps.timeouts.tunnelIdleMs,
    };
    if (deps.upgradeToHttp2) {
      // A stream on the kept HTTP/2 connection; a CircuitBreaker's maxRequests counts streams.
      const release = deps.upstreams.admitStream(upstream, breaker);
      // (Its fields are an object: upgradeToHttp2 sends them through changedHeaders.)
      dispatchOverH2(deps.upstreams.h2Connection(upstream), { ...options, headers: headers as Record<string, string | string[]> }, relay, release);
    } else deps.upstreams.get(upstream, breaker).dispatch(options as Dispatcher.DispatchOptions, relay);
    return relay.started;
  });
  if (!outcome.answered) reply(res, outcome.code, outcome.message);
}

/** Fields of the app's request that never go on: the trace request, Expect, and Host (set anew). */
const droppedFields = [traceHeader, 'expect', 'host'];

/** The fields to send as an object: a rule's header changes applied, the span's traceparent added. */
function changedHeaders(req: H1Request, host: string, observer: OutboundObserver, action: RuleAction | undefined): Record<string, string | string[]> {
  const headers = forwardableHeaders(req.headers, traceHeader);
  if (action?.headers) applyHeaderChanges(headers, action.headers);
  delete headers.expect;
  headers.host = host;
  observer.propagate(headers);
  return headers;
}

/** Counted as isthmus_requests_refused_total{listener="outbound",reason="malformed"}. */
function refused(deps: OutboundDeps): void {
  if (channels.requestRefused.hasSubscribers) channels.requestRefused.publish({ origin: deps.routing, listener: 'outbound', reason: 'malformed' });
}

function errorStatus(code: ErrorCode): number {
  return errorCodes[code].status;
}

function knownService(deps: OutboundDeps, target: MeshTarget): string | undefined {
  return deps.routing.knows(target.namespace, target.service) ? `${target.namespace}/${target.service}` : undefined;
}

/** `override`: a policy's own status and headers (a fault's status, a rate limit's retry-after). */
function reply(res: H1Response, code: ErrorCode, message: string, override?: { status: number; headers?: Record<string, string> }): void {
  if (res.destroyed) return;
  const body = JSON.stringify({ error: { code, message } });
  res.writeHead(override?.status ?? errorStatus(code), { ...override?.headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-isthmus-error': code });
  res.end(body);
}
