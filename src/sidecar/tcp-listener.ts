import { createServer, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import type { Server as HttpServer } from 'node:http';
import type { Duplex } from 'node:stream';
import { channels, type TcpOutboundMessage } from '../core/channels.js';
import type { Logger } from '../core/log.js';
import type { PickedEndpoint } from '../model/balancer.js';
import { checkDestination } from './peer-identity.js';
import type { Route, RoutingTable } from './routing.js';
import { OpenSockets } from '../core/open-sockets.js';
import { meteredSplice } from '../core/byte-meter.js';
import { defaultTimeouts } from './timeouts.js';
import { isTcpAlpn, tcpAlpn, tcpPortAlpn, type AppProtocol } from './tcp-protocol.js';
import type { Upstreams } from './upstreams.js';

/** As the HTTP path: at most 3 endpoints per connection, each given 2 s to connect and handshake. */
const maxAttempts = 3;
const connectTimeoutMs = 2_000;
const tcpChannel = channels.tcpOutbound;
const closedChannel = channels.tcpOutboundClosed;
const bytesChannel = channels.tcpOutboundBytes;

export interface TcpListenerDeps {
  routing: RoutingTable;
  upstreams: Upstreams;
  logger: Logger;
  idleTimeoutMs?: number | undefined;
}

/** `port`: the one port of a multi-port service this listener is for (offered as ALPN `isthmus-tcp/<port>`). */
export interface FixedTarget { service: string; namespace: string; port?: number | undefined }

/**
 * A fixed local listener for one service that carries raw TCP: each accepted connection gets
 * an endpoint the way an HTTP request does (locality priority, then retries on the next
 * endpoints, outlier detection fed with the result), an mTLS connection to it with the mesh
 * SNI and ALPN `isthmus-tcp` (to a local sidecar's TCP inbound, or through a remote gateway,
 * which passes it through untouched), and then the bytes, both ways, with half-close.
 *
 * `protocolOf` is asked once per connection; `http` hands the connection to `http` (the
 * fixed-listener HTTP server, which never listens itself), so a listener declared without a
 * protocol follows what the catalog says about the service at the time of each connection.
 */
export class TcpListener {
  readonly server: Server;
  private readonly sockets = new OpenSockets();
  private readonly log: Logger;
  private readonly alpn: string[];

  constructor(
    private readonly deps: TcpListenerDeps,
    private readonly target: FixedTarget,
    private readonly protocolOf: () => AppProtocol,
    private readonly http?: HttpServer,
  ) {
    this.log = deps.logger;
    this.alpn = target.port === undefined ? [tcpAlpn] : [tcpPortAlpn(target.port), tcpAlpn];
    this.server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => this.accept(socket));
  }

  async close(): Promise<void> {
    this.sockets.destroyAll();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    if (this.http) {
      this.http.closeAllConnections();
      await new Promise<void>((resolve) => this.http?.close(() => resolve()));
    }
  }

  private accept(client: Socket): void {
    this.sockets.track(client);
    if (this.protocolOf() === 'http' && this.http) {
      // An HTTP server accepts sockets it did not accept itself: the same path as its own.
      this.http.emit('connection', client);
      return;
    }
    // Nothing is read until an upstream is ready; the kernel and the stream buffer the rest.
    client.pause();
    client.on('error', () => client.destroy());
    const { namespace, service } = this.target;
    const route = this.deps.routing.route(namespace, service);
    if (!route || route.load.status === 'no-healthy-endpoints') {
      this.log.warn({ code: 'ISTHMUS_ERR_TCP_NO_ENDPOINT', service: `${namespace}/${service}` }, route
        ? `${namespace}/${service} has no healthy endpoint in any cluster; connection closed (isthmus explain ${service} -n ${namespace})`
        : `${namespace}/${service} is not in the mesh: no cluster runs or exports it; connection closed`);
      this.publish(`${namespace}/${service}`, undefined, 'no_endpoint', 'ISTHMUS_ERR_TCP_NO_ENDPOINT');
      client.destroy();
      return;
    }
    dialTcpService({ ...this.deps, sockets: this.sockets }, { client, route, alpn: this.alpn });
  }

  private publish(service: string, cluster: string | undefined, result: TcpOutboundMessage['result'], code?: TcpOutboundMessage['code']): void {
    publishTcp(this.deps.routing, service, cluster, result, code);
  }
}

/** For src/telemetry/: the RoutingTable is the origin, as for HTTP requests (one sidecar's metrics count its own). */
function publishTcp(origin: RoutingTable, service: string, cluster: string | undefined, result: TcpOutboundMessage['result'], code?: TcpOutboundMessage['code']): void {
  if (tcpChannel.hasSubscribers) tcpChannel.publish({ origin, service, cluster, result, ...(code ? { code } : {}) });
}

/** One app's byte stream to a TCP service: a fixed TCP listener's connection, or a CONNECT tunnel on the proxy port. */
export interface TcpStream {
  client: Duplex;
  route: Route;
  /** Offered to the destination: `isthmus-tcp`, after `isthmus-tcp/<port>` when one port is meant. */
  alpn: readonly string[];
  /** Bytes the app sent before the stream was dialled (after a CONNECT's head): the destination gets them first. */
  early?: Buffer | undefined;
  /** The destination took the stream; called before any byte is spliced (a CONNECT's 200 goes here). */
  connected?: () => void;
  /** No endpoint took it: what the app is told. Default: its connection is closed. */
  failed?: (code: 'ISTHMUS_ERR_TCP_NO_ENDPOINT' | 'ISTHMUS_ERR_TCP_UPSTREAM_UNREACHABLE', message: string) => void;
}

