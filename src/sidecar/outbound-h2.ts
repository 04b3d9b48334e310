import type { IncomingHttpHeaders } from 'node:http2';
import { setTimeout as sleep } from 'node:timers/promises';
import { errorCodes, type ErrorCode } from '../core/errors.js';
import type { OpenSockets } from '../core/open-sockets.js';
import type { HeaderBlock } from '../h2/hpack.js';
import type { H2Stream } from '../h2/stream.js';
import { applyHeaderChanges } from '../model/traffic-policy.js';
import { attemptEndpoints, attemptTimeout, resilienceOf, routeOf } from './attempts.js';
import { headWaitMs, isGrpc } from './grpc-status.js';
import { CallerStream } from './h2-caller.js';
import { trackH2Exchange } from './h2-exchange.js';
import { exchangeNotes, fieldsOf, H2Listener, headersOf, replyOwnH2 } from './h2-own-stream.js';
import { h2ForwardFields } from './h2-headers.js';
import { relayStream } from './h2-stream-relay.js';
import { H2TunnelSocket } from './h2-tunnel-socket.js';
import type { OutboundDeps } from './outbound.js';
import { outboundObserver } from './outbound-observer.js';
import { openTunnel } from './outbound-tunnel.js';
import { admitRequest } from './policy-step.js';
import { resolveTarget, type MeshTarget, type ResolvedTarget } from './request-target.js';
import { inboundReportHeader, traceHeader } from './trace.js';
import type { TunnelRequest } from './tunnel-exchange.js';

/**
 * HTTP/2 from the app (h2c with prior knowledge) on the proxy port or a fixed listener, on
 * Isthmus's own HTTP/2 (src/h2/): each stream takes the same steps as an HTTP/1.1 request
 * (attempts.ts: route, pick, attempt/retry, record) and goes to the destination sidecar as
 * HTTP/2 over a kept mTLS connection (ALPN h2; Upstreams.h2Connection), relayed by
 * h2-stream-relay.ts, so that gRPC's trailers and grpc-status pass intact: bodies streamed both
 * ways, kept up to 1 MiB for a retry (h2-caller.ts), cancels both ways, errors as HTTP/2 answers
 * (gRPC ones trailers-only). A CONNECT stream is a tunnel, as an HTTP/1.1 CONNECT is. Until
 * 2026-12-06 this ran on node:http2, whose per-stream cost was most of a sidecar's CPU per gRPC
 * call (docs/benchmarks.md).
 */
export class OwnOutboundH2 extends H2Listener {
  /** `tunnels`: the outbound's open tunnels, which a CONNECT stream joins (closed with the outbound). */
  constructor(private readonly deps: OutboundDeps, private readonly tunnels: OpenSockets, private readonly fixedTarget?: MeshTarget) {
    // An idle connection from the app is closed as an HTTP/1.1 keep-alive one would be.
    super({ requestHeadersMs: deps.timeouts.requestHeadersMs, idleMs: deps.timeouts.connectionIdleMs }, (_socket, stream, head, endStream) => this.stream(stream, head, endStream),
      (err) => deps.logger.error({ err: err.message }, 'an HTTP/2 connection from the app ended on a failure of the sidecar'));
  }

  private stream(stream: H2Stream, head: HeaderBlock, endStream: boolean): void {
    const headers = headersOf(head.fields);
    if (headers[':method'] === 'CONNECT') return this.connect(stream, headers, endStream);
    const caller = new CallerStream(stream, endStream, this.deps.retryBufferBytes);
    proxyStream(this.deps, caller, headers, this.fixedTarget).catch((err: unknown) => {
      this.deps.logger.error({ err: (err as Error).message }, 'outbound HTTP/2 stream failed unexpectedly');
      replyOwnH2(stream, 'ISTHMUS_ERR_INTERNAL_UNEXPECTED', 'the sidecar failed to forward the request', isGrpc(headers['content-type']), undefined);
    });
  }

