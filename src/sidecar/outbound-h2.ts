import type { IncomingHttpHeaders } from 'node:http2';
import type { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { errorCodes, type ErrorCode } from '../core/errors.js';
import { H2Connection } from '../h2/connection.js';
import { h2Error } from '../h2/frames.js';
import type { HeaderBlock } from '../h2/hpack.js';
import type { H2Stream } from '../h2/stream.js';
import { applyHeaderChanges } from '../model/traffic-policy.js';
import { attemptEndpoints, attemptTimeout, resilienceOf, routeOf } from './attempts.js';
import { encodeGrpcMessage, grpcStatusOf, headWaitMs, isGrpc } from './grpc-status.js';
import { CallerStream } from './h2-caller.js';
import { trackH2Exchange, type ExchangeStream, type H2Exchange } from './h2-exchange.js';
import { h2ForwardFields } from './h2-headers.js';
import { relayStream } from './h2-stream-relay.js';
import type { OutboundDeps } from './outbound.js';
import { outboundObserver } from './outbound-observer.js';
import { admitRequest } from './policy-step.js';
import { resolveTarget, type MeshTarget, type ResolvedTarget } from './request-target.js';
import { inboundReportHeader, traceHeader } from './trace.js';

/**
 * HTTP/2 from the app (h2c with prior knowledge) on the proxy port or a fixed listener, on
 * Isthmus's own HTTP/2 (src/h2/): each stream takes the same steps as an HTTP/1.1 request
 * (attempts.ts: route, pick, attempt/retry, record) and goes to the destination sidecar as
 * HTTP/2 over a kept mTLS connection (ALPN h2; Upstreams.h2Connection), relayed by
 * h2-stream-relay.ts, so that gRPC's trailers and grpc-status pass intact: bodies streamed both
 * ways, kept up to 1 MiB for a retry (h2-caller.ts), cancels both ways, errors as HTTP/2 answers
 * (gRPC ones trailers-only). Until 2026-12-06 this ran on node:http2, whose per-stream cost was
 * most of a sidecar's CPU per gRPC call (docs/benchmarks.md); the destination sidecar's inbound
 * (inbound-h2.ts) still does.
 */
export class OwnOutboundH2 {
  private readonly connections = new Set<H2Connection>();

  constructor(private readonly deps: OutboundDeps, private readonly fixedTarget?: MeshTarget) {}

  /** A connection that opened with the HTTP/2 preface (protocol-sniff.ts), its first bytes put back. */
  accept(socket: Duplex): void {
    const { timeouts } = this.deps;
    let first = true;
    const connection: H2Connection = new H2Connection(socket, {
      role: 'server',
      onStream: (stream, head, endStream) => {
        if (first) {
          first = false;
          clearTimeout(headTimer);
        }
        this.stream(stream, head, endStream);
      },
      onClose: () => {
        clearTimeout(headTimer);
        this.connections.delete(connection);
      },
    });
    this.connections.add(connection);
    // A connection with no request head within timeouts.requestHeaders is closed, as on HTTP/1.1.
    const headTimer = setTimeout(() => {
      connection.destroy(h2Error.noError, `ISTHMUS_ERR_DATAPLANE_REQUEST_HEADERS_TIMEOUT: no request head within ${timeouts.requestHeadersMs} ms (timeouts.requestHeaders)`);
    }, timeouts.requestHeadersMs);
    // An idle connection from the app is closed as an HTTP/1.1 keep-alive one would be.
    (socket as { setTimeout?: (ms: number, cb: () => void) => void }).setTimeout?.(timeouts.connectionIdleMs, () => connection.close());
  }

  /** Closes every connection open now (the listener's closeAllConnections calls it). */
  destroySessions(): void {
    for (const connection of this.connections) connection.destroy();
  }

  private stream(stream: H2Stream, head: HeaderBlock, endStream: boolean): void {
    const caller = new CallerStream(stream, endStream, this.deps.retryBufferBytes);
    const headers = headersOf(head.fields);
    proxyStream(this.deps, caller, headers, this.fixedTarget).catch((err: unknown) => {
      this.deps.logger.error({ err: (err as Error).message }, 'outbound HTTP/2 stream failed unexpectedly');
      replyOwnH2(stream, 'ISTHMUS_ERR_INTERNAL_UNEXPECTED', 'the sidecar failed to forward the request', isGrpc(headers['content-type']), undefined);
    });
  }
}

/** A header block as node:http2 hands one over: repeated fields joined (cookie with "; ", others with ", "). */
export function headersOf(fields: readonly string[]): IncomingHttpHeaders {
  const out: Record<string, string> = {};
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i]!;
    const value = fields[i + 1]!;
    const had = out[name];
    out[name] = had === undefined ? value : `${had}${name === 'cookie' ? '; ' : ', '}${value}`;
  }
  return out;
}

