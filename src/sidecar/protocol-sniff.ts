import type { Server as HttpServer } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { alsoOnCloseAll } from '../core/open-sockets.js';
import { sniffPreface } from './h2-preface.js';
import { timesOwnHeads } from './h1-server.js';
import { answerHeadTimeout } from './request-head-timeout.js';

/**
 * Lets one listening HTTP/1.1 server also serve HTTP/2 with prior knowledge (h2c): each accepted
 * connection's first bytes are read; the HTTP/2 preface sends the connection to `h2`, anything
 * else to the HTTP/1.1 server's own connection handler, with the bytes put back first.
 *
 * The HTTP/1.1 server keeps listening and keeps its own handler, so everything it did stays as
 * it was (its header and idle timeouts, its connection tracking, upgrade and CONNECT events).
 * Node's HTTP/2 session reads bytes already buffered on the socket when it starts; the HTTP/1.1
 * parser gets them when the socket is resumed.
 *
 * Why this takes the HTTP server's own 'connection' listener instead of using public API only
 * (checked on Node 20.20):
 * - Handing a socket to either server is public: both `http.Server` and `http2.Http2Server`
 *   document that users may emit 'connection' with any Duplex to inject a connection; the
 *   HTTP/2 side does exactly that.
 * - The documented way to put a sniffer in front of an HTTP/1.1 server is the same injection
 *   into a server that never listens (tcp-listener.ts does it). But Node starts the check that
 *   enforces `headersTimeout` (and `requestTimeout`) only when a server emits 'listening'
 *   (`setupConnectionsTracking` in lib/_http_server.js): an injected connection that stalls in
 *   its head is never closed. So the listening server must stay the HTTP/1.1 one, and the only
 *   way to read a connection's first bytes before its parser does is to run before its
 *   'connection' listener, which is an implementation detail (one listener, added by the
 *   constructor): `listeners()` and `removeListener()` are public, the listener's role is not.
 *   If a Node release changes it, the throw below says so at start, not per request.
 * - There is no public h2c-and-HTTP/1.1-on-one-port server: `allowHTTP1` exists only for TLS.
 * A server that is handed its sockets anyway (a fixed listener whose protocol the catalog
 * decides) gets the first head of each HTTP/1.1 connection timed here instead.
 */
/** What takes the connections that chose HTTP/2: node:http2's server made on demand, or the outbound's own (outbound-h2.ts). */
export interface H2Acceptor {
  accept(socket: Duplex): void;
  /** Closes every HTTP/2 connection it holds (the listener's closeAllConnections). */
  destroySessions(): void;
}

export function servePriorKnowledgeH2(http1: HttpServer, h2: H2Acceptor, firstBytesTimeoutMs: number): void {
  const [http1Accept] = http1.listeners('connection') as ((socket: Socket) => void)[];
  if (!http1Accept) throw new Error('the HTTP/1.1 server has no connection handler to share');
  http1.removeListener('connection', http1Accept);
  const undecided = new Set<Socket>();
  const firstHeads = new FirstHeads(http1, firstBytesTimeoutMs);
  // h1-server.ts times every head itself, listening or not.
  const ownHeads = timesOwnHeads in http1Accept;

  http1.prependListener('connection', (socket: Socket) => {
    undecided.add(socket);
    let seen: Buffer = Buffer.alloc(0);
    // A connection that says nothing is closed as the HTTP/1.1 server would close a silent head.
    const timer = setTimeout(() => socket.destroy(), firstBytesTimeoutMs);
    const done = () => {
      clearTimeout(timer);
      undecided.delete(socket);
      socket.removeListener('data', onData);
      socket.removeListener('error', onError);
      socket.removeListener('end', onError);
    };
    const onError = () => {
      done();
      socket.destroy();
    };
    const onData = (chunk: Buffer) => {
      seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
      const protocol = sniffPreface(seen);
      if (protocol === 'undecided') return;
      done();
      socket.pause();
      socket.unshift(seen);
      if (protocol === 'h2') return void h2.accept(socket);
      http1Accept.call(http1, socket);
      if (!http1.listening && !ownHeads) firstHeads.arm(socket);
      socket.resume();
    };
    socket.on('data', onData);
    socket.once('error', onError);
    socket.once('end', onError);
  });

  // The HTTP/1.1 server's closeAllConnections knows only its own connections.
  alsoOnCloseAll(http1, () => {
    for (const socket of undecided) socket.destroy();
    h2.destroySessions();
  });
}

/**
 * The inbound's counterpart: TLS connections whose ALPN chose `h2` go to `h2`; every other one
 * (ALPN http/1.1 or none, as from a gateway probe or openssl) to the HTTPS server's own handler.
 * The HTTPS server stays the listener, so its HTTP/1.1 behaviour is exactly what it was.
 *
 * The public API for this, `http2.createSecureServer({ allowHTTP1: true })`, was tried (Node
 * 20.20): its HTTP/1.1 side ignores `headersTimeout` (a silent connection stayed open past it)
 * and it has no `closeAllConnections()`. So, as above, the HTTPS server's own
 * 'secureConnection' listener is taken and called for connections that did not choose h2; the
 * h2 ones are injected into the HTTP/2 server through its documented 'connection' event.
 */
export function serveAlpnH2(https: HttpsServer, h2: H2Acceptor): void {
  const [http1Accept] = https.listeners('secureConnection') as ((socket: TLSSocket) => void)[];
  if (!http1Accept) throw new Error('the HTTPS server has no connection handler to share');
  https.removeListener('secureConnection', http1Accept);
  https.on('secureConnection', (socket: TLSSocket) => {
    if (socket.alpnProtocol === 'h2') h2.accept(socket);
    else http1Accept.call(https, socket);
  });
  const closeAll = https.closeAllConnections.bind(https);
  https.closeAllConnections = () => {
    closeAll();
    h2.destroySessions();
  };
}

/**
 * `timeouts.requestHeaders` for an HTTP/1.1 server that does not listen (Node does not time its
 * heads, above): each handed-over connection's first head must arrive in time, else 408 (the
 * same named error as Node's own check gives, request-head-timeout.ts). Later heads on a kept
 * connection are bounded by its keep-alive timeout, which Node does apply.
 */
export class FirstHeads {
  private readonly timers = new Map<Duplex, NodeJS.Timeout>();
  private listening = false;

  constructor(private readonly http1: HttpServer, private readonly ms: number) {}

  arm(socket: Socket): void {
    if (!this.listening) {
      // Only servers that are handed sockets pay for these listeners.
      this.listening = true;
      const arrived = (req: { socket: Duplex | null }) => { if (req.socket) this.clear(req.socket); };
      this.http1.on('request', arrived);
      this.http1.on('upgrade', arrived);
      this.http1.on('connect', arrived);
    }
    this.timers.set(socket, setTimeout(() => {
      this.timers.delete(socket);
      answerHeadTimeout(socket);
    }, this.ms));
    socket.once('close', () => this.clear(socket));
  }

  private clear(socket: Duplex): void {
    const timer = this.timers.get(socket);
    if (timer === undefined) return;
    clearTimeout(timer);
    this.timers.delete(socket);
  }
}
