import type { Duplex } from 'node:stream';
import { H2Connection, type LocalSettings } from './connection.js';

/**
 * Kept client connections of ours, one per key (a destination): HTTP/2 multiplexes every stream
 * on one connection, so one per destination replaces a pool, and its handshake is paid once.
 * For the sidecar's HTTP/2 hops (Upstreams.h2Connection, InboundApp.h2Connection): a
 * connection that fails, closes or receives GOAWAY is
 * forgotten, and the next stream opens a new one; one idle for `idleMs` (no byte either way) is
 * closed gracefully, its streams finishing first.
 */
export class H2ClientConnections {
  /** Connections being made, and the ready one, per key. */
  private readonly connecting = new Map<string, Promise<H2Connection>>();
  private readonly ready = new Map<string, H2Connection>();
  /** Every connection not yet closed, with the key it serves. */
  private readonly live = new Map<H2Connection, string>();

  constructor(private readonly idleMs: number, private readonly settings?: Partial<LocalSettings>) {}

  /**
   * The connection for `id`, or a new one over the socket `open` makes: resolves once that
   * socket is ready (`readyEvent`: 'secureConnect' for TLS, whose identity checks run in the
   * handshake; 'connect' for plain TCP) and, over TLS, chose h2 by ALPN; rejects with the
   * socket's own error (its code tells a retry policy it was a connect failure), or after
   * `connectTimeoutMs` with UND_ERR_CONNECT_TIMEOUT. A connection that received GOAWAY or
   * closed is not handed out again.
   */
  get(id: string, open: () => Duplex, readyEvent: 'secureConnect' | 'connect', connectTimeoutMs: number): Promise<H2Connection> {
    const ready = this.ready.get(id);
    if (ready?.usable) return Promise.resolve(ready);
    if (ready) this.ready.delete(id);
    const connecting = this.connecting.get(id);
    if (connecting) return connecting;
    const made = this.connect(id, open(), readyEvent, connectTimeoutMs);
    this.connecting.set(id, made);
    const settle = () => {
      if (this.connecting.get(id) === made) this.connecting.delete(id);
    };
    made.then(settle, settle);
    return made;
  }

  private connect(id: string, socket: Duplex, readyEvent: string, connectTimeoutMs: number): Promise<H2Connection> {
    return new Promise<H2Connection>((resolve, reject) => {
      const timer = setTimeout(() => {
        socket.destroy(Object.assign(new Error(`no HTTP/2 connection within ${connectTimeoutMs} ms`), { code: 'UND_ERR_CONNECT_TIMEOUT' }));
      }, connectTimeoutMs);
      const failed = (err: Error) => {
        clearTimeout(timer);
        reject(err);
      };
      const closedEarly = () => failed(Object.assign(new Error('the connection closed before it was ready'), { code: 'ECONNRESET' }));
      socket.once('error', failed);
      socket.once('close', closedEarly);
      socket.once(readyEvent, () => {
        clearTimeout(timer);
        socket.removeListener('error', failed);
        socket.removeListener('close', closedEarly);
        const alpn = (socket as { alpnProtocol?: string | false }).alpnProtocol;
        if (readyEvent === 'secureConnect' && alpn !== 'h2') {
          socket.destroy();
          reject(Object.assign(new Error(`the destination did not agree to HTTP/2 (ALPN: ${alpn || 'none'})`), { code: 'ERR_HTTP2_ALPN' }));
          return;
        }
        const connection: H2Connection = new H2Connection(socket, { role: 'client', settings: this.settings, onClose: () => this.forget(id, connection) });
        this.live.set(connection, id);
        this.ready.set(id, connection);
        (socket as { setTimeout?: (ms: number, cb: () => void) => void }).setTimeout?.(this.idleMs, () => connection.close());
        resolve(connection);
      });
    });
  }

  private forget(id: string, connection: H2Connection): void {
    this.live.delete(connection);
    if (this.ready.get(id) === connection) this.ready.delete(id);
  }

  /** New credentials or shutdown: no new stream goes to the current connections; `graceful` lets theirs finish. */
  closeAll(graceful: boolean): void {
    this.ready.clear();
    this.connecting.clear();
    for (const connection of [...this.live.keys()]) {
      if (graceful) connection.close();
      else connection.destroy();
    }
    if (!graceful) this.live.clear();
  }

  /** The connections whose key `matches`: forgotten (no new stream goes to them) and closed gracefully. */
  closeWhere(matches: (id: string) => boolean): void {
    for (const connection of this.takeWhere(matches)) connection.close();
  }

  /** The connections whose key `matches` go to an unhealthy destination: ended now, their streams reset. */
  destroyWhere(matches: (id: string) => boolean): void {
    for (const connection of this.takeWhere(matches)) connection.destroy();
  }

  private takeWhere(matches: (id: string) => boolean): H2Connection[] {
    const taken: H2Connection[] = [];
    for (const [connection, id] of [...this.live]) {
      if (!matches(id)) continue;
      if (this.ready.get(id) === connection) this.ready.delete(id);
      this.live.delete(connection);
      taken.push(connection);
    }
    return taken;
  }
}
