import { connect as netConnect } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { H2ClientConnections } from '../h2/client-connections.js';
import type { H2Connection } from '../h2/connection.js';
import { hostPort } from './listen.js';
import { UpstreamPool } from './upstream-pool.js';
import { isTcpAlpn, tcpAlpn, tcpPortAlpn } from './tcp-protocol.js';

/*
 * A sidecar in front of an app with several ports (a Kubernetes Service with http 8080, grpc
 * 9090 and redis 6379) keeps one inbound listener, and the caller names the port:
 *
 * - HTTP/1.1 and HTTP/2: the port of the request's authority (`Host`, `:authority`), as the app
 *   wrote it (`http://cart.shop.svc.clusterset.local:9090/`). Looked up only when the sidecar
 *   has more than one app port; a request that names no listed port goes to `inbound.app`.
 * - TCP: the caller's listener offers ALPN `isthmus-tcp/<port>` before `isthmus-tcp`; the
 *   inbound selects the one it serves (a TLS ALPN choice, once per connection). A caller that
 *   names no port (`isthmus-tcp` alone) gets the app's default TCP port.
 *
 * Nothing here reads bytes: gateways pass the TLS through unchanged, so the choice is made by
 * the two sidecars alone.
 */

/** What the app speaks on one of its ports. */
export type PortProtocol = 'http' | 'h2c' | 'tcp';

export interface AppPortSpec { port: number; address: string; protocol: PortProtocol }

/** The port of an authority (`host:port`, `[v6]:port`), or undefined when it names none. Pure. */
export function authorityPort(authority: string | undefined): number | undefined {
  if (authority === undefined) return undefined;
  const colon = authority.lastIndexOf(':');
  if (colon < 0 || authority.indexOf(']', colon) >= 0) return undefined;
  const port = Number(authority.slice(colon + 1));
  return Number.isInteger(port) && port > 0 && port < 65536 ? port : undefined;
}

/** One HTTP port of the app: its keep-alive pool, and its kept h2c connection when it speaks HTTP/2. */
export class InboundApp {
  readonly pool: UpstreamPool;
  private readonly connections = new H2ClientConnections(30_000);

  constructor(readonly address: string, readonly protocol: 'http' | 'h2c', private readonly connectMs: number) {
    // The same pool as the sidecar's upstreams (Node's HTTP/1.1 parser, one request per
    // connection at a time), over plain TCP: an app closes idle connections on its own keep-alive
    // timeout (Node's default is 5 s), which the pool reads from the answers and closes sooner.
    this.pool = new UpstreamPool(`http://${address}`, { connections: 64, maxConnecting: 16, idleMs: 30_000, connect: { timeout: connectMs } });
  }

  /** The kept h2c connection to this port on Isthmus's own HTTP/2 (inbound-h2.ts), opened when there is none. */
  h2Connection(): Promise<H2Connection> {
    return this.connections.get('app', () => {
      const [host, port] = hostPort(this.address);
      return netConnect({ host, port, noDelay: true });
    }, 'connect', this.connectMs);
  }

  async close(): Promise<void> {
    this.connections.closeAll(false);
    await this.pool.close();
  }
}

/** The app's HTTP ports by the port callers name, besides the default one. */
export class InboundApps {
  private readonly byPort: ReadonlyMap<number, InboundApp> | undefined;

  constructor(readonly fallback: InboundApp, ports: readonly AppPortSpec[], connectMs: number) {
    const http = ports.filter((p) => p.protocol !== 'tcp');
    this.byPort = http.length === 0 ? undefined : new Map(http.map((p) => [p.port, p.address === fallback.address && p.protocol === fallback.protocol ? fallback : new InboundApp(p.address, p.protocol as 'http' | 'h2c', connectMs)]));
  }

