import { connect as tlsConnect, type ConnectionOptions, type SecureContext, type TLSSocket } from 'node:tls';
import { IsthmusError } from '../core/errors.js';
import { breakerVerdict, tunnelVerdict, type BreakerLimits } from '../model/circuit-breaker.js';
import { defaultTimeouts } from './timeouts.js';
import { checkDestination } from './peer-identity.js';
import { H2ClientConnections } from '../h2/client-connections.js';
import type { H2Connection } from '../h2/connection.js';
import { UpstreamPool } from './upstream-pool.js';

export interface UpstreamKey {
  /** host:port of a local sidecar's inbound listener or of a remote gateway. */
  address: string;
  /** Names the service to a gateway; for direct connections, the same name of our own cluster. */
  sni: string;
  /** SPIFFE IDs the catalog allows to serve the service. */
  identities: readonly string[];
  /** address|sni|identities, computed with the route, so a request only looks a pool up. */
  id: string;
}

export interface UpstreamOptions {
  /** Keep-alive connections per pool. */
  connections?: number;
  /** Handshakes in flight per pool (upstream-pool.ts says why this is bounded). */
  maxConnecting?: number;
  connectTimeoutMs?: number;
  /** An idle pooled connection is closed after this; long enough to carry a pool across bursts. */
  idleMs?: number;
}

const noop = (): void => undefined;

/** The address part of an UpstreamKey id (`address|sni|identities`). */
const addressOf = (id: string): string => id.slice(0, id.indexOf('|'));

/** The code of the error a request in flight gets when its connection is closed for health (retry-policy.ts: a reset). */
export const upstreamUnhealthyCode = 'ISTHMUS_UPSTREAM_UNHEALTHY';

/**
 * Keep-alive mTLS connection pools, one per (address, SNI), for HTTP/1.1 requests; and one kept
 * HTTP/2 session per (address, SNI) for requests that arrived as HTTP/2 (gRPC above all). A new handshake costs ~3 ms of CPU
 * in Node, so it must never happen per request. Pools are rebuilt when the workload certificate
 * or the trust bundle changes; old pools finish their requests first.
 */
export class Upstreams {
  private readonly pools = new Map<string, UpstreamPool>();
  /** HTTP/2 streams open per key, counted only for services with a CircuitBreaker's maxRequests. */
  private readonly streams = new Map<string, number>();
  /** WebSocket and CONNECT tunnels open per key, counted only for services with a CircuitBreaker's maxConnections. */
  private readonly tunnels = new Map<string, number>();
  /** One kept HTTP/2 connection per (address, SNI), on Isthmus's own HTTP/2 (src/h2/), for requests that arrived as HTTP/2. */
  private h2Connections: H2ClientConnections;
  private readonly connections: number;
  private readonly maxConnecting: number;
  private readonly connectTimeoutMs: number;
  private readonly idleMs: number;

  constructor(private contextOf: () => SecureContext, options: UpstreamOptions = {}) {
    this.connections = options.connections ?? 32;
    this.maxConnecting = options.maxConnecting ?? 2;
    this.connectTimeoutMs = options.connectTimeoutMs ?? defaultTimeouts.connectMs;
    this.idleMs = options.idleMs ?? 60_000;
    this.h2Connections = new H2ClientConnections(this.idleMs);
  }

  /** The credentials new connections use now (renewals apply at once); `isthmus trace` dials with them too. */
  secureContext(): SecureContext {
    return this.contextOf();
  }

  /** TLS options for a connection to `key`: our certificate, the mesh SNI, the catalog's identities. */
  tlsOptions(key: UpstreamKey): ConnectionOptions & { host: string; port: number } {
    const split = key.address.lastIndexOf(':');
    return {
      host: key.address.slice(0, split),
      port: Number(key.address.slice(split + 1)),
      servername: key.sni,
      secureContext: this.contextOf(),
      checkServerIdentity: checkDestination(key.identities),
    };
  }

  /** The pool for `key`, with a CircuitBreaker's limits when the service has one (cleared when it has none). */
  get(key: UpstreamKey, limits?: Readonly<BreakerLimits>): UpstreamPool {
    const { id } = key;
    let pool = this.pools.get(id);
    if (!pool) {
      pool = new UpstreamPool(`https://${key.address}`, {
        connections: this.connections,
        maxConnecting: this.maxConnecting,
        idleMs: this.idleMs,
        connect: { ...this.tlsOptions(key), noDelay: true, timeout: this.connectTimeoutMs },
      });
      this.pools.set(id, pool);
      pool.tunnels = this.tunnels.get(id) ?? 0;
    }
    pool.setLimits(limits);
    return pool;
  }

  /**
   * The kept HTTP/2 connection to `key` on Isthmus's own HTTP/2, with the same TLS as the pools
   * (our certificate, the mesh SNI, the catalog's identities checked in the handshake) and ALPN
   * `h2`. Rejects with the connection's own error (its code tells retry-policy.ts it was a
   * connect failure) or after the connect timeout.
   */
  h2Connection(key: UpstreamKey): Promise<H2Connection> {
    return this.h2Connections.get(key.id, () => {
      const socket = tlsConnect({ ...this.tlsOptions(key), ALPNProtocols: ['h2'] });
      socket.setNoDelay(true);
      return socket;
    }, 'secureConnect', this.connectTimeoutMs);
  }