/** A header object (pseudo-headers among its keys) as a block's fields, pseudo-headers first. */
function fieldsOf(headers: Record<string, string | string[] | number | undefined>): string[] {
  const pseudo: string[] = [];
  const regular: string[] = [];
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined) continue;
    const list = name.charCodeAt(0) === 58 ? pseudo : regular;
    if (Array.isArray(value)) for (const v of value) list.push(name, v);
    else list.push(name, String(value));
  }
  return pseudo.concat(regular);
}

/** Our H2Stream as H2Exchange reads a stream: closed, its code, and a 'close' listener. */
function exchangeStream(stream: H2Stream): ExchangeStream {
  return {
    get closed() { return stream.closed; },
    get rstCode() { return stream.closeCode; },
    once: (_event: 'close', listener: () => void) => stream.whenClosed(listener),
  };
}

/**
 * The sidecar's own answer on a stream of ours, as replyH2 gives on node:http2: the JSON error
 * and `x-isthmus-error`, or for gRPC a trailers-only answer with the mapped grpc-status and the
 * message. A stream whose head went out already is reset instead.
 */
export function replyOwnH2(stream: H2Stream, code: ErrorCode, message: string, grpc: boolean, exchange: H2Exchange | undefined, override?: { status: number; grpcStatus?: number; headers?: Record<string, string> }): void {
  if (stream.closed) return;
  if (stream.headSent) return void stream.reset(h2Error.internalError);
  const status = override?.status ?? errorCodes[code].status;
  if (grpc) {
    const grpcStatus = override?.grpcStatus ?? grpcStatusOf(status);
    if (exchange) exchange.grpcStatus = grpcStatus;
    stream.sendHeaders(fieldsOf({
      ':status': 200, ...override?.headers, 'content-type': 'application/grpc', 'grpc-status': String(grpcStatus),
      'grpc-message': encodeGrpcMessage(message), 'x-isthmus-error': code,
    }), true);
    return;
  }
  const body = Buffer.from(JSON.stringify({ error: { code, message } }));
  if (exchange) exchange.responseBytes += body.length;
  stream.sendHeaders(fieldsOf({ ':status': status, ...override?.headers, 'content-type': 'application/json', 'content-length': body.length, 'x-isthmus-error': code }), false);
  stream.write(body, true);
}

async function proxyStream(deps: OutboundDeps, caller: CallerStream, headers: IncomingHttpHeaders, fixed?: MeshTarget): Promise<void> {
  const stream = caller.stream;
  const method = headers[':method'] ?? 'GET';
  const grpc = isGrpc(headers['content-type']);
  const { facts, exchange } = trackH2Exchange(exchangeStream(stream), method, headers, grpc);
  const observer = outboundObserver(deps.routing, deps.cluster, facts, grpc);
  stream.whenClosed(() => {
    if (exchange) exchange.requestBytes = caller.requestBytes;
    // A gRPC call's status is known when its stream closes: the metrics and the dashboard count it then.
    if (grpc) observer.grpcEnded(exchange?.grpcStatus);
  });
  const reply = (code: ErrorCode, message: string, override?: { status: number; grpcStatus?: number; headers?: Record<string, string> }) => replyOwnH2(stream, code, message, grpc, exchange, override);
  if (method === 'CONNECT') {
    observer.answered(501);
    return reply('ISTHMUS_ERR_DATAPLANE_PROTOCOL_UNSUPPORTED', 'CONNECT over HTTP/2 is not carried: send CONNECT over HTTP/1.1 to the proxy port');
  }
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
  const notes = exchange ? {
    onHead: (block: HeaderBlock) => exchange.noteGrpcStatus(headersOf(block.fields)),
    onTrailers: (block: HeaderBlock) => exchange.noteGrpcStatus(headersOf(block.fields)),
    onAnswerBytes: exchange.countsBytes ? (n: number) => { exchange.responseBytes += n; } : undefined,
  } : {};

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
