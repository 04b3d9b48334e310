import { createRequire } from 'node:module';
import type * as Http2 from 'node:http2';
import type { Duplex } from 'node:stream';
import { bindWithoutAsyncResourceProperty } from './async-resource-bind.js';

let loaded: typeof Http2 | undefined;

/**
 * node:http2, loaded the first time a sidecar needs it: a connection that chose HTTP/2, an
 * HTTP/2 session to another sidecar or to an app. Node's HTTP/2 modules and their nghttp2
 * binding are about 1.3 MB of RSS, which a sidecar whose apps speak only HTTP/1.1 never pays
 * (docs/benchmarks.md, "What still holds the memory"). The RST_STREAM and GOAWAY codes the
 * sidecar sends are in h2-codes.ts, so the modules that send them load without it.
 */
export function http2(): typeof Http2 {
  if (loaded) return loaded;
  // Each HTTP/2 request binds an AsyncResource: without the deprecated property, it costs less (async-resource-bind.ts).
  bindWithoutAsyncResourceProperty();
  loaded = createRequire(import.meta.url)('node:http2') as typeof Http2;
  return loaded;
}

/**
 * An HTTP/2 server that is made, with its listeners (`setUp`), when the first connection is
 * handed to it. Its listener (the HTTP/1.1 server that sniffs a prior-knowledge preface, or the
 * TLS server whose ALPN chose h2) stays the one that accepts connections.
 */
export class OnDemandH2Server {
  private server: Http2.Http2Server | undefined;
  private readonly sessions = new Set<Http2.ServerHttp2Session>();

  constructor(private readonly setUp: (server: Http2.Http2Server) => void) {}

  /** Hands over a connection that chose HTTP/2; the server is made now if it was not. */
  accept(socket: Duplex): void {
    this.get().emit('connection', socket);
  }

  /** The server, once a connection has made it. */
  get made(): Http2.Http2Server | undefined {
    return this.server;
  }

  /** Sends every session open now a GOAWAY: the streams it carries finish, no new one is taken. */
  closeSessions(): void {
    for (const session of this.sessions) session.close();
  }

  /** Closes every session open now (the listener's closeAllConnections calls it). */
  destroySessions(): void {
    for (const session of this.sessions) session.destroy();
  }

  private get(): Http2.Http2Server {
    if (this.server) return this.server;
    const server = http2().createServer();
    server.on('session', (session: Http2.ServerHttp2Session) => {
      this.sessions.add(session);
      session.once('close', () => this.sessions.delete(session));
    });
    this.setUp(server);
    this.server = server;
    return server;
  }
}
