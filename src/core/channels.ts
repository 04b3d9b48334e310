import { channel } from 'node:diagnostics_channel';
import type { SpliceEnd } from './splice.js';

/**
 * Every `node:diagnostics_channel` the core publishes on, with the shape of its messages: the
 * one list. src/telemetry/ subscribes; the core
 * never imports a metrics or tracing library. Publishers check `hasSubscribers` first where a
 * message would cost something on a hot path.
 *
 * `origin` is the object that published (a Gateway, a RoutingTable, an Inbound). Several
 * sidecars and gateways can share one process (`isthmus dev up`), and channels are
 * process-wide: a subscriber keeps the messages of the components it observes by origin.
 */
export const channelNames = {
  gatewayRefused: 'isthmus:gateway:refused',
  gatewayRouted: 'isthmus:gateway:routed',
  gatewayClosed: 'isthmus:gateway:closed',
  gatewayBytes: 'isthmus:gateway:bytes',
  balancerFailover: 'isthmus:balancer:failover',
  balancerEjection: 'isthmus:balancer:ejection',
  outboundRequest: 'isthmus:sidecar:outbound',
  inboundRequest: 'isthmus:sidecar:inbound',
  grpcOutboundEnded: 'isthmus:sidecar:grpc-outbound-ended',
  grpcInboundEnded: 'isthmus:sidecar:grpc-inbound-ended',
  tcpOutbound: 'isthmus:sidecar:tcp-outbound',
  tcpInbound: 'isthmus:sidecar:tcp-inbound',
  tcpOutboundClosed: 'isthmus:sidecar:tcp-outbound-closed',
  tcpInboundClosed: 'isthmus:sidecar:tcp-inbound-closed',
  tcpOutboundBytes: 'isthmus:sidecar:tcp-outbound-bytes',
  tcpInboundBytes: 'isthmus:sidecar:tcp-inbound-bytes',
  tunnelOutboundBytes: 'isthmus:sidecar:tunnel-outbound-bytes',
  tunnelInboundBytes: 'isthmus:sidecar:tunnel-inbound-bytes',
  policyAction: 'isthmus:sidecar:policy-action',
  requestRefused: 'isthmus:sidecar:request-refused',
  authzDenied: 'isthmus:sidecar:authz-denied',
  upstreamConnect: 'isthmus:sidecar:upstream-connect',
} as const;

/**
 * What a resilience policy did to a request at the calling sidecar (docs/traffic-policy.md):
 * `retry_budget_exhausted` (a retry the RetryPolicy's budget refused: the app got the original
 * answer or error), `circuit_open` (a CircuitBreaker limit refused it, 503), `rate_limited`
 * (LocalRateLimit, 429), `fault_abort` and `fault_delay` (FaultInjection).
 */
export type PolicyAction = 'retry_budget_exhausted' | 'circuit_open' | 'rate_limited' | 'fault_abort' | 'fault_delay';

/** `service` is the catalog's `<ns>/<name>`; `policy` names the document ("RetryPolicy demo/hello-retries"). Published with the RoutingTable as origin. */
export interface PolicyActionMessage {
  origin: object;
  service: string | undefined;
  action: PolicyAction;
  policy: string | undefined;
}

/**
 * A sidecar's HTTP/1.1 listener refused bytes before they became a request, so nothing was
 * forwarded: `head_timeout` (408: the head did not arrive in time), `header_too_large` (431),
 * `malformed` (400: not HTTP/1.1 as RFC 9112 frames it — conflicting Content-Length and
 * Transfer-Encoding, obs-fold, a bare CR, a bad chunk size, two Host fields…). `listener` is
 * `outbound` (the app's proxy and fixed listeners) or `inbound` (the mTLS listener).
 * Published with the RoutingTable (outbound) or the Inbound as origin.
 */
export interface RequestRefusedMessage {
  origin: object;
  listener: 'outbound' | 'inbound';
  reason: 'head_timeout' | 'header_too_large' | 'malformed';
}

/**
 * A destination's inbound refused a caller by authorization (docs/authorization.md): `reason`
 * `deny_rule` (a deny rule matched; `rule` names it), `no_rule_allows` (an allow list or the
 * namespace's default), `path_refused` (the path cannot be matched safely: 400), or `plaintext`
 * (a plain-text caller while the namespace's mTLS mode is strict; `rule` names the MeshNamespace
 * when one says strict).
 * `service` is the inbound's own `<ns>/<name>`; `caller` the verified SPIFFE ID, undefined for a
 * plain-text caller; `cluster` the caller's issuing cluster when known. Published with the
 * InboundAuthorization as origin.
 */
