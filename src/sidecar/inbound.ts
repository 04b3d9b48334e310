import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { Pool, type Dispatcher } from 'undici';
import { channels } from '../core/channels.js';
import type { Logger } from '../core/log.js';
import { activeTracer, formatTraceparent, parseTraceparent, type ActiveSpan } from '../core/tracing.js';
import { forwardableHeaders } from './headers.js';
import { relay } from './relay.js';
import { peerIdentity } from './peer-identity.js';
import { encodeInboundReport, inboundReportHeader, traceHeader } from './trace.js';

const requestChannel = channels.inboundRequest;

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
  private readonly app: Pool;
  private identity: string;
  /**
   * The peer of a TLS connection does not change between its requests: read and check its
   * certificate once per connection, not per request (it was a quarter of the CPU, docs/benchmarks.md).
   */
  private readonly peers = new WeakMap<TLSSocket, { identity: string; xfcc: string } | { error: string }>();
  /** TCP accept time per raw socket, and TLS handshake duration per TLS socket, for `isthmus trace` (one entry per connection). */
  private readonly accepted = new WeakMap<Socket, number>();
  private readonly handshakes = new WeakMap<TLSSocket, number>();

  constructor(credentials: InboundCredentials, private readonly appAddress: string, private readonly logger: Logger, private readonly place: InboundPlace = {}) {
    this.identity = credentials.identity;
    this.app = new Pool(`http://${appAddress}`, { connections: 64, keepAliveTimeout: 30_000 });
    this.server = createServer({ ...tlsOptions(credentials), requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2', keepAliveTimeout: 60_000 }, (req, res) => {
      void this.handle(req, res).catch((err: unknown) => {
        this.logger.warn({ err: (err as Error).message }, 'inbound request to the app failed');
        if (!res.headersSent) {
          res.writeHead(502, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ error: { code: 'ISTHMUS_ERR_API_UNREACHABLE', message: `the app at ${appAddress} did not answer` } }));
        } else res.destroy();
      });
    });
    this.server.on('connection', (raw: Socket) => this.accepted.set(raw, performance.now()));
    this.server.on('secureConnection', (socket: TLSSocket) => {
      socket.setNoDelay(true);
      // Node keeps the accepted TCP socket as the TLS socket's `_parent` (server side).
      const raw = (socket as TLSSocket & { _parent?: Socket })._parent;
      const at = raw ? this.accepted.get(raw) : undefined;
      if (at !== undefined) this.handshakes.set(socket, performance.now() - at);
    });
    this.server.on('tlsClientError', (err) => this.logger.debug({ err: err.message }, 'inbound TLS handshake refused'));
  }

  private peerOf(socket: TLSSocket): { identity: string; xfcc: string } | { error: string } {
    let peer = this.peers.get(socket);
    if (!peer) {
      const cert = socket.getPeerCertificate(true);
      const checked = peerIdentity(cert);
      peer = 'error' in checked
        ? checked
        : { identity: checked.identity, xfcc: `By=${this.identity};Hash=${createHash('sha256').update(cert.raw).digest('hex')};URI=${checked.identity}` };
      this.peers.set(socket, peer);
    }
    return peer;
  }

  /** A renewed certificate or a changed trust bundle applies to new connections at once. */
  update(credentials: InboundCredentials): void {
    this.identity = credentials.identity;
    this.server.setSecureContext(tlsOptions(credentials));
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await this.app.close();
  }

  /** One event per answered request, for src/telemetry/, and the end of its span when tracing is on. */
  private answered(started: number, peer: string | undefined, code: number, span: ActiveSpan | undefined): void {
    if (requestChannel.hasSubscribers) requestChannel.publish({ origin: this, peer, code, seconds: (performance.now() - started) / 1000 });
    span?.end({
      attributes: { 'isthmus.caller_identity': peer, 'http.status_code': code, 'http.response.status_code': code },
      ...(code >= 500 ? { error: String(code) } : code === 403 ? { error: 'caller identity denied' } : {}),
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    // A SERVER span, child of the caller's traceparent, only when tracing is on (docs/tracing.md).
    const span = activeTracer()?.start({
      kind: 'server',
      name: this.place.service ? `inbound ${this.place.service}` : 'inbound',
      parent: parseTraceparent(req.headers.traceparent, req.headers.tracestate),
      attributes: { 'isthmus.cluster': this.place.cluster, 'isthmus.service': this.place.service, 'http.request.method': req.method, 'network.peer.address': req.socket.remoteAddress },
    });
    const peer = this.peerOf(req.socket as TLSSocket);
    // `isthmus trace` asks for a report (docs/trace.md); ordinary requests pay this one lookup.
    const traced = req.headers[traceHeader] !== undefined;
    if ('error' in peer) {
      this.answered(started, undefined, 403, span);
      if (traced) res.setHeader(inboundReportHeader, this.traceReport(req, null, 0, peer.error));
      res.writeHead(403, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'ISTHMUS_ERR_TRUST_IDENTITY_DENIED', message: peer.error } }));
      return;
    }
    // Any XFCC that arrives is dropped: only this sidecar may say who called.
    const headers = forwardableHeaders(req.headers, 'x-forwarded-client-cert');
    headers['x-forwarded-client-cert'] = peer.xfcc;
    if (span) {
      // The app's parent is this span: same trace id, this span's id.
      headers.traceparent = formatTraceparent(span.context);
      if (span.context.traceState) headers.tracestate = span.context.traceState;
      else delete headers.tracestate;
    }
    if (traced) delete headers[traceHeader];
    const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
    const appStarted = traced ? performance.now() : 0;
    const response = await this.app.request({
      path: req.url ?? '/',
      method: req.method as Dispatcher.HttpMethod,
      headers,
      body: hasBody ? req : null,
    }).catch((err: unknown) => {
      this.answered(started, peer.identity, 502, span);
      if (traced) res.setHeader(inboundReportHeader, this.traceReport(req, peer.identity, performance.now() - appStarted));
      throw err;
    });
    const responseHeaders = forwardableHeaders(response.headers);
    if (traced) responseHeaders[inboundReportHeader] = this.traceReport(req, peer.identity, performance.now() - appStarted);
    res.writeHead(response.statusCode, responseHeaders);
    this.answered(started, peer.identity, response.statusCode, span);
    relay(response.body, res);
  }

  /**
   * What this end saw of a traced request: who it is, whom it verified, where the app is, and
   * the connection's handshake time (given once: a trace always comes on a fresh connection).
   */
  private traceReport(req: IncomingMessage, client: string | null, appMs: number, clientError?: string): string {
    const socket = req.socket as TLSSocket;
    const handshakeMs = this.handshakes.get(socket);
    this.handshakes.delete(socket);
    return encodeInboundReport({
      cluster: this.place.cluster, identity: this.identity, client, ...(clientError ? { clientError } : {}),
      endpoint: `${socket.localAddress}:${socket.localPort}`, app: this.appAddress,
      ...(handshakeMs !== undefined ? { handshakeMs } : {}), appMs,
    });
  }
}

function tlsOptions(c: InboundCredentials) {
  return { cert: [c.certPem.trim(), ...c.chainPem.map((p) => p.trim())].join('\n'), key: c.keyPem, ca: c.trustBundle };
}
