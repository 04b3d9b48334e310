import { Type, type Static } from '../core/typebox.js';
import { durationPattern, parseDuration } from '../core/validate.js';

/**
 * Every phase of a proxied request or tunnel has a limit, so that nothing a slow or vanished
 * peer does can hold a socket or a buffer forever. The defaults follow what operators of
 * Envoy-based meshes expect: a short connect timeout, no overall request deadline (streams and
 * uploads may run for hours) but a limit on silence.
 */
export interface DataPlaneTimeouts {
  /** TCP connect plus TLS handshake to a sidecar or gateway. */
  connectMs: number;
  /** From the app's first byte to the end of its request head. */
  requestHeadersMs: number;
  /** From the request's end (its last body byte sent) to the upstream's response head. */
  responseHeadersMs: number;
  /** No byte either way on a request or response body. */
  streamIdleMs: number;
  /** A kept-alive connection with no request, app side. */
  connectionIdleMs: number;
  /**
   * A pooled connection or HTTP/2 session to another sidecar or a gateway with no request. Longer
   * than the app side's: a pool thrown away between two bursts costs the next burst its
   * handshakes, while an idle mTLS connection costs some tens of KB. The inbound keeps the
   * other side of these a little longer, so that the caller always closes first.
   */
  upstreamIdleMs: number;
  /**
   * No byte either way on a WebSocket, CONNECT or TCP tunnel, or on an open-ended answer once its
   * head has passed (`openEndedAnswer`: a gRPC call, server-sent events, a watch), which may
   * rightly be silent for minutes.
   */
  tunnelIdleMs: number;
  /**
   * On SIGTERM or SIGINT, how long the inbound's open connections may take to finish what they
   * carry before the sidecar closes them (0: at once). Istio's terminationDrainDuration is 5 s.
   */
  drainMs: number;
}

export const defaultTimeouts: Readonly<DataPlaneTimeouts> = Object.freeze({
  connectMs: 2_000,
  requestHeadersMs: 10_000,
  responseHeadersMs: 60_000,
  streamIdleMs: 300_000,
  connectionIdleMs: 60_000,
  upstreamIdleMs: 600_000,
  tunnelIdleMs: 3_600_000,
  drainMs: 5_000,
});

const duration = (description: string) => Type.Optional(Type.String({ pattern: durationPattern, description }));

/** The sidecar YAML's `timeouts:` block; every field optional, durations like 2s, 5m, 1h. */
export const TimeoutsSchema = Type.Object({
  connect: duration('TCP connect + TLS handshake to a sidecar or gateway (default 2s)'),
  requestHeaders: duration('the app must send its whole request head within this (default 10s)'),
  responseHeaders: duration('the upstream must start its answer within this after the request\'s end (default 60s)'),
  streamIdle: duration('a body with no byte either way for this long is cut (default 5m)'),
  connectionIdle: duration('an idle keep-alive connection from the app is closed after this (default 60s)'),
  upstreamIdle: duration('a pooled connection or HTTP/2 session to another sidecar or a gateway, idle this long, is closed (default 10m)'),
  tunnelIdle: duration('a WebSocket, CONNECT or TCP tunnel, or an answer of no stated length (a gRPC call, server-sent events, a watch) once its head has passed, with no byte either way is closed after this (default 1h)'),
  drain: duration('on SIGTERM or SIGINT, the inbound stops taking connections and those open have this long to finish (default 5s; 0s: closed at once)'),
}, { additionalProperties: false });
export type TimeoutsConfig = Static<typeof TimeoutsSchema>;

/**
 * Whether an answer with a body is open-ended: its head gives no `content-length` (chunked over
 * HTTP/1.1, or read until the connection closes; over HTTP/2 a stream of DATA frames, as every
 * gRPC answer is). Such an answer may be a stream that stays silent for minutes between events:
 * server-sent events, a Kubernetes-style watch, a gRPC subscription. Once its head has passed,
 * silence on it is limited by `tunnelIdle`, not `streamIdle`; an answer of a stated length that
 * stops moving is a stalled download, cut after `streamIdle`. Envoy's stream idle timeout
 * (5 minutes by default) applies to both alike; Istio turns it off in its sidecars.
 */
export function openEndedAnswer(headers: { readonly 'content-length'?: unknown }): boolean {
  return headers['content-length'] === undefined;
}

/**
 * How long the inbound keeps an idle connection (HTTP/1.1 keep-alive, HTTP/2 session): longer than
 * any pool on the other side keeps it (other sidecars' `upstreamIdle`, an app's
 * `connectionIdle`-bound client), so that the caller closes first and never sends a request on a
 * connection the inbound is closing at that moment.
 */
export function inboundKeepAliveMs(timeouts: Pick<DataPlaneTimeouts, 'connectionIdleMs' | 'upstreamIdleMs'>): number {
  return Math.max(timeouts.connectionIdleMs, timeouts.upstreamIdleMs) + 5_000;
}

export function resolveTimeouts(config: TimeoutsConfig | undefined): Readonly<DataPlaneTimeouts> {
  const ms = (value: string | undefined, fallback: number) => (value === undefined ? fallback : Math.max(1, Math.round(parseDuration(value) * 1000)));
  return Object.freeze({
    connectMs: ms(config?.connect, defaultTimeouts.connectMs),
    requestHeadersMs: ms(config?.requestHeaders, defaultTimeouts.requestHeadersMs),
    responseHeadersMs: ms(config?.responseHeaders, defaultTimeouts.responseHeadersMs),
    streamIdleMs: ms(config?.streamIdle, defaultTimeouts.streamIdleMs),
    connectionIdleMs: ms(config?.connectionIdle, defaultTimeouts.connectionIdleMs),
    upstreamIdleMs: ms(config?.upstreamIdle, defaultTimeouts.upstreamIdleMs),
    tunnelIdleMs: ms(config?.tunnelIdle, defaultTimeouts.tunnelIdleMs),
    drainMs: config?.drain === undefined ? defaultTimeouts.drainMs : Math.round(parseDuration(config.drain) * 1000),
  });
}