export interface AuthzDeniedMessage {
  origin: object;
  service: string;
  caller: string | undefined;
  cluster: string | undefined;
  reason: 'deny_rule' | 'no_rule_allows' | 'path_refused' | 'plaintext';
  rule: string | undefined;
  at: number;
}

/** The gateway closed a connection without routing it; `reason` is a GatewayRefusal. */
export interface GatewayRefusedMessage {
  origin: object;
  reason: string;
  detail: string;
  remote: string | undefined;
}

/** The gateway spliced a connection to a local endpoint of `service` (`<ns>/<name>`). */
export interface GatewayRoutedMessage {
  origin: object;
  service: string;
  endpoint: string;
  remote: string | undefined;
}

/**
 * A connection the gateway routed has ended: `end` says how (both sides closed, the idle limit,
 * an error or reset on either side), with the bytes each side sent through it (the caller's
 * ClientHello included).
 */
export interface GatewayClosedMessage {
  origin: object;
  service: string;
  end: SpliceEnd;
  fromCaller: number;
  fromEndpoint: number;
}

/**
 * Bytes a routed connection carried since its last such message (core/byte-meter.ts): sent while
 * it is open, when metrics are scraped, and for the rest when it ends (before its
 * `gatewayClosed`). Summed, they are its totals.
 */
export interface GatewayBytesMessage {
  origin: object;
  service: string;
  fromCaller: number;
  fromEndpoint: number;
}

/** A sidecar moved a service's primary traffic to another locality priority (undefined: none left). */
export interface FailoverMessage {
  origin: object;
  namespace: string;
  service: string;
  from: number | undefined;
  to: number | undefined;
  /** The clusters whose localities hold priority `from` and `to` (empty for none). */
  fromClusters: string[];
  toClusters: string[];
  loads: number[];
  at: number;
}

/**
 * Outlier detection ejected an endpoint (a local instance or a remote gateway). `service` and
 * `cluster` say which request tipped it, when the caller told.
 */
export interface EjectionMessage {
  origin: object;
  address: string;
  reason: 'connect-error' | '5xx';
  service: string | undefined;
  cluster: string | undefined;
  at: number;
}

/**
 * A request through a sidecar's outbound proxy was answered (response headers sent to the app).
 * `service` is `<ns>/<name>` only for services the catalog knows: names typed by an app are
 * unbounded. `cluster` is the cluster of the last endpoint tried, undefined when none was.
 * `code` is the HTTP status given to the app, or `connect_error` when no endpoint answered.
 */
export interface OutboundRequestMessage {
  origin: object;
  service: string | undefined;
  cluster: string | undefined;
  code: number | 'connect_error';
  seconds: number;
  /** The request as the app sent it, by reference (the access log reads it; metrics never do). */
  request?: RequestFacts;
  /** host:port of the last endpoint tried (a local instance or a remote gateway), undefined when none was. */
  endpoint?: string | undefined;
  /** A gRPC call (HTTP/2, content-type application/grpc…): its end is published too, on grpcOutboundEnded. */
  grpc: boolean;
}

/**
 * A gRPC call through a sidecar's outbound ended (its stream closed), published after its
 * OutboundRequestMessage with the same `service`, `cluster`, `code` and `seconds` (to the
 * response head). `grpcStatus` is the status it ended with, from the answer's trailers or
 * trailers-only head (the sidecar's own gRPC errors included); undefined when the stream was
 * reset before one came.
 */
export interface GrpcOutboundEndedMessage {
  origin: object;
  service: string | undefined;
  cluster: string | undefined;
  code: number | 'connect_error';
  seconds: number;
  grpcStatus: number | undefined;
}

/** A gRPC call through a sidecar's inbound ended; `peer` as in InboundRequestMessage, `grpcStatus` as in GrpcOutboundEndedMessage. */
export interface GrpcInboundEndedMessage {
  origin: object;
  peer: string | undefined;
  grpcStatus: number | undefined;
}

/** A request arrived through a sidecar's inbound mTLS listener; `peer` is the caller's SPIFFE ID if accepted. */
export interface InboundRequestMessage {
  origin: object;
  peer: string | undefined;
  code: number;
  seconds: number;
  /** The request as the caller sent it, by reference (the access log reads it; metrics never do). */
  request?: RequestFacts | undefined;
}

