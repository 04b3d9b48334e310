import type { IncomingMessage } from 'node:http';
import { channels } from '../core/channels.js';
import { activeTracer, formatTraceparent, parseTraceparent, type ActiveSpan } from '../core/tracing.js';
import type { PickedEndpoint } from '../model/balancer.js';

const requestChannel = channels.outboundRequest;
const grpcEndedChannel = channels.grpcOutboundEnded;

export interface OutboundObserver {
  /** Tracing is on for this request: `propagate` has fields to add. */
  readonly traced: boolean;
  /** Adds this request's traceparent (the outbound span's) to the upstream headers, when tracing is on. */
  propagate(headers: Record<string, string | string[]>): void;
  /** The endpoint an attempt goes to; the span names the last one. */
  tried(endpoint: PickedEndpoint): void;
  /** Once per request: what the app was answered, for src/telemetry/ and the span. */
  answered(code: number | 'connect_error', service?: string, cluster?: string): void;
  /**
   * A gRPC call's stream closed, with the grpc-status it ended with (undefined: reset before
   * one). Published once the call has been `answered`, which a stream reset first comes before.
   */
  grpcEnded(grpcStatus: number | undefined): void;
  /**
   * A CONNECT became a TCP stream to a TCP service: counted as a TCP connection
   * (isthmus_tcp_*), not as a request; only the span ends, named for the service.
   */
  handedToTcp(service: string): void;
}

/**
 * The record step of the outbound request path: one diagnostics-channel event per answered
 * request (labels only from the catalog, so they stay bounded) and, when tracing is on, a
 * CLIENT span (docs/tracing.md). With tracing off and nobody subscribed it costs a timestamp.
 */
export function outboundObserver(origin: object, cluster: string, req: Pick<IncomingMessage, 'method' | 'headers'> & { url?: string | undefined }, grpc = false): OutboundObserver {
  return new RequestObserver(origin, cluster, req, grpc);
}

/** One request's observer: a class, so that a request costs one object and no closures. */
class RequestObserver implements OutboundObserver {
  readonly traced: boolean;
  private readonly started = performance.now();
  private readonly span: ActiveSpan | undefined;
  private last: PickedEndpoint | undefined;
  /** A gRPC call's answer, kept for its end; and an end that came before the answer. */
  private answer: { service: string | undefined; cluster: string | undefined; code: number | 'connect_error'; seconds: number } | undefined;
  private endedFirst: { grpcStatus: number | undefined } | undefined;

  constructor(private readonly origin: object, cluster: string, private readonly req: Pick<IncomingMessage, 'method' | 'headers'> & { url?: string | undefined }, private readonly grpc: boolean) {
    // `req.headers` is read only with tracing on: an HTTP/1.1 request builds it when asked.
    this.span = activeTracer()?.start({
      kind: 'client', name: 'outbound',
      parent: parseTraceparent(req.headers.traceparent, req.headers.tracestate),
      attributes: { 'isthmus.source_cluster': cluster, 'http.request.method': req.method },
    });
    this.traced = this.span !== undefined;
  }

  propagate(headers: Record<string, string | string[]>): void {
    const span = this.span;
    if (!span) return;
    // W3C: the upstream's parent is this span; tracestate goes on only with a valid traceparent.
    headers.traceparent = formatTraceparent(span.context);
    if (span.context.traceState) headers.tracestate = span.context.traceState;
    else delete headers.tracestate;
  }

  tried(endpoint: PickedEndpoint): void {
    this.last = endpoint;
  }

  answered(code: number | 'connect_error', service?: string, destination?: string): void {
    const seconds = (performance.now() - this.started) / 1000;
    const last = this.last;
    if (requestChannel.hasSubscribers) requestChannel.publish({ origin: this.origin, service, cluster: destination, code, seconds, request: this.req, endpoint: last?.address, grpc: this.grpc });
    if (this.grpc) {
      this.answer = { service, cluster: destination, code, seconds };
      if (this.endedFirst) this.publishEnd(this.endedFirst.grpcStatus);
    }
    this.span?.end({
      // Span names stay bounded: a name the catalog does not know is not one.
      name: service ? `outbound ${service}` : 'outbound',
      attributes: {
        'isthmus.destination_service': service, 'isthmus.destination_cluster': destination, 'isthmus.priority': last?.priority,
        'http.status_code': typeof code === 'number' ? code : undefined, 'http.response.status_code': typeof code === 'number' ? code : undefined,
        'network.peer.address': last?.address, 'isthmus.endpoint_kind': last?.kind,
      },
      ...(code === 'connect_error' || code >= 500 ? { error: String(code) } : {}),
    });
  }

  handedToTcp(service: string): void {
    this.span?.end({ name: `outbound ${service}`, attributes: { 'isthmus.destination_service': service, 'network.protocol.name': 'tcp' } });
  }

  grpcEnded(grpcStatus: number | undefined): void {
    if (this.answer) this.publishEnd(grpcStatus);
    else this.endedFirst = { grpcStatus };
  }

  private publishEnd(grpcStatus: number | undefined): void {
    if (this.answer && grpcEndedChannel.hasSubscribers) grpcEndedChannel.publish({ origin: this.origin, ...this.answer, grpcStatus });
  }
}
