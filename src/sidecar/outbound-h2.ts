import type { IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import { errorCodes } from '../core/errors.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { applyHeaderChanges } from '../model/traffic-policy.js';
import { attemptEndpoints, attemptTimeout, resilienceOf, routeOf } from './attempts.js';
import { admitRequest } from './policy-step.js';
import { headWaitMs, isGrpc } from './grpc-status.js';
import { NGHTTP2_CANCEL } from './h2-codes.js';
import { h2ForwardFields } from './h2-headers.js';
import { OnDemandH2Server } from './http2-on-demand.js';
import { relayH2 } from './h2-relay.js';
import { countRequestBody, trackH2Exchange } from './h2-exchange.js';
import { replyH2 } from './h2-reply.js';
import type { OutboundDeps } from './outbound.js';
import { outboundObserver } from './outbound-observer.js';
import { RequestBody } from './request-body.js';
import { limitFirstRequestHead } from './request-head-timeout.js';
import { resolveTarget, type MeshTarget, type ResolvedTarget } from './request-target.js';
import { inboundReportHeader, traceHeader } from './trace.js';

/**
 * HTTP/2 from the app (h2c with prior knowledge) on the proxy port or a fixed listener: each
 * stream takes the same steps as an HTTP/1.1 request (attempts.ts: route, pick, attempt/retry,
 * record) and goes to the destination sidecar as HTTP/2 over a kept mTLS session (ALPN h2),
 * so that gRPC's trailers and grpc-status pass intact. Bodies stream both ways; a cancel on
 * either side cancels the other; errors are HTTP/2 answers (gRPC ones trailers-only).
 */
export function createOutboundH2(deps: OutboundDeps, fixedTarget?: MeshTarget): OnDemandH2Server {
  // Made, with node:http2, when the first app connection sends the HTTP/2 preface (http2-on-demand.ts).
  return new OnDemandH2Server((server) => {
    limitFirstRequestHead(server, deps.timeouts.requestHeadersMs);
    server.on('session', (session) => {
      // An idle connection from the app is closed as an HTTP/1.1 keep-alive one would be.
      session.setTimeout(deps.timeouts.connectionIdleMs, () => session.close());
      session.on('error', () => undefined);
    });
    server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
      stream.on('error', () => undefined); // a stream reset by the app: its close does the cleaning up
      proxyStream(deps, stream, headers, fixedTarget).catch((err: unknown) => {
        deps.logger.error({ err: (err as Error).message }, 'outbound HTTP/2 stream failed unexpectedly');
        replyH2(stream, 'ISTHMUS_ERR_INTERNAL_UNEXPECTED', 'the sidecar failed to forward the request', isGrpc(headers['content-type']));
      });
    });
  });
}

async function proxyStream(deps: OutboundDeps, stream: ServerHttp2Stream, headers: IncomingHttpHeaders, fixed?: MeshTarget): Promise<void> {
  const method = headers[':method'] ?? 'GET';
  const grpc = isGrpc(headers['content-type']);
  const { facts, exchange } = trackH2Exchange(stream, method, headers, grpc);
  const observer = outboundObserver(deps.routing, deps.cluster, facts, grpc);
  // A gRPC call's status is known when its stream closes: the metrics and the dashboard count it then.
  if (grpc) stream.once('close', () => observer.grpcEnded(exchange?.grpcStatus));
  if (method === 'CONNECT') {
    observer.answered(501);
    return replyH2(stream, 'ISTHMUS_ERR_DATAPLANE_PROTOCOL_UNSUPPORTED', 'CONNECT over HTTP/2 is not carried: send CONNECT over HTTP/1.1 to the proxy port', grpc);
  }
  const resolved = resolveTarget(method, headers[':path'], headers[':authority'] ?? headers.host, fixed);
  // The same policy step as HTTP/1.1 (outbound.ts): faults and rate limits, then the routing rule.
  const withPolicies = deps.routing.hasPolicies && !('refused' in resolved);
  if (withPolicies) {
    const admission = admitRequest(deps.routing, resolved.target, headers);
    if (admission.delayMs > 0) await sleep(admission.delayMs);
    if (admission.refusal) {
      observer.answered(admission.refusal.status, deps.routing.knows(resolved.target.namespace, resolved.target.service) ? `${resolved.target.namespace}/${resolved.target.service}` : undefined);
      return replyH2(stream, admission.refusal.code, admission.refusal.message, grpc, admission.refusal);
    }
  }
  const routed = routeOf(deps.routing, resolved, withPolicies ? { method, path: resolved.path, headers } : undefined);
  if ('code' in routed) {
    observer.answered(errorCodes[routed.code].status, routed.service);
    return replyH2(stream, routed.code, routed.message, grpc);
  }
  const { route, service, action } = routed;
  const { host, path } = resolved as ResolvedTarget;
  // Trace mode is the admin port's (POST /trace); an app cannot ask a destination for its report.
  // Node sends the pseudo-headers first whatever their place in the object.
  const upstreamHeaders = h2ForwardFields(headers, traceHeader);
  upstreamHeaders[':method'] = method;
  upstreamHeaders[':path'] = path;
  upstreamHeaders[':authority'] = host;
  upstreamHeaders[':scheme'] = 'https';
  if (action?.headers) applyHeaderChanges(upstreamHeaders, action.headers);
  observer.propagate(upstreamHeaders);
  const { retry, breaker } = resilienceOf(deps.routing, resolved as ResolvedTarget, route);
  const responseHeadersMs = attemptTimeout(action?.timeoutMs ?? headWaitMs(deps.timeouts.responseHeadersMs, grpc ? headers['grpc-timeout'] : undefined), retry);
  const body = stream.endAfterHeaders ? undefined : new RequestBody(stream, deps.retryBufferBytes);
  if (body) countRequestBody(stream, exchange);
  let trailers: IncomingHttpHeaders | undefined;
  stream.once('trailers', (t: IncomingHttpHeaders) => { trailers = t; });
  // Before the answer's head the attempt's own limits decide (504 UPSTREAM_TIMEOUT); after it, a
  // silent stream is cut (an open-ended answer's, a gRPC call's among them, after timeouts.tunnelIdle: h2-relay.ts openEndedIdleMs).
  stream.setTimeout(deps.timeouts.streamIdleMs, () => {
    if (stream.headersSent) stream.close(NGHTTP2_CANCEL);
  });

  const outcome = await attemptEndpoints(deps.routing, {
    route, service, method, observer, retry, grpc, replayable: () => body?.replayable ?? true, gone: () => stream.closed || stream.destroyed,
  }, async (upstream, _endpoint, retryAnswer, trailersStatus) => {
    const release = deps.upstreams.admitStream(upstream, breaker);
    try {
      const session = await deps.upstreams.h2Session(upstream);
      return await relayH2(session, stream, {
        headers: upstreamHeaders, sendBody: body ? (sink) => body.feed(sink, () => sink.close(NGHTTP2_CANCEL)) : undefined,
        trailers: () => trailers, grpc, drop: inboundReportHeader,
        responseHeadersMs, streamIdleMs: deps.timeouts.streamIdleMs, openEndedIdleMs: deps.timeouts.tunnelIdleMs, retryAnswer, trailersStatus: grpc ? trailersStatus : undefined, done: release,
      });
    } catch (err) {
      release();
      throw err;
    }
  });
  if (!outcome.answered) replyH2(stream, outcome.code, outcome.message, grpc);
}