/**
 * What the access log reads of a request: an HTTP/1.1 request (its `url` is the request target)
 * or an HTTP/2 stream's headers (`:method`, `:authority`, `:path` among them).
 */
export interface RequestFacts {
  method?: string | undefined;
  url?: string | undefined;
  headers: Readonly<Record<string, string | string[] | undefined>>;
  /** Body bytes read from the sender so far (an HTTP/1.1 request). */
  readonly bodyBytes?: number;
  /** The answer being written to the sender (an HTTP/1.1 request): the access log waits for its end. */
  readonly response?: ExchangeEnd | undefined;
}

let exchangeReaders = 0;

/**
 * An access log that reads exchanges' bytes and ends has started (several sidecars may share a
 * process); the returned function says it stopped. The HTTP/2 paths count a stream's bytes only
 * while one reads them (sidecar/h2-exchange.ts); HTTP/1.1's counts are two additions, always made.
 */
export function countExchangeBytes(): () => void {
  exchangeReaders += 1;
  let stopped = false;
  return () => {
    if (!stopped) exchangeReaders -= 1;
    stopped = true;
  };
}

/** Whether an access log reads exchanges' bytes and ends now. */
export function exchangeBytesCounted(): boolean {
  return exchangeReaders > 0;
}

/** What the access log reads of an answer to learn when and how it ended. */
export interface ExchangeEnd {
  /** Body bytes written so far. */
  readonly bodyBytes: number;
  /** 'close' was emitted already. */
  readonly closed: boolean;
  /** The whole answer was written (at 'close': false if its connection closed first). */
  readonly writableFinished: boolean;
  /** A gRPC answer's `grpc-status`, once its trailers went out. */
  readonly grpcStatus?: number | undefined;
  once(event: 'close', listener: () => void): unknown;
}

/**
 * A TCP fixed listener finished choosing for one of the app's connections: `connected` (spliced
 * to an endpoint of `cluster`: the connection is open), `no_endpoint` (unknown service or
 * nothing healthy), or `unreachable` (every attempt failed; `cluster` is the last one tried);
 * a failure carries its error code (what the log line says). `service` is `<ns>/<name>` from
 * the listener's config. Published with the RoutingTable as origin.
 */
export interface TcpOutboundMessage {
  origin: object;
  service: string;
  cluster: string | undefined;
  result: 'connected' | 'no_endpoint' | 'unreachable';
  code?: 'ISTHMUS_ERR_TCP_NO_ENDPOINT' | 'ISTHMUS_ERR_TCP_UPSTREAM_UNREACHABLE';
}

/**
 * A TCP inbound listener decided on a caller: `accepted` (spliced to the app: the connection is
 * open), or a failure with its error code. `peer` is its SPIFFE ID once its certificate was
 * accepted; undefined for a plain-text caller (permissive mode) and before a certificate was.
 */
export interface TcpInboundMessage {
  origin: object;
  peer: string | undefined;
  result: 'accepted' | 'refused' | 'app_unreachable';
  code?: 'ISTHMUS_ERR_TCP_CALLER_REFUSED' | 'ISTHMUS_ERR_TCP_APP_UNREACHABLE';
}

/**
 * A spliced TCP connection is over (both sides closed). `end`: both finished cleanly (`closed`),
 * `idle` (the idle timeout closed it), or `error` (a reset or error on either leg).
 * `sentBytes`: what the local workload sent through it, `receivedBytes`: what it got back (on
 * the client side the app is the local workload; on the inbound, the app behind it).
 */
export interface TcpClosedFields {
  origin: object;
  end: 'closed' | 'idle' | 'error';
  sentBytes: number;
  receivedBytes: number;
  seconds: number;
}

/** A connection through a TCP fixed listener closed; `service` and `cluster` as when it was `connected`. */
export interface TcpOutboundClosedMessage extends TcpClosedFields {
  service: string;
  cluster: string;
}

/** A connection through the TCP inbound closed; `peer` is the caller's SPIFFE ID, undefined for a plain-text caller (permissive mode). */
export interface TcpInboundClosedMessage extends TcpClosedFields {
  peer: string | undefined;
}

/**
 * Bytes a spliced TCP connection carried since its last such message, as GatewayBytesMessage:
 * while it is open (at each metrics scrape) and for the rest when it closes, before its closed
 * message. `sentBytes` and `receivedBytes` as in TcpClosedFields.
 */
