import { connect, createServer, type Server, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { createSecureContext, TLSSocket, type SecureContext } from 'node:tls';
import { nativeRelay, NativeRelay, type RelayKind } from '../core/native-relay.js';
import { ByteMeter, meteredSplice } from '../core/byte-meter.js';
import { OpenSockets } from '../core/open-sockets.js';
import { OwnReads, type SplicedBytes, type SpliceEnd } from '../core/splice.js';
import { channels } from '../core/channels.js';
import type { Logger } from '../core/log.js';
import { activeTracer } from '../core/tracing.js';
import { parseClientHello } from './client-hello.js';
import { ConnectionLog, type ConnectionEntry } from './connection-log.js';
import type { GatewayConfig } from './config.js';
import type { GatewayCertificate } from './gateway-certificate.js';
import { routeFor, type GatewayRefusal, type GatewayRoutes } from './routes.js';

/** Published for src/telemetry/ to count (src/core/channels.ts); the core never imports a metrics library. */
export const refusedChannel = channels.gatewayRefused;
export const routedChannel = channels.gatewayRouted;
export const closedChannel = channels.gatewayClosed;
const bytesChannel = channels.gatewayBytes;

export interface GatewayStats {
  accepted: number;
  routed: number;
  active: number;
  refused: Partial<Record<GatewayRefusal, number>>;
}

// TLS alert records (RFC 8446 §6): fatal unrecognized_name (112) tells a real TLS client why,
// instead of a bare reset. Sent only after a well-formed ClientHello.
const alertUnrecognizedName = Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 112]);
const alertInternalError = Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 80]);

/**
 * The east-west gateway's data path: read the ClientHello without terminating TLS, route by
 * SNI to a healthy local endpoint of an exported service (or, for this cluster's probe SNI, to
 * its federation API), then splice the two sockets. The
 * gateway holds no key for any service: TLS is end to end, caller to destination.
 */
export class Gateway {
  readonly stats: GatewayStats = { accepted: 0, routed: 0, active: 0, refused: {} };
  /** The last 256 routed connections, for `isthmus trace` (admin /debug/connections). */
  readonly connections = new ConnectionLog(256);
  private routes: GatewayRoutes | undefined;
  private readonly server: Server;
  private readonly sockets = new OpenSockets();
  private next = 0;
  /** host:port of this cluster's federation API, where probe SNIs are piped (still TLS end to end). */
  private readonly probeTarget: string;
  /** The gateway's own certificate, for the health checks it answers itself (one context, so its session tickets resume). */
  private healthContext: SecureContext | undefined;
  /** The native module's relay thread (core/native-relay.ts); undefined: bytes are copied in JavaScript (core/splice.ts). */
  private readonly relay: NativeRelay | undefined;

  constructor(private readonly config: GatewayConfig, private readonly log: Logger) {
    if (config.relay !== 'node') {
      const relay = nativeRelay();
      if (relay instanceof NativeRelay) this.relay = relay;
      else log.warn({ reason: relay.unavailable }, 'the native relay is unavailable: routed connections are relayed in JavaScript, at a higher CPU cost per request');
    }
    const federation = new URL(config.federationUrl);
    this.probeTarget = `${federation.hostname}:${federation.port || '443'}`;
    // allowHalfOpen: one side's FIN is passed on while the other direction keeps flowing (TCP services, CONNECT).
    this.server = createServer({ noDelay: true, pauseOnConnect: false, allowHalfOpen: true }, (socket) => this.accept(socket));
    this.server.on('error', (err) => this.log.error({ err: err.message }, 'gateway listener error'));
  }

  /**
   * Sockets open now, callers' and upstreams' together (a connection that lingers shows here); a
   * pair the native module relays counts once.
   */
  get openConnections(): number {
    return this.sockets.size;
  }

  /** What copies routed connections' bytes here: the native module's thread, or JavaScript. */
  get relayKind(): RelayKind {
    return this.relay ? 'native' : 'node';
  }

  get ready(): boolean {
    return this.routes !== undefined;
  }

  /** The gateway's certificate, first or renewed: health checks complete their handshake with it. */
  setCertificate(certificate: GatewayCertificate): void {
    this.healthContext = createSecureContext({ cert: [certificate.certPem, ...certificate.chainPem].map((p) => p.trim()).join('\n'), key: certificate.keyPem });
  }

  setRoutes(routes: GatewayRoutes): void {
    this.routes = routes;
    this.log.info({ version: routes.version, services: routes.services.map((s) => `${s.namespace}/${s.name}`) }, 'routing table updated');
  }

