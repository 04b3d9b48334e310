import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import { createServer as createHttpServer, type IncomingHttpHeaders, type Server as HttpServer } from 'node:http';
import type { H1DispatchOptions } from './h1-connection.js';
import { drainHttp1, serveHttp1, type H1Request, type H1Response } from './h1-server.js';
import { connect as netConnect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { Dispatcher } from 'undici';
import { channels, type RequestFacts } from '../core/channels.js';
import type { Logger } from '../core/log.js';
import type { CallerFacts } from '../model/authorization.js';
import { IssuingClusters, type AuthzRefusal, type InboundAuthorization } from './authz-layer.js';
import type { InboundRateLimit } from './inbound-rate-limit.js';
import { activeTracer, formatTraceparent, parseTraceparent, type ActiveSpan } from '../core/tracing.js';
import { InboundApps, InboundApp, selectInboundAlpn, type AppPortSpec, type TcpPorts } from './inbound-ports.js';
import { forwardableFields, forwardableHeaders } from './headers.js';
import { OwnInboundH2 } from './inbound-h2.js';
import { serveAlpnH2 } from './protocol-sniff.js';
import { errorResponse, repeatsHost, requestHead } from './http-head.js';
import { peerIdentity } from './peer-identity.js';
import { acceptPlaintextHttpWhen, isPlaintextCaller } from './plaintext-inbound.js';
import { answerUnknownExpectation, clientErrorHandler, refuseMalformed } from './request-head-timeout.js';
import { ResponseRelay } from './response-relay.js';
import { OpenSockets } from '../core/open-sockets.js';
import { meteredSplice } from '../core/byte-meter.js';
import { defaultTimeouts, inboundKeepAliveMs, type DataPlaneTimeouts } from './timeouts.js';
import { encodeInboundReport, inboundReportHeader, traceHeader } from './trace.js';
import { isTcpAlpn } from './tcp-protocol.js';
import { TunnelExchange, whenTunnelAnswered } from './tunnel-exchange.js';

/** Fields of a caller's request that never reach the app: its own identity claim, and Expect. */
const appDropped = ['x-forwarded-client-cert', 'expect'];

const requestChannel = channels.inboundRequest;
const grpcEndedChannel = channels.grpcInboundEnded;
const tunnelInboundBytes = channels.tunnelInboundBytes;

/** What the app behind the inbound speaks: HTTP/1.1, or HTTP/2 over cleartext (a gRPC server). */
export type AppProtocol = 'http' | 'h2c';

/**
 * Who called: a verified mesh identity with the XFCC the app gets, a plain-text caller (no
 * identity, no XFCC: let in only while the namespace's mTLS mode is permissive), or a
 * certificate that is not acceptable.
 */
export type Peer = { identity: string | undefined; xfcc: string | undefined; caller: CallerFacts } | { error: string };

const plaintextPeer: Peer = Object.freeze({ identity: undefined, xfcc: undefined, caller: Object.freeze({}) });
const plaintextRefused: Peer = Object.freeze({ error: 'a plain-text caller, and the namespace\'s mTLS mode is strict now: call through a sidecar' });
export interface Admitted { started: number; span: ActiveSpan | undefined; peer: Peer }

export interface InboundCredentials { certPem: string; chainPem: string[]; keyPem: string; trustBundle: string[]; identity: string }

/** Where this listener runs, for its spans: the cluster and the workload's `<ns>/<name>`. */
export interface InboundPlace { cluster?: string; service?: string }

/**
 * The mTLS listener in front of the app. Only peers with a certificate that chains to a mesh
 * root get in; the app learns who called from `x-forwarded-client-cert` in Envoy's format
 * (By=<us>;Hash=<sha256 of their certificate>;URI=<their SPIFFE ID>), which this sidecar sets
 * and which it strips from anything that arrives, so it cannot be forged from outside.
 */
export class Inbound {
  readonly server: Server;
  /** Serves the connections whose ALPN chose h2 (inbound-h2.ts); the HTTPS server keeps HTTP/1.1. */
  private readonly h2: OwnInboundH2;
  /** The app's HTTP ports: `inbound.app`, and those of `inbound.ports` (inbound-ports.ts). */
  readonly apps: InboundApps;
  private identity: string;
  /**
   * The peer of a TLS connection does not change between its requests: read and check its
   * certificate once per connection, not per request (it was a quarter of the CPU, docs/benchmark-history.md).
   */
  private readonly peers = new WeakMap<TLSSocket, Peer>();
  /** TCP accept time per raw socket, and TLS handshake duration per TLS socket, for `isthmus trace` (one entry per connection). */
  private readonly accepted = new WeakMap<Socket, number>();
  private readonly handshakes = new WeakMap<TLSSocket, number>();
  /** WebSocket and CONNECT tunnels now open: the HTTP server no longer tracks their sockets. */
  private readonly tunnels = new OpenSockets();
  /**
   * Every accepted TCP connection, so that close() need not wait for a peer that never finishes
   * its TLS handshake.
   */
  private readonly sockets = new OpenSockets();
  /** Plain-text HTTP/1.1 callers, handed over while the namespace is permissive (plaintext-inbound.ts). */
  private readonly plain: HttpServer;
  private readonly clusters = new IssuingClusters();

  constructor(
    credentials: InboundCredentials, readonly appAddress: string, readonly logger: Logger,
    private readonly place: InboundPlace = {}, readonly timeouts: Readonly<DataPlaneTimeouts> = defaultTimeouts,
    readonly appProtocol: AppProtocol = 'http',
    /** Who may call the app (authz-layer.ts); absent: everyone with a mesh certificate. */
    readonly authz?: InboundAuthorization,
    /** The service's LocalRateLimit, taken after authorization (inbound-rate-limit.ts); absent: none. */
    readonly rateLimit?: InboundRateLimit,
    /** More app ports, chosen by the port a request's authority names (`inbound.ports`, HTTP and h2c ones). */
    ports: readonly AppPortSpec[] = [],
    /** The app's TCP ports, when it has several ports: connections whose ALPN chose one go to its TCP inbound. */
    tcp?: TcpPorts,
    /** False when the app has TCP ports only: no HTTP ALPN is selected then. */
    servesHttp = true,
  ) {
    this.identity = credentials.identity;
    this.apps = new InboundApps(new InboundApp(appAddress, appProtocol, timeouts.connectMs), ports, timeouts.connectMs);
    const alpn = tcp ? { ALPNCallback: ({ protocols }: { protocols: string[] }) => selectInboundAlpn(tcp, protocols, servesHttp) } : {
      // Other sidecars choose h2 for requests that came to them as HTTP/2 (gRPC) and http/1.1
      // for the rest; a client that offers no ALPN (a probe, openssl) gets HTTP/1.1.
      ALPNProtocols: ['h2', 'http/1.1'],
    };
    this.server = createServer({
      ...tlsOptions(credentials), requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2',
      ...alpn,
      // Not allowHalfOpen: a TCP health check's FIN before any byte must close the socket at
      // once (half-open, it stayed in CLOSE-WAIT for ever: a descriptor per check). Tunnels are
      // made half-open when they open (tunnel()), before the caller's FIN can be read.
      // A connection that never finishes its handshake is dropped after this (Node's default is 120 s).
      handshakeTimeout: 10_000,
    });
    // h1-server.ts reads and answers the HTTP/1.1 connections of both servers. Pooled connections
    // from other sidecars stay open across bursts (their pools keep them upstreamIdle); the client
    // side closes first. No byte either way for streamIdle closes a connection (a request body
    // stalled mid-way too).
    const keptMs = inboundKeepAliveMs(timeouts);
    const h1 = { requestHeadersMs: timeouts.requestHeadersMs, keepAliveMs: keptMs, streamIdleMs: timeouts.streamIdleMs, openEndedIdleMs: timeouts.tunnelIdleMs, bodyViews: true };
    serveHttp1(this.server, h1);
    this.server.on('request', (req: H1Request, res: H1Response) => this.serve(req, res));
    this.plain = createHttpServer();
    serveHttp1(this.plain, h1);
    this.plain.on('request', (req: H1Request, res: H1Response) => this.serve(req, res));
    this.plain.on('upgrade', (req: H1Request, socket: Duplex, head: Buffer) => this.tunnel(req, socket, head));
    this.plain.on('connect', (req: H1Request, socket: Duplex, head: Buffer) => this.tunnel(req, socket, head));
    this.plain.on('clientError', clientErrorHandler(this, 'inbound'));
    this.plain.on('checkExpectation', answerUnknownExpectation);
    // Before the inbound's own 'connection' listener below; strict (the default) hands every
    // connection to TLS untouched.
    // Other sidecars' HTTP/2 runs on the sidecar's own HTTP/2 (src/h2/, inbound-h2.ts).
    this.h2 = new OwnInboundH2(this, keptMs);
    acceptPlaintextHttpWhen(this.server, this.plain, this.h2, () => this.authz?.mtls === 'permissive', timeouts.requestHeadersMs);
    serveAlpnH2(this.server, this.h2);
    if (tcp) serveAlpnTcp(this.server, tcp);
    this.server.on('upgrade', (req: H1Request, socket: Duplex, head: Buffer) => this.tunnel(req, socket, head));
    this.server.on('connect', (req: H1Request, socket: Duplex, head: Buffer) => this.tunnel(req, socket, head));
    this.server.on('connection', (raw: Socket) => {
      this.accepted.set(raw, performance.now());
      this.sockets.track(raw);
    });
    this.server.on('secureConnection', (socket: TLSSocket) => {
      socket.setNoDelay(true);
      // Node keeps the accepted TCP socket as the TLS socket's `_parent` (server side).
      const raw = (socket as TLSSocket & { _parent?: Socket })._parent;
      const at = raw ? this.accepted.get(raw) : undefined;
      if (at !== undefined) this.handshakes.set(socket, performance.now() - at);
    });
    this.server.on('clientError', clientErrorHandler(this, 'inbound'));
    this.server.on('checkExpectation', answerUnknownExpectation);
    this.server.on('tlsClientError', (err: NodeJS.ErrnoException) => {
      // In strict mode nothing is read before TLS, so a plain-text caller shows only as the
      // handshake's failure; it is counted as a refusal (docs/authorization.md), other failures are not.
      if (isPlaintextCaller(err)) this.authz?.plaintextRefused();
      this.logger.debug({ err: err.message }, 'inbound TLS handshake refused');
    });
  }

  private serve(req: H1Request, res: H1Response): void {
    void this.handle(req, res).catch((err: unknown) => {
      this.logger.warn({ err: (err as Error).message }, 'inbound request to the app failed');
      if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'application/json', 'x-isthmus-error': 'ISTHMUS_ERR_DATAPLANE_APP_UNREACHABLE' });
        res.end(JSON.stringify({ error: { code: 'ISTHMUS_ERR_DATAPLANE_APP_UNREACHABLE', message: `the app at ${this.apps.for(req.headers.host).address} did not answer: ${(err as Error).message}` } }));
      } else res.destroy();
    });
  }

  private peerOf(socket: TLSSocket): Peer {
    // Only the plain-text server hands over unencrypted sockets, and only while permissive; a
    // connection kept open from then is refused per request once the namespace is strict again.
    if (socket.encrypted !== true) {
      if (this.authz?.mtls === 'permissive') return plaintextPeer;
      this.authz?.plaintextRefused();
      return plaintextRefused;
    }
    let peer = this.peers.get(socket);
    if (!peer) {
      const cert = socket.getPeerCertificate(true);
      const checked = peerIdentity(cert);
      peer = 'error' in checked
        ? checked
        : {
          identity: checked.identity,
          xfcc: `By=${this.identity};Hash=${createHash('sha256').update(cert.raw).digest('hex')};URI=${checked.identity}`,
          caller: this.clusters.facts(cert, checked),
        };
      this.peers.set(socket, peer);
    }
    return peer;
  }

  /** A renewed certificate or a changed trust bundle applies to new connections at once. */
  update(credentials: InboundCredentials): void {
    this.identity = credentials.identity;
    this.server.setSecureContext(tlsOptions(credentials));
  }

  /**
   * The first step of stopping on SIGTERM: no new connection is taken (callers that dial now are
   * refused and try another endpoint), idle kept connections close now, a connection busy with a
   * request closes once its answer is sent (which says `connection: close`), HTTP/2 sessions get
   * a GOAWAY and finish their streams, and tunnels run on. Resolves once every connection has
   * closed, or after `ms` with how many are still open; close() ends those.
   */
  async drain(ms: number): Promise<number> {
    this.server.close();
    drainHttp1(this.server);
    drainHttp1(this.plain);
    this.h2.closeSessions();
    return this.sockets.emptied(ms);
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    this.plain.closeAllConnections();
    this.tunnels.destroyAll();
    this.sockets.destroyAll();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await this.apps.close();
  }

  /** One event per answered request, for src/telemetry/, and the end of its span when tracing is on. */
  answered(started: number, peer: string | undefined, code: number, span: ActiveSpan | undefined, request?: RequestFacts): void {
    if (requestChannel.hasSubscribers) requestChannel.publish({ origin: this, peer, code, seconds: (performance.now() - started) / 1000, request });
    span?.end({
      attributes: { 'isthmus.caller_identity': peer, 'http.status_code': code, 'http.response.status_code': code },
      ...(code >= 500 ? { error: String(code) } : code === 403 ? { error: 'caller identity denied' } : {}),
    });
  }

  /** A gRPC call's stream closed (inbound-h2.ts), with the grpc-status it ended with; undefined: reset before one. */
  grpcEnded(peer: string | undefined, grpcStatus: number | undefined): void {
    if (grpcEndedChannel.hasSubscribers) grpcEndedChannel.publish({ origin: this, peer, grpcStatus });
  }

  /**
   * What every request or stream starts with, whatever its protocol: the clock, a SERVER span
   * (child of the caller's traceparent, only when tracing is on, docs/tracing.md) and the
   * caller's identity, read once per connection.
   */
  admit(method: string | undefined, request: { readonly headers: IncomingHttpHeaders }, socket: TLSSocket): Admitted {
    const started = performance.now();
    // `request.headers` is read only with tracing on: an HTTP/1.1 request builds it when asked.
    const span = activeTracer()?.start({
      kind: 'server',
      name: this.place.service ? `inbound ${this.place.service}` : 'inbound',
      parent: parseTraceparent(request.headers.traceparent, request.headers.tracestate),
      attributes: { 'isthmus.cluster': this.place.cluster, 'isthmus.service': this.place.service, 'http.request.method': method, 'network.peer.address': socket.remoteAddress },
    });
    return { started, span, peer: this.peerOf(socket) };
  }

  /** The caller's identity in XFCC (any that arrived is dropped: only this sidecar may say who called; a plain-text caller gets none) and the span's traceparent. */
  appFields(fields: Record<string, string | string[]>, xfcc: string | undefined, span: ActiveSpan | undefined): void {
    if (xfcc === undefined) delete fields['x-forwarded-client-cert'];
    else fields['x-forwarded-client-cert'] = xfcc;
    if (span) {
      // The app's parent is this span: same trace id, this span's id.
      fields.traceparent = formatTraceparent(span.context);
      if (span.context.traceState) fields.tracestate = span.context.traceState;
      else delete fields.tracestate;
    }
  }

  /** The fields for the app as an object: the identity's, the span's traceparent, no trace request. */
  private changedHeaders(req: H1Request, xfcc: string | undefined, span: ActiveSpan | undefined, traced: boolean): Record<string, string | string[]> {
    const headers = forwardableHeaders(req.headers, 'x-forwarded-client-cert');
    this.appFields(headers, xfcc, span);
    if (traced) delete headers[traceHeader];
    delete headers.expect;
    return headers;
  }

  /** Counted as isthmus_requests_refused_total{listener="inbound",reason="malformed"}. */
  private refusedMalformed(): void {
    if (channels.requestRefused.hasSubscribers) channels.requestRefused.publish({ origin: this, listener: 'inbound', reason: 'malformed' });
  }

  private async handle(req: H1Request, res: H1Response): Promise<void> {
    const { started, span, peer } = this.admit(req.method, req, req.socket as TLSSocket);
    // `isthmus trace` asks for a report (docs/trace.md); ordinary requests pay this one lookup.
    const traced = req.field(traceHeader) !== undefined;
    if ('error' in peer) {
      this.answered(started, undefined, 403, span, req);
      if (traced) res.setHeader(inboundReportHeader, this.traceReport(req, null, 0, peer.error));
      return answerError(req, res, 403, 'ISTHMUS_ERR_TRUST_IDENTITY_DENIED', peer.error);
    }
    let target = req.url ?? '/';
    if (this.authz) {
      const verdict = this.authz.request(peer.caller, req.method ?? 'GET', target, req);
      if ('refusal' in verdict) {
        this.answered(started, peer.identity, verdict.refusal.status, span, req);
        if (traced) res.setHeader(inboundReportHeader, this.traceReport(req, peer.identity ?? null, 0, undefined, verdict.refusal.message));
        return answerError(req, res, verdict.refusal.status, verdict.refusal.code, verdict.refusal.message);
      }
      target = verdict.target;
    }
    const limited = this.rateLimit?.admit(peer.caller);
    if (limited) {
      this.answered(started, peer.identity, 429, span, req);
      if (traced) res.setHeader(inboundReportHeader, this.traceReport(req, peer.identity ?? null, 0, undefined, limited.message));
      return answerError(req, res, 429, limited.code, limited.message, limited.headers);
    }
    if (repeatsHost(req.rawHeaders)) {
      this.answered(started, peer.identity, 400, span, req);
      this.refusedMalformed();
      const message = 'the request has two Host fields (RFC 9112 §3.2); send one';
      res.writeHead(400, { 'content-type': 'application/json', 'x-isthmus-error': 'ISTHMUS_ERR_DATAPLANE_REQUEST_MALFORMED', connection: 'close' });
      res.end(JSON.stringify({ error: { code: 'ISTHMUS_ERR_DATAPLANE_REQUEST_MALFORMED', message } }));
      return;
    }
    // Expect: 100-continue was answered by this server already; the next hop must not wait for another 100.
    // The caller's fields go on as they came, the identity's in place of any it sent (made of a
    // checked SPIFFE ID and a hex hash, peerOf: nothing to check per request); a traced request
    // and one with a span change more (an object then).
    const headers = traced || span !== undefined
      ? this.changedHeaders(req, peer.xfcc, span, traced)
      : forwardableFields(req.rawHeaders, appDropped, peer.xfcc === undefined ? [] : ['x-forwarded-client-cert', peer.xfcc]);
    const appStarted = traced ? performance.now() : 0;
    // A traced request's report rides on the response head (docs/trace.md).
    const relay = new ResponseRelay(res, undefined, traced
      ? (head) => { head[inboundReportHeader] = this.traceReport(req, peer.identity ?? null, performance.now() - appStarted); }
      : undefined);
    this.apps.for(req.field('host')).pool.dispatch({
      path: target, method: req.method as Dispatcher.HttpMethod, headers, body: req.body ?? null,
      headersTimeout: this.timeouts.responseHeadersMs, bodyTimeout: this.timeouts.streamIdleMs, openEndedTimeout: this.timeouts.tunnelIdleMs,
    } as H1DispatchOptions, relay);
    try {
      const status = await relay.started;
      this.answered(started, peer.identity, status, span, req);
    } catch (err) {
      this.answered(started, peer.identity, 502, span, req);
      if (traced) res.setHeader(inboundReportHeader, this.traceReport(req, peer.identity ?? null, performance.now() - appStarted));
      throw err;
    }
  }

  /**
   * A WebSocket upgrade or a CONNECT from another sidecar: the same peer check as a request,
   * then a plain connection to the app. An upgrade's head goes to the app with the caller's
   * identity in x-forwarded-client-cert (and any that arrived removed); a CONNECT is answered
   * 200 here once the app accepted, and its bytes carry no header, so the app cannot learn the
   * caller from them. After that, bytes both ways until either side is done.
   */
  private tunnel(req: H1Request, socket: Duplex, head: Buffer): void {
    const started = performance.now();
    // A tunnel (WebSocket, CONNECT) passes the caller's FIN on and keeps answering: the stream
    // reads this when the caller's end arrives.
    socket.allowHalfOpen = true;
    const peer = this.peerOf(socket as TLSSocket);
    if ('error' in peer) {
      this.answered(started, undefined, 403, undefined, req);
      socket.end(errorResponse(403, 'Forbidden', 'ISTHMUS_ERR_TRUST_IDENTITY_DENIED', peer.error));
      return;
    }
    // The head is written to the app from the raw fields; a second Host would go with it.
    if (repeatsHost(req.rawHeaders)) {
      this.answered(started, peer.identity, 400, undefined, req);
      this.refusedMalformed();
      return refuseMalformed(socket, false, '(two Host fields, RFC 9112 §3.2)');
    }
    // A CONNECT's bytes carry no request: only who calls can be checked.
    let target = req.url ?? '/';
    const verdict: { target: string } | { refusal: AuthzRefusal } | undefined = !this.authz ? undefined
      : req.method === 'CONNECT' ? refusalOrTarget(this.authz.connection(peer.caller), target)
        : this.authz.request(peer.caller, req.method ?? 'GET', target, req);
    if (verdict && 'refusal' in verdict) {
      this.answered(started, peer.identity, verdict.refusal.status, undefined, req);
      socket.end(errorResponse(verdict.refusal.status, verdict.refusal.status === 403 ? 'Forbidden' : 'Bad Request', verdict.refusal.code, verdict.refusal.message));
      return;
    }
    if (verdict) target = verdict.target;
    const limited = this.rateLimit?.admit(peer.caller);
    if (limited) {
      this.answered(started, peer.identity, 429, undefined, req);
      socket.end(errorResponse(429, 'Too Many Requests', limited.code, limited.message, limited.headers));
      return;
    }
    const appAddress = this.apps.for(req.method === 'CONNECT' ? req.url : req.headers.host).address;
    const split = appAddress.lastIndexOf(':');
    const app = netConnect({ host: appAddress.slice(0, split), port: Number(appAddress.slice(split + 1)), allowHalfOpen: true });
    app.setNoDelay(true);
    const refuse = (err: Error) => {
      this.answered(started, peer.identity, 502, undefined, req);
      socket.end(errorResponse(502, 'Bad Gateway', 'ISTHMUS_ERR_DATAPLANE_APP_UNREACHABLE', `the app at ${appAddress} did not accept: ${err.message}`));
    };
    const timer = setTimeout(() => app.destroy(new Error(`no connection within ${this.timeouts.connectMs} ms`)), this.timeouts.connectMs);
    app.once('error', refuse);
    app.once('connect', () => {
      clearTimeout(timer);
      app.removeListener('error', refuse);
      const exchange = new TunnelExchange(req);
      if (req.method === 'CONNECT') {
        socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        this.answered(started, peer.identity, 200, undefined, req);
      } else {
        app.write(requestHead(req.method ?? 'GET', target, req.rawHeaders, { drop: new Set(['x-forwarded-client-cert']), set: peer.xfcc === undefined ? {} : { 'x-forwarded-client-cert': peer.xfcc } }));
        // Recorded with the app's answer (101, or its refusal), read as it passes.
        whenTunnelAnswered(app, 101, (status) => this.answered(started, peer.identity, status, undefined, req));
      }
      if (head.length > 0) app.write(head);
      // The tunnel's bytes, counted while it is open too (core/byte-meter.ts): the caller's (a), the app's (b).
      meteredSplice(socket, app, {
        idleMs: this.timeouts.tunnelIdleMs, open: this.tunnels, early: head.length, onEnd: exchange.ended,
        report: (fromCaller, fromApp) => {
          if (tunnelInboundBytes.hasSubscribers) tunnelInboundBytes.publish({ origin: this, peer: peer.identity, sentBytes: fromApp, receivedBytes: fromCaller });
        },
      });
    });
  }

  /**
   * What this end saw of a traced request: who it is, whom it verified, where the app is, and
   * the connection's handshake time (given once: a trace always comes on a fresh connection).
   */
  private traceReport(req: H1Request, client: string | null, appMs: number, clientError?: string, authorization?: string): string {
    const socket = req.socket as TLSSocket;
    const handshakeMs = this.handshakes.get(socket);
    this.handshakes.delete(socket);
    return encodeInboundReport({
      cluster: this.place.cluster, identity: this.identity, client, ...(clientError ? { clientError } : {}), ...(authorization ? { authorization } : {}),
      endpoint: `${socket.localAddress}:${socket.localPort}`, app: this.apps.for(req.headers.host).address,
      ...(handshakeMs !== undefined ? { handshakeMs } : {}), appMs,
    });
  }
}