  /**
   * A CircuitBreaker's maxRequests for HTTP/2 streams to `key` (streams are not queued by the
   * sidecar, so maxPendingRequests does not apply): throws ISTHMUS_ERR_DATAPLANE_CIRCUIT_OPEN
   * when that many are open, else counts one and returns the function that ends it (idempotent).
   */
  admitStream(key: UpstreamKey, limits: Readonly<BreakerLimits> | undefined): () => void {
    if (limits?.maxRequests === undefined) return noop;
    const open = this.streams.get(key.id) ?? 0;
    const verdict = breakerVerdict({ inFlight: open, queued: 0, canSendNow: true }, limits);
    if (verdict.open) throw new IsthmusError('ISTHMUS_ERR_DATAPLANE_CIRCUIT_OPEN', `circuit breaker open at ${key.address}: ${verdict.value} streams open already (${verdict.limit} ${verdict.value} of ${limits.policy}); refused without sending`);
    this.streams.set(key.id, open + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.streams.get(key.id) ?? 1) - 1;
      if (left <= 0) this.streams.delete(key.id);
      else this.streams.set(key.id, left);
    };
  }

  /**
   * A CircuitBreaker's maxConnections for a tunnel to `key`: a tunnel holds a connection for
   * its life, so it counts with the pool's busy connections (model/circuit-breaker.ts). Throws
   * ISTHMUS_ERR_DATAPLANE_CIRCUIT_OPEN at the limit, else counts one and returns the function
   * that ends it (idempotent; call it when the tunnel closes or fails to open).
   */
  admitTunnel(key: UpstreamKey, limits: Readonly<BreakerLimits> | undefined): () => void {
    if (limits?.maxConnections === undefined) return noop;
    const open = this.tunnels.get(key.id) ?? 0;
    const pool = this.pools.get(key.id);
    const verdict = tunnelVerdict(pool?.busy ?? 0, open, limits);
    if (verdict.open) throw new IsthmusError('ISTHMUS_ERR_DATAPLANE_CIRCUIT_OPEN', `circuit breaker open at ${key.address}: ${verdict.value} connections held already, tunnels and requests together (${verdict.limit} ${verdict.value} of ${limits.policy}); tunnel refused without connecting`);
    this.countTunnels(key.id, open + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.countTunnels(key.id, (this.tunnels.get(key.id) ?? 1) - 1);
    };
  }

  private countTunnels(id: string, n: number): void {
    if (n <= 0) this.tunnels.delete(id);
    else this.tunnels.set(id, n);
    const pool = this.pools.get(id);
    if (pool) pool.tunnels = Math.max(0, n);
  }

  /**
   * One unpooled mTLS connection, for a tunnel (WebSocket, CONNECT, TCP): resolves once the
   * handshake and the destination's identity check passed, rejects on any failure before that.
   */
  connect(key: UpstreamKey, timeoutMs = this.connectTimeoutMs): Promise<TLSSocket> {
    return new Promise((resolve, reject) => {
      // allowHalfOpen: a tunnel passes one side's FIN on while the other direction keeps flowing.
      const socket = tlsConnect({ ...this.tlsOptions(key), ALPNProtocols: ['http/1.1'], allowHalfOpen: true } as ConnectionOptions);
      socket.setNoDelay(true);
      const timer = setTimeout(() => {
        const err = Object.assign(new Error(`no TLS connection to ${key.address} within ${timeoutMs} ms`), { code: 'UND_ERR_CONNECT_TIMEOUT' });
        socket.destroy(err);
      }, timeoutMs);
      socket.once('secureConnect', () => {
        clearTimeout(timer);
        socket.removeListener('error', reject);
        resolve(socket);
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
  }

  /**
   * `address` was found unhealthy (its active check failed, or outlier detection ejected it):
   * close every pooled connection and HTTP/2 session to it at once, as Envoy's
   * close_connections_on_host_health_failure does. A request in flight on them fails now as a
   * reset, which the attempt layer retries elsewhere when it is idempotent, instead of waiting
   * timeouts.responseHeaders for an answer from a peer that hangs. New requests open new pools.
   */
  closeTo(address: string, why: string): void {
    const err = () => Object.assign(new Error(`connection to ${address} closed: ${why}`), { code: upstreamUnhealthyCode });
    const at = (id: string) => addressOf(id) === address;
    for (const pool of this.takePools(at)) void pool.destroy(err()).catch(() => undefined);
    this.h2Connections.destroyWhere(at);
  }

  /**
   * The catalog changed and every address not in `routable` left it (an instance deregistered,
   * a gateway withdrawn while it drains): their pools and HTTP/2 sessions close gracefully. An
   * idle connection closes now, from this side, so no request can meet its close on the way; a
   * busy one closes after its answer. Without this, pooled connections to a gone address stayed
   * open until `timeouts.connectionIdle`, holding memory here and a connection at a draining
   * gateway. Returns how many pools were retired.
   */
  retireExcept(routable: ReadonlySet<string>): number {
    const gone = (id: string) => !routable.has(addressOf(id));
    const retired = this.takePools(gone);
    for (const pool of retired) void pool.close().catch(() => undefined);
    this.h2Connections.closeWhere(gone);
    return retired.length;
  }

  /** Removes the pools whose key `matches` (new requests open new ones) and returns them, for the caller to end. */
  private takePools(matches: (id: string) => boolean): UpstreamPool[] {
    const taken: UpstreamPool[] = [];
    for (const [id, pool] of this.pools) {
      if (!matches(id)) continue;
      this.pools.delete(id);
      taken.push(pool);
    }
    return taken;
  }

  /** New credentials: new pools for new connections; in-flight requests complete on the old ones. */
  rotate(secureContext: () => SecureContext): void {
    this.contextOf = secureContext;
    const old = [...this.pools.values()];
    this.pools.clear();
    this.h2Connections.closeAll(true);
    this.h2Connections = new H2ClientConnections(this.idleMs);
    for (const pool of old) void pool.close().catch(() => undefined);
  }

  async close(): Promise<void> {
    this.h2Connections.closeAll(false);
    await Promise.all([...this.pools.values()].map((p) => p.destroy()));
    this.pools.clear();
  }
}
