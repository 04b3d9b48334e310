import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { errorCodes } from '../core/errors.js';
import type { OpenSockets } from '../core/open-sockets.js';
import { meteredSplice } from '../core/byte-meter.js';
import { channels } from '../core/channels.js';
import type { HeaderChanges } from '../model/traffic-policy.js';
import { maxAttempts, routeOf } from './attempts.js';
import { errorResponse, requestHead, type HeadChanges } from './http-head.js';
import type { OutboundDeps } from './outbound.js';
import { outboundObserver } from './outbound-observer.js';
import { TunnelExchange, whenTunnelAnswered, type TunnelRequest } from './tunnel-exchange.js';
import { publishPolicyAction } from './policy-actions.js';
import { admitRequest } from './policy-step.js';
import { resolveTarget, type MeshTarget, type ResolvedTarget } from './request-target.js';
import { traceHeader } from './trace.js';
import type { Route } from './routing.js';
import { dialTcpService } from './tcp-listener.js';
import { connectTcpAlpn } from './tcp-protocol.js';

/**
 * An HTTP/1.1 Upgrade (WebSocket) or a CONNECT (over HTTP/1.1, or over HTTP/2 through
 * h2-tunnel-socket.ts, which makes the stream a socket): the policy step at the opening request, then
 * pick an endpoint as for a request, open an mTLS connection to it (a local sidecar, or a remote
 * gateway by SNI), write the request head, then splice bytes both ways. The destination's
 * answer (101, 200 or a refusal) flows back as is.
 *
 * The policy step is the one requests take (docs/traffic-policy.md): a FaultInjection (delay,
 * abort) acts on the opening request (the destination's inbound takes a LocalRateLimit token for it); an HTTPRoute or TrafficSplit chooses
 * the backend by its matches and weights, and a rule's header changes apply to the head sent on.
 * Nothing applies after the upgrade: the tunnel is a byte stream with no requests to retry or
 * time out, so a RetryPolicy, per-try and request timeouts are not used. Only a failed
 * connection is retried on another endpoint, as for any tunnel: nothing was sent yet. The
 * tunnel's connection counts toward the backend's CircuitBreaker `maxConnections` while it is
 * open; beyond it the tunnel is refused with 503 CIRCUIT_OPEN.
 */