/** The inbound's own answer, instead of the app's; what is left of the request body is read and dropped. */
function answerError(req: H1Request, res: H1Response, status: number, code: string, message: string, extra: Readonly<Record<string, string>> = {}): void {
  req.resume();
  const body = JSON.stringify({ error: { code, message } });
  res.writeHead(status, { ...extra, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-isthmus-error': code });
  res.end(body);
}

function refusalOrTarget(refusal: AuthzRefusal | undefined, target: string): { target: string } | { refusal: AuthzRefusal } {
  return refusal ? { refusal } : { target };
}

/**
 * Connections whose ALPN chose one of the app's TCP ports leave the HTTPS server before HTTP
 * sees them (as serveAlpnH2 takes the h2 ones), to that port's TCP inbound.
 */
function serveAlpnTcp(https: Server, tcp: TcpPorts): void {
  const [accept] = https.listeners('secureConnection') as ((socket: TLSSocket) => void)[];
  if (!accept) throw new Error('the HTTPS server has no connection handler to share');
  https.removeListener('secureConnection', accept);
  https.on('secureConnection', (socket: TLSSocket) => {
    if (isTcpAlpn(socket.alpnProtocol)) tcp.accept(socket);
    else accept.call(https, socket);
  });
}

function tlsOptions(c: InboundCredentials) {
  return { cert: [c.certPem.trim(), ...c.chainPem.map((p) => p.trim())].join('\n'), key: c.keyPem, ca: c.trustBundle };
}
