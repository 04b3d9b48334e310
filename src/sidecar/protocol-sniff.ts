import type { Server as HttpServer } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Http2Server, ServerHttp2Session } from 'node:http2';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { alsoOnCloseAll } from '../core/open-sockets.js';
import { sniffPreface } from './h2-preface.js';

/**
 * Lets one listening HTTP/1.1 server also serve HTTP/2 with prior knowledge (h2c): each accepted
 * connection's first bytes are read; the HTTP/2 preface sends the connection to `h2`, anything
 * else to the HTTP/1.1 server's own connection handler, with the bytes put back first.
 *
 * The HTTP/1.1 server keeps listening and keeps its own handler, so everything it did stays as
 * it was (its header and idle timeouts, its connection tracking, upgrade and CONNECT events).
 * Node's HTTP/2 session reads bytes already buffered on the socket when it starts; the HTTP/1.1
 * parser gets them when the socket is resumed.
 */
export function servePriorKnowledgeH2(http1: HttpServer, h2: Http2Server, firstBytesTimeoutMs: number): void {
  const [http1Accept] = http1.listeners('connection') as ((socket: Socket) => void)[];
  if (!http1Accept) throw new Error('the HTTP/1.1 server has no connection handler to share');
  http1.removeListener('connection', http1Accept);
  const undecided = new Set<Socket>();
  const sessions = trackSessions(h2);

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
      if (protocol === 'h2') return void h2.emit('connection', socket);
      http1Accept.call(http1, socket);
      socket.resume();
    };
    socket.on('data', onData);
    socket.once('error', onError);
    socket.once('end', onError);
  });

  // The HTTP/1.1 server's closeAllConnections knows only its own connections.
  alsoOnCloseAll(http1, () => {
    for (const socket of undecided) socket.destroy();
    for (const session of sessions) session.destroy();
  });
}

/**
 * The inbound's counterpart: TLS connections whose ALPN chose `h2` go to `h2`; every other one
 * (ALPN http/1.1 or none, as from a gateway probe or openssl) to the HTTPS server's own handler.
 * The HTTPS server stays the listener, so its HTTP/1.1 behaviour is exactly what it was.
 */
export function serveAlpnH2(https: HttpsServer, h2: Http2Server): void {
  const [http1Accept] = https.listeners('secureConnection') as ((socket: TLSSocket) => void)[];
  if (!http1Accept) throw new Error('the HTTPS server has no connection handler to share');
  https.removeListener('secureConnection', http1Accept);
  const sessions = trackSessions(h2);
  https.on('secureConnection', (socket: TLSSocket) => {
    if (socket.alpnProtocol === 'h2') h2.emit('connection', socket);
    else http1Accept.call(https, socket);
  });
  const closeAll = https.closeAllConnections.bind(https);
  https.closeAllConnections = () => {
    closeAll();
    for (const session of sessions) session.destroy();
  };
}

function trackSessions(h2: Http2Server): Set<ServerHttp2Session> {
  const sessions = new Set<ServerHttp2Session>();
  h2.on('session', (session: ServerHttp2Session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
  });
  return sessions;
}