  /**
   * CONNECT `<service>.<ns>.mesh:<port>` (RFC 9113 §8.5): the tunnel an HTTP/1.1 CONNECT opens
   * (outbound-tunnel.ts: policy step, endpoint, mTLS to the destination sidecar or a TCP service's
   * inbound), with the stream as its socket; the answer's head becomes the stream's HEADERS.
   */
  private connect(stream: H2Stream, headers: IncomingHttpHeaders, endStream: boolean): void {
    const socket = new H2TunnelSocket(stream, endStream);
    socket.on('error', () => undefined);
    const authority = headers[':authority'] ?? '';
    // What the access log reads of the opening request (TunnelExchange sets its end and bytes).
    const req: TunnelRequest = { method: 'CONNECT', url: authority, headers, rawHeaders: [], bodyBytes: 0, response: undefined };
    openTunnel(this.deps, req, socket, Buffer.alloc(0), this.tunnels, this.fixedTarget).catch((err: unknown) => {
      this.deps.logger.error({ err: (err as Error).message }, 'outbound HTTP/2 CONNECT failed unexpectedly');
      socket.destroy();
    });
  }
}

async function proxyStream(deps: OutboundDeps, caller: CallerStream, headers: IncomingHttpHeaders, fixed?: MeshTarget): Promise<void> {
  const stream = caller.stream;
  const method = headers[':method'] ?? 'GET';
  const grpc = isGrpc(headers['content-type']);
  const { facts, exchange } = trackH2Exchange(stream, method, headers, grpc);
  const observer = outboundObserver(deps.routing, deps.cluster, facts, grpc);
  stream.whenClosed(() => {
    if (exchange) exchange.requestBytes = caller.requestBytes;
    // A gRPC call's status is known when its stream closes: the metrics and the dashboard count it then.
    if (grpc) observer.grpcEnded(exchange?.grpcStatus);
  });
  const reply = (code: ErrorCode, message: string, override?: { status: number; grpcStatus?: number; headers?: Record<string, string> }) => replyOwnH2(stream, code, message, grpc, exchange, override);
  const resolved = resolveTarget(method, headers[':path'], headers[':authority'] ?? headers.host, fixed);
  // The same policy step as HTTP/1.1 (outbound.ts): faults and rate limits, then the routing rule.
  const withPolicies = deps.routing.hasPolicies && !('refused' in resolved);
  if (withPolicies) {
    const admission = admitRequest(deps.routing, resolved.target, headers);
    if (admission.delayMs > 0) await sleep(admission.delayMs);
    if (admission.refusal) {
      observer.answered(admission.refusal.status, deps.routing.knows(resolved.target.namespace, resolved.target.service) ? `${resolved.target.namespace}/${resolved.target.service}` : undefined);
      return reply(admission.refusal.code, admission.refusal.message, admission.refusal);
    }
  }
  const routed = routeOf(deps.routing, resolved, withPolicies ? { method, path: resolved.path, headers } : undefined);
  if ('code' in routed) {
    observer.answered(errorCodes[routed.code].status, routed.service);
    return reply(routed.code, routed.message);
  }
  const { route, service, action } = routed;
  const { host, path } = resolved as ResolvedTarget;
  // Trace mode is the admin port's (POST /trace); an app cannot ask a destination for its report.
  const upstreamHeaders: Record<string, string | string[]> = h2ForwardFields(headers, traceHeader);
  if (action?.headers) applyHeaderChanges(upstreamHeaders, action.headers);
  observer.propagate(upstreamHeaders);
  const fields = [':method', method, ':scheme', 'https', ':authority', host, ':path', path, ...fieldsOf(upstreamHeaders)];
  const { retry, breaker } = resilienceOf(deps.routing, resolved as ResolvedTarget, route);
  const responseHeadersMs = attemptTimeout(action?.timeoutMs ?? headWaitMs(deps.timeouts.responseHeadersMs, grpc ? headers['grpc-timeout'] : undefined), retry);
  const notes = exchangeNotes(exchange);

  const outcome = await attemptEndpoints(deps.routing, {
    route, service, method, observer, retry, grpc, replayable: () => caller.replayable, gone: () => caller.closedCode !== undefined,
  }, async (upstream, _endpoint, retryAnswer, trailersStatus) => {
    const release = deps.upstreams.admitStream(upstream, breaker);
    try {
      const connection = await deps.upstreams.h2Connection(upstream);
      return await relayStream(connection, caller, {
        fields, drop: inboundReportHeader, responseHeadersMs, streamIdleMs: deps.timeouts.streamIdleMs, openEndedIdleMs: deps.timeouts.tunnelIdleMs,
        retryAnswer, trailersStatus: grpc ? trailersStatus : undefined, done: release, ...notes,
      });
    } catch (err) {
      release();
      throw err;
    }
  });
  if (!outcome.answered) reply(outcome.code as ErrorCode, outcome.message);
}