  /** The app port a request is for, by its authority's port; a single-port app pays one field read. */
  for(authority: string | undefined): InboundApp {
    if (this.byPort === undefined) return this.fallback;
    const port = authorityPort(authority);
    return (port === undefined ? undefined : this.byPort.get(port)) ?? this.fallback;
  }

  async close(): Promise<void> {
    const all = new Set([this.fallback, ...this.byPort?.values() ?? []]);
    await Promise.all([...all].map((app) => app.close()));
  }
}

/** Whatever takes a TCP caller once its TLS session is up (tcp-inbound.ts). */
export interface SecureAcceptor { acceptSecure(socket: TLSSocket): void }

/**
 * The app's TCP ports on an inbound that also serves HTTP: which ALPN to select for a caller's
 * offer, and whom to hand the connection to once TLS is up.
 */
export class TcpPorts {
  constructor(private readonly byPort: ReadonlyMap<number, SecureAcceptor>, private readonly fallback: SecureAcceptor | undefined) {}

  /** The TCP ALPN to select from a caller's offer, or undefined when it offers none this inbound serves. */
  select(offered: readonly string[]): string | undefined {
    for (const name of offered) {
      if (!isTcpAlpn(name) || name === tcpAlpn) continue;
      if (this.byPort.has(Number(name.slice(tcpAlpn.length + 1)))) return name;
    }
    return this.fallback && offered.includes(tcpAlpn) ? tcpAlpn : undefined;
  }

  accept(socket: TLSSocket): void {
    const name = socket.alpnProtocol || '';
    const target = name === tcpAlpn ? this.fallback : this.byPort.get(Number(name.slice(tcpAlpn.length + 1)));
    if (target) target.acceptSecure(socket);
    else socket.destroy();
  }

  /** The ALPN names this inbound serves for TCP, for docs and logs. */
  names(): string[] {
    return [...[...this.byPort.keys()].map(tcpPortAlpn), ...this.fallback ? [tcpAlpn] : []];
  }
}

/**
 * The ALPN choice of an inbound in front of several app ports: a TCP ALPN it serves when
 * offered, else (when the app has HTTP ports) `h2`, else `http/1.1`. Undefined ends the
 * handshake with `no_application_protocol`; a client that offers no ALPN at all (a probe,
 * openssl) is not asked and gets HTTP/1.1, as on a single-port inbound.
 */
export function selectInboundAlpn(tcp: TcpPorts, offered: readonly string[], servesHttp: boolean): string | undefined {
  const chosen = tcp.select(offered);
  if (chosen !== undefined || !servesHttp) return chosen;
  return offered.includes('h2') ? 'h2' : offered.includes('http/1.1') ? 'http/1.1' : undefined;
}

/**
 * The app's ports split by who serves them: the HTTP inbound (its default, and the rest by
 * port) and TCP inbounds (the default TCP one, for callers naming no port, and the rest by
 * port). `defaults` is `inbound.app`; each kind's default is `inbound.app` when it is of that
 * kind, else its first port of that kind. Pure.
 */
export function splitAppPorts(defaults: { address: string; protocol: PortProtocol }, ports: readonly AppPortSpec[]): {
  http: { fallback: { address: string; protocol: 'http' | 'h2c' }; ports: AppPortSpec[] } | undefined;
  tcp: { fallback: AppPortSpec | undefined; ports: AppPortSpec[] } | undefined;
} {
  const http = ports.filter((p) => p.protocol !== 'tcp');
  const tcp = ports.filter((p) => p.protocol === 'tcp');
  const httpFallback = defaults.protocol !== 'tcp' ? defaults : http[0];
  return {
    http: httpFallback ? { fallback: { address: httpFallback.address, protocol: httpFallback.protocol as 'http' | 'h2c' }, ports: http } : undefined,
    tcp: tcp.length > 0 || defaults.protocol === 'tcp'
      ? { fallback: defaults.protocol === 'tcp' ? { port: 0, ...defaults } : tcp[0], ports: tcp }
      : undefined,
  };
}