  async listen(): Promise<{ host: string; port: number }> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.config.listen.port, this.config.listen.host, () => resolve());
    });
    const address = this.server.address();
    return { host: this.config.listen.host, port: typeof address === 'object' && address ? address.port : this.config.listen.port };
  }

  /**
   * Lets the connections the gateway carries end by themselves, for `ms` at most, while it keeps
   * accepting and routing: a caller that has not yet heard of the withdrawal is still served.
   * The gateway cannot see requests inside TLS, so it waits for the callers to close: sidecars
   * close their idle connections to an address that left the catalog at once, and busy ones
   * after their answer (sidecar/upstreams.ts retireExcept). Resolves with how many sockets were
   * still open at the end; close() then cuts them.
   */
  async drain(ms: number): Promise<number> {
    return await this.sockets.emptied(ms);
  }

  async close(): Promise<void> {
    this.sockets.destroyAll();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: Socket): void {
    this.stats.accepted += 1;
    this.sockets.track(client);
    client.setNoDelay(true);
    const acceptedAt = performance.now();
    let buffered: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => this.refuse(client, 'client-hello-timeout', `no complete ClientHello within ${this.config.clientHelloTimeoutMs} ms`), this.config.clientHelloTimeoutMs);
    // A peer that closes before its ClientHello is whole (a TCP health check, a port scan) is
    // gone, not refused: close at once, as before the socket was half-open.
    const onEnd = (): void => { client.destroy(); };
    client.once('end', onEnd);
    const onData = (chunk: Buffer): void => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      const hello = parseClientHello(buffered);
      if (hello.kind === 'incomplete') return;
      clearTimeout(timer);
      client.off('data', onData);
      client.off('end', onEnd);
      client.pause();
      const clientHelloMs = performance.now() - acceptedAt;
      if (hello.kind === 'invalid') {
        this.refuse(client, 'not-client-hello', `${hello.reason}: ${hello.detail}`);
        return;
      }
      if (!this.routes) {
        this.refuse(client, 'not-ready', 'no routing table from the federation service yet', alertInternalError);
        return;
      }
      const decision = routeFor(hello.serverName, this.routes);
      if (decision.kind === 'refuse') {
        this.refuse(client, decision.reason, decision.detail, alertUnrecognizedName);
        return;
      }
      if (decision.kind === 'health') this.answerHealth(client, buffered);
      else if (decision.kind === 'probe') this.splice(client, buffered, [this.probeTarget], 'probe', hello.serverName, clientHelloMs);
      else this.splice(client, buffered, decision.endpoints, `${decision.namespace}/${decision.service}`, hello.serverName, clientHelloMs);
    };
    client.on('data', onData);
    client.on('error', () => client.destroy());
    client.once('close', () => clearTimeout(timer));
  }

  /**
   * Tries the endpoints in turn (starting at a rotating offset) until one accepts. With tracing
   * on, one INTERNAL span covers the routed connection until it closes: a root span of its own
   * trace, since TLS is end to end and the gateway never sees the request's traceparent.
   */
  private splice(client: Socket, hello: Buffer, endpoints: string[], service: string, sni: string | undefined, clientHelloMs: number): void {
    const span = activeTracer()?.start({
      kind: 'internal', name: `gateway ${service}`,
      attributes: { 'isthmus.cluster': this.config.cluster, 'isthmus.destination_service': service, 'tls.server_name': sni, 'network.peer.address': client.remoteAddress },
    });
    // Handed to the native relay, the client's socket closes at once: the span ends with the pair.
    let relayed = false;
    if (span) client.once('close', () => { if (!relayed) span.end(); });
    const start = this.next++ % endpoints.length;
    const order = endpoints.map((_, i) => endpoints[(start + i) % endpoints.length] as string);
    const dialStarted = performance.now();
    const attempt = (index: number): void => {
      const address = order[index];
      if (address === undefined || client.destroyed) {
        span?.end({ error: 'connect-failed' });
        this.refuse(client, 'connect-failed', `no endpoint of ${service} accepted a connection`, alertInternalError);
        return;
      }
      const split = address.lastIndexOf(':');
      // Relayed in JavaScript, what the destination sends is read into a buffer of this
      // connection's own and written to the client from the read callback (core/splice.ts,
      // OwnReads): no allocation per read.
      const reads = this.relay ? undefined : new OwnReads();
      const options = { host: address.slice(0, split), port: Number(address.slice(split + 1)), noDelay: true, allowHalfOpen: true };
      const upstream = connect(reads ? { ...options, onread: reads.onread } : options);
      this.sockets.track(upstream);
      let connected = false;
      const timeout = setTimeout(() => upstream.destroy(new Error('connect timeout')), this.config.connectTimeoutMs);
      upstream.once('error', () => {
        clearTimeout(timeout);
        if (!connected) attempt(index + 1);
        else client.destroy();
      });
      upstream.once('connect', () => {
        connected = true;
        clearTimeout(timeout);
        upstream.removeAllListeners('error');
        this.stats.routed += 1;
        this.stats.active += 1;
        const entry: ConnectionEntry = {
          at: Date.now(), remoteAddress: client.remoteAddress, remotePort: client.remotePort, sni, service, endpoint: address,
          clientHelloMs, dialMs: performance.now() - dialStarted,
        };
        this.connections.add(entry);
        if (routedChannel.hasSubscribers) routedChannel.publish({ origin: this, service, endpoint: address, remote: client.remoteAddress });
        span?.setAttributes({ 'isthmus.endpoint': address });
        // Called in 'connect', before the socket first reads: nothing of the destination's is read yet.
        const pair = this.relay?.splice(client, upstream, hello, this.config.idleTimeoutMs);
        if (pair) {
          relayed = true;
          this.sockets.track(pair);
          entry.sofar = () => pair.bytes();
          const meter = new ByteMeter(entry.sofar, this.bytesReport(entry));
          pair.once('close', (how: SpliceEnd, bytes: SplicedBytes) => {
            this.stats.active -= 1;
            span?.end();
            meter.close(bytes);
            this.ended(entry, how, bytes.fromA, bytes.fromB);
          });
          return;
        }
        upstream.once('close', () => { this.stats.active -= 1; });
        upstream.write(hello);
        // The caller's side reads into a buffer of its own too, so neither direction allocates per read.
        entry.sofar = meteredSplice(client, upstream, {
          idleMs: this.config.idleTimeoutMs, early: hello.length, report: this.bytesReport(entry), bReads: reads, aReads: new OwnReads(),
          onEnd: (how, bytes) => this.ended(entry, how, bytes.fromA, bytes.fromB),
        });
        client.resume();
      });
    };
    attempt(0);
  }

  /**
   * Where a routed connection's byte meter reports (core/byte-meter.ts): its bytes are counted
   * while it is open (at each metrics scrape) as well as at its end, the caller's ClientHello
   * included; `entry.sofar` reads them for /debug/connections while it is open.
   */
  private bytesReport(entry: ConnectionEntry): (fromCaller: number, fromEndpoint: number) => void {
    return (fromCaller, fromEndpoint) => {
      if (bytesChannel.hasSubscribers) bytesChannel.publish({ origin: this, service: entry.service, fromCaller, fromEndpoint });
    };
  }

  /** A routed connection has ended (its meter has reported the rest): its log entry says how, and the metrics count it. */
  private ended(entry: ConnectionEntry, end: SpliceEnd, fromCaller: number, fromEndpoint: number): void {
    entry.sofar = undefined;
    entry.ended = { end, at: Date.now(), fromCaller, fromEndpoint };
    if (closedChannel.hasSubscribers) closedChannel.publish({ origin: this, service: entry.service, end, fromCaller, fromEndpoint });
  }

  /**
   * A health check of this gateway (health.gateway.<cluster>.isthmus): the gateway completes the
   * TLS handshake itself, with its own certificate, and closes once the checker does (or after
   * clientHelloTimeout). What it proves is that this process reads and answers; unlike the probe
   * SNI, it does not depend on the federation behind the gateway, which the data path does not
   * need. No certificate yet (its federation never answered since start): refused with an alert,
   * which a checker also takes as an answer.
   */
  private answerHealth(client: Socket, hello: Buffer): void {
    if (!this.healthContext) {
      this.refuse(client, 'not-ready', 'no gateway certificate yet to answer a health check with', alertInternalError);
      return;
    }
    // The ClientHello was read already: the TLS layer gets it first, then what follows, through
    // a stream of its own (TLSSocket reads a net.Socket's handle directly, past what was read).
    const wire = new Duplex({
      read: () => { client.resume(); },
      write: (chunk: Buffer, _encoding, done) => { client.write(chunk, done); },
      final: (done) => { client.end(); done(); },
      destroy: (err, done) => { client.destroy(); done(err); },
    });
    wire.push(hello);
    client.on('data', (chunk: Buffer) => { if (!wire.push(chunk)) client.pause(); });
    client.once('end', () => wire.push(null));
    client.once('close', () => wire.destroy());
    const tls = new TLSSocket(wire, { isServer: true, secureContext: this.healthContext });
    const timer = setTimeout(() => tls.destroy(), this.config.clientHelloTimeoutMs);
    tls.on('error', () => tls.destroy());
    tls.once('close', () => {
      clearTimeout(timer);
      client.destroy();
    });
    // Nothing is read from a health check but its end.
    tls.on('data', () => undefined);
    tls.once('end', () => tls.end());
  }

  private refuse(client: Socket, reason: GatewayRefusal, detail: string, alert?: Buffer): void {
    this.stats.refused[reason] = (this.stats.refused[reason] ?? 0) + 1;
    if (refusedChannel.hasSubscribers) refusedChannel.publish({ origin: this, reason, detail, remote: client.remoteAddress });
    this.log.debug({ reason, detail, remote: client.remoteAddress }, 'connection refused');
    if (alert && !client.destroyed) client.end(alert);
    else client.destroy();
    setTimeout(() => client.destroy(), 1000).unref();
  }
}