/**
 * Dials a TCP service for one stream, the way an HTTP request picks (locality priority, then
 * up to 3 endpoints, each given 2 s to connect and finish its handshake, outlier detection fed
 * with each result): mTLS with the mesh SNI and the TCP ALPN, to a local sidecar's TCP inbound
 * or through a remote gateway; then splices the bytes both ways with half-close, counted while
 * the connection is open (isthmus_tcp_*, the traffic reports).
 */
export function dialTcpService(deps: TcpListenerDeps & { sockets: OpenSockets }, stream: TcpStream): void {
  attempt(deps, stream, deps.routing.pick(stream.route), new Set(), 1, 'no eligible endpoint');
}

function attempt(deps: TcpListenerDeps & { sockets: OpenSockets }, stream: TcpStream, endpoint: PickedEndpoint | undefined, tried: Set<string>, n: number, lastError: string, lastCluster?: string): void {
  const { client, route } = stream;
  const service = route.name;
  if (client.destroyed) return;
  const key = endpoint && n <= maxAttempts ? route.upstreams.get(endpoint.address) : undefined;
  if (!endpoint || !key) {
    const code = tried.size === 0 ? 'ISTHMUS_ERR_TCP_NO_ENDPOINT' : 'ISTHMUS_ERR_TCP_UPSTREAM_UNREACHABLE';
    const message = `no endpoint of ${service} could be reached after ${tried.size} attempt(s); last: ${lastError}`;
    deps.logger.warn({ code, service, attempts: tried.size, last: lastError }, `${message}; connection closed`);
    publishTcp(deps.routing, service, lastCluster, tried.size === 0 ? 'no_endpoint' : 'unreachable', code);
    if (stream.failed) stream.failed(code, message);
    else client.destroy();
    return;
  }
  tried.add(endpoint.address);
  const split = key.address.lastIndexOf(':');
  const upstream: TLSSocket = tlsConnect({
    // Node passes allowHalfOpen on to the TLSSocket; @types/node does not list it.
    ...({ allowHalfOpen: true } as object),
    host: key.address.slice(0, split),
    port: Number(key.address.slice(split + 1)),
    servername: key.sni,
    secureContext: deps.upstreams.secureContext(),
    checkServerIdentity: checkDestination(key.identities),
    ALPNProtocols: [...stream.alpn],
  });
  upstream.setNoDelay(true);
  deps.sockets.track(upstream);
  const abandon = () => upstream.destroy();
  client.once('close', abandon);
  const timer = setTimeout(() => upstream.destroy(new Error(`no TLS session within ${connectTimeoutMs} ms`)), connectTimeoutMs);
  const failed = (err: Error) => {
    clearTimeout(timer);
    client.off('close', abandon);
    upstream.on('error', () => undefined); // a late second error must not go unhandled
    upstream.destroy();
    if (client.destroyed) return;
    deps.routing.record(endpoint.address, { ok: false, kind: 'connect-error' }, { service, cluster: endpoint.cluster });
    const next = deps.routing.retries(route, endpoint, tried)[0];
    attempt(deps, stream, next, tried, n + 1, `${endpoint.address}: ${err.message}`, endpoint.cluster);
  };
  upstream.once('error', failed);
  upstream.once('secureConnect', () => {
    // Only a TCP inbound selects this ALPN: anything else would get the app's bytes as HTTP.
    if (!isTcpAlpn(upstream.alpnProtocol)) {
      failed(new Error(`the destination did not select ALPN ${tcpAlpn} (got ${upstream.alpnProtocol || 'none'}): its sidecar does not serve ${service} as TCP (inbound.appProtocol: tcp)`));
      return;
    }
    clearTimeout(timer);
    client.off('close', abandon);
    upstream.off('error', failed);
    deps.routing.record(endpoint.address, { ok: true, kind: 'ok' }, { service, cluster: endpoint.cluster });
    deps.logger.debug({ service, endpoint: endpoint.address, cluster: endpoint.cluster, priority: endpoint.priority }, 'TCP connection spliced');
    publishTcp(deps.routing, service, endpoint.cluster, 'connected');
    stream.connected?.();
    const early = stream.early?.length ?? 0;
    if (early > 0) upstream.write(stream.early as Buffer);
    const opened = performance.now();
    // The bytes counted while the connection is open too (core/byte-meter.ts), not only at its end.
    const origin = deps.routing;
    meteredSplice(client, upstream, {
      idleMs: deps.idleTimeoutMs ?? defaultTimeouts.tunnelIdleMs, early,
      report: (sent, received) => {
        if (bytesChannel.hasSubscribers) bytesChannel.publish({ origin, service, cluster: endpoint.cluster, sentBytes: sent, receivedBytes: received });
      },
      onEnd: (end, bytes) => {
        if (!closedChannel.hasSubscribers) return;
        closedChannel.publish({
          origin, service, cluster: endpoint.cluster, end,
          sentBytes: bytes.fromA, receivedBytes: bytes.fromB, seconds: (performance.now() - opened) / 1000,
        });
      },
    });
    client.resume();
  });
}