export async function openTunnel(deps: OutboundDeps, req: TunnelRequest, socket: Duplex, head: Buffer, tunnels: OpenSockets, fixed?: MeshTarget): Promise<void> {
  const observer = outboundObserver(deps.routing, deps.cluster, req);
  const target = resolveTarget(req.method, req.url, req.headers.host, fixed);
  const connect = req.method === 'CONNECT';
  const withPolicies = deps.routing.hasPolicies && !('refused' in target);
  if (withPolicies) {
    const admission = admitRequest(deps.routing, target.target, req.headers);
    if (admission.delayMs > 0) await sleep(admission.delayMs);
    if (admission.refusal) {
      const { status, code, message, headers } = admission.refusal;
      const service = `${target.target.namespace}/${target.target.service}`;
      observer.answered(status, deps.routing.knows(target.target.namespace, target.target.service) ? service : undefined);
      return void socket.end(errorResponse(status, STATUS_CODES[status] ?? 'Error', code, message, headers));
    }
  }
  // CONNECT names an authority, not a path: its rules match as a request for `/` would (a rule
  // without path match, Gateway API's default PathPrefix /), by method and headers.
  const facts = withPolicies ? { method: req.method ?? 'GET', path: connect ? '/' : target.path, headers: req.headers } : undefined;
  const routed = routeOf(deps.routing, target, facts);
  if ('code' in routed) {
    const status = errorCodes[routed.code].status;
    observer.answered(status, routed.service);
    return void socket.end(errorResponse(status, STATUS_CODES[status] ?? 'Error', routed.code, routed.message));
  }
  const { route, service, action } = routed;
  const resolved = target as ResolvedTarget; // routeOf refused every other case
  if (connect) {
    // A TCP service (its ports declared tcp): the stream goes to its TCP inbound, as through a fixed TCP listener.
    const alpn = connectTcpAlpn(deps.routing.catalogService(route.namespace, route.service), authorityPort(resolved.host));
    if (alpn) return connectTcp(deps, socket, head, tunnels, route, alpn, () => observer.handedToTcp(service));
  }
  const upstreamHead = connect
    ? `CONNECT ${resolved.host} HTTP/1.1\r\nhost: ${resolved.host}\r\n\r\n`
    : requestHead(req.method ?? 'GET', resolved.path, req.rawHeaders, headChanges(resolved.host, action?.headers));
  // A tunnel holds a connection for its life: it counts toward the backend's CircuitBreaker maxConnections.
  const breaker = withPolicies ? deps.routing.resilience.of(route.name)?.breaker : undefined;
  const tried = new Set<string>();
  let endpoint = deps.routing.pick(route);
  let lastError = 'no eligible endpoint';
  let lastCluster: string | undefined;
  for (let attempts = 1; endpoint && attempts <= maxAttempts; attempts += 1) {
    tried.add(endpoint.address);
    lastCluster = endpoint.cluster;
    observer.tried(endpoint);
    const upstream = route.upstreams.get(endpoint.address);
    if (!upstream) break;
    let release: () => void;
    try {
      release = deps.upstreams.admitTunnel(upstream, breaker);
    } catch (err) {
      // Refused before connecting: no verdict on the endpoint, and no other endpoint tried (it
      // would only spread the overload), as for a request.
      publishPolicyAction(deps.routing, service, 'circuit_open', breaker?.policy);
      observer.answered(503, service, endpoint.cluster);
      return void socket.end(errorResponse(503, 'Service Unavailable', 'ISTHMUS_ERR_DATAPLANE_CIRCUIT_OPEN', `${service}: ${(err as Error).message}`));
    }
    try {
      const tls = await deps.upstreams.connect(upstream, deps.timeouts.connectMs);
      tls.once('close', release);
      if (socket.destroyed) return void tls.destroy();
      deps.routing.record(endpoint.address, { ok: true, kind: 'ok' }, { service, cluster: endpoint.cluster });
      tls.write(upstreamHead);
      if (head.length > 0) tls.write(head);
      const exchange = new TunnelExchange(req);
      // Recorded with the destination's answer, read as it passes (before the splice's listener).
      const cluster = endpoint.cluster;
      whenTunnelAnswered(tls, connect ? 200 : 101, (status) => observer.answered(status, service, cluster));
      // The tunnel's bytes, counted while it is open too (core/byte-meter.ts): the app's (a), the destination's (b).
      meteredSplice(socket, tls, {
        idleMs: deps.timeouts.tunnelIdleMs, open: tunnels, early: head.length, onEnd: exchange.ended,
        report: (sent, received) => {
          if (tunnelBytes.hasSubscribers) tunnelBytes.publish({ origin: deps.routing, service, cluster, sentBytes: sent, receivedBytes: received });
        },
      });
      return;
    } catch (err) {
      release();
      lastError = `${endpoint.address}: ${(err as Error).message}`;
      deps.routing.record(endpoint.address, { ok: false, kind: 'connect-error' }, { service, cluster: endpoint.cluster });
      endpoint = deps.routing.retries(route, endpoint, tried)[0];
    }
  }
  observer.answered(tried.size > 0 ? 'connect_error' : 503, service, lastCluster);
  const message = `${service}: no endpoint could be reached after ${tried.size} attempt(s); last: ${lastError}`;
  socket.end(errorResponse(503, 'Service Unavailable', 'ISTHMUS_ERR_DATAPLANE_UPSTREAM_UNREACHABLE', message));
}

/**
 * CONNECT to a TCP service: dialled as a fixed TCP listener dials (tcp-listener.ts: endpoints
 * tried in locality order, ALPN isthmus-tcp, counted in isthmus_tcp_* and the traffic reports);
 * the app gets `200 Connection Established` once the destination's TCP inbound took the stream,
 * or a 503 naming the error when no endpoint did. Bytes the app sent after its CONNECT head go
 * first.
 */
function connectTcp(deps: OutboundDeps, socket: Duplex, head: Buffer, tunnels: OpenSockets, route: Route, alpn: string[], handed: () => void): void {
  handed();
  socket.pause();
  // Held with the tunnels from now: the outbound closing while the stream is still being dialled ends it too.
  tunnels.track(socket);
  dialTcpService({ routing: deps.routing, upstreams: deps.upstreams, logger: deps.logger, idleTimeoutMs: deps.timeouts.tunnelIdleMs, sockets: tunnels }, {
    client: socket, route, alpn, early: head.length > 0 ? head : undefined,
    connected: () => socket.write('HTTP/1.1 200 Connection Established\r\n\r\n'),
    failed: (code, message) => socket.end(errorResponse(503, 'Service Unavailable', code, message)),
  });
}

/** The port of a CONNECT authority (`redis.demo.mesh:6379`), if it has one. */
function authorityPort(authority: string): number | undefined {
  const match = /:(\d+)$/.exec(authority);
  return match ? Number(match[1]) : undefined;
}

/** The upgrade head's changes: the mesh Host, no trace header, and a routing rule's header modifiers. */
function headChanges(host: string, rule: HeaderChanges | undefined): HeadChanges {
  if (!rule) return { drop: tunnelDrops, set: { host } };
  return {
    drop: new Set([...tunnelDrops, ...rule.remove.map((n) => n.toLowerCase())]),
    set: { ...Object.fromEntries(rule.set), host },
    add: rule.add,
  };
}
const tunnelDrops: ReadonlySet<string> = new Set(['host', traceHeader]);
const tunnelBytes = channels.tunnelOutboundBytes;