export interface TcpBytesFields {
  origin: object;
  sentBytes: number;
  receivedBytes: number;
}

/** Bytes through a TCP fixed listener, labelled as its TcpOutboundClosedMessage will be. */
export interface TcpOutboundBytesMessage extends TcpBytesFields {
  service: string;
  cluster: string;
}

/** Bytes through the TCP inbound, labelled as its TcpInboundClosedMessage will be. */
export interface TcpInboundBytesMessage extends TcpBytesFields {
  peer: string | undefined;
}

/**
 * Bytes a WebSocket or CONNECT tunnel carried after its opening request's head (the answer's
 * head included), from the app's side: at the caller's sidecar `sentBytes` is what the app sent
 * into it; at the destination's inbound what the app there sent back. As TcpBytesFields: while
 * it is open at each metrics scrape, and the rest when it closes.
 */
export interface TunnelOutboundBytesMessage extends TcpBytesFields {
  service: string;
  cluster: string | undefined;
}

/** A tunnel's bytes at the destination's inbound; `peer` the caller's SPIFFE ID (undefined: plain text, permissive mode). */
export interface TunnelInboundBytesMessage extends TcpBytesFields {
  peer: string | undefined;
}

/**
 * An upstream pool (upstream-pool.ts) began opening a connection (`start`), or that attempt
 * ended (`end`, with `error` when it failed): the pool's own view of its handshakes in flight.
 * Published with the UpstreamPool as origin.
 */
export interface UpstreamConnectMessage {
  origin: object;
  phase: 'start' | 'end';
  error?: string;
}

/** A diagnostics channel whose messages have one type. */
export interface TypedChannel<T> {
  readonly name: string | symbol;
  readonly hasSubscribers: boolean;
  publish(message: T): void;
  subscribe(listener: (message: T, name: string | symbol) => void): void;
  unsubscribe(listener: (message: T, name: string | symbol) => void): boolean;
}

const typed = <T>(name: string): TypedChannel<T> => channel(name) as unknown as TypedChannel<T>;

// Held here for the life of the process: a channel nobody references may be collected with its subscribers.
export const channels = {
  gatewayRefused: typed<GatewayRefusedMessage>(channelNames.gatewayRefused),
  gatewayRouted: typed<GatewayRoutedMessage>(channelNames.gatewayRouted),
  gatewayClosed: typed<GatewayClosedMessage>(channelNames.gatewayClosed),
  gatewayBytes: typed<GatewayBytesMessage>(channelNames.gatewayBytes),
  balancerFailover: typed<FailoverMessage>(channelNames.balancerFailover),
  balancerEjection: typed<EjectionMessage>(channelNames.balancerEjection),
  outboundRequest: typed<OutboundRequestMessage>(channelNames.outboundRequest),
  inboundRequest: typed<InboundRequestMessage>(channelNames.inboundRequest),
  grpcOutboundEnded: typed<GrpcOutboundEndedMessage>(channelNames.grpcOutboundEnded),
  grpcInboundEnded: typed<GrpcInboundEndedMessage>(channelNames.grpcInboundEnded),
  tcpOutbound: typed<TcpOutboundMessage>(channelNames.tcpOutbound),
  tcpInbound: typed<TcpInboundMessage>(channelNames.tcpInbound),
  tcpOutboundClosed: typed<TcpOutboundClosedMessage>(channelNames.tcpOutboundClosed),
  tcpInboundClosed: typed<TcpInboundClosedMessage>(channelNames.tcpInboundClosed),
  tcpOutboundBytes: typed<TcpOutboundBytesMessage>(channelNames.tcpOutboundBytes),
  tcpInboundBytes: typed<TcpInboundBytesMessage>(channelNames.tcpInboundBytes),
  tunnelOutboundBytes: typed<TunnelOutboundBytesMessage>(channelNames.tunnelOutboundBytes),
  tunnelInboundBytes: typed<TunnelInboundBytesMessage>(channelNames.tunnelInboundBytes),
  policyAction: typed<PolicyActionMessage>(channelNames.policyAction),
  requestRefused: typed<RequestRefusedMessage>(channelNames.requestRefused),
  authzDenied: typed<AuthzDeniedMessage>(channelNames.authzDenied),
  upstreamConnect: typed<UpstreamConnectMessage>(channelNames.upstreamConnect),
} as const;
