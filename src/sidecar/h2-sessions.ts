import type { ClientHttp2Session } from 'node:http2';

/** The last-stream-id of the GOAWAY each session received: streams above it were not processed. */
const goaways = new WeakMap<ClientHttp2Session, number>();

/** The last-stream-id of a GOAWAY `session` received, undefined if none came (retry-policy.ts h2StreamUnprocessed). */
export function goawayLastStreamId(session: ClientHttp2Session): number | undefined {
  return goaways.get(session);
}

/**
 * Kept HTTP/2 client sessions, one per key: HTTP/2 multiplexes every stream on one connection,
 * so one session per destination replaces a pool of connections, and its handshake is paid once.
 * A session that fails, closes or receives GOAWAY is forgotten, and the next stream opens a new
 * one; one that stays idle for `idleMs` is closed gracefully (its streams finish first).
 */
export class H2Sessions {
  private readonly sessions = new Map<string, Promise<ClientHttp2Session>>();
  /** Every session not yet closed, with the key it serves. */
  private readonly live = new Map<ClientHttp2Session, string>();

  constructor(private readonly idleMs: number) {}

  /**
   * The session for `id`, or a new one from `open`. Resolves once it is connected (TLS
   * handshake and identity check passed); rejects with the connection's own error (its code
   * tells retry-policy.ts it was a connect failure) or after `connectTimeoutMs`.
   */
  get(id: string, open: () => ClientHttp2Session, connectTimeoutMs: number): Promise<ClientHttp2Session> {
    let session = this.sessions.get(id);
    if (!session) {
      session = this.connect(id, open(), connectTimeoutMs);
      this.sessions.set(id, session);
    }
    return session;
  }

  private connect(id: string, session: ClientHttp2Session, connectTimeoutMs: number): Promise<ClientHttp2Session> {
    this.live.set(session, id);
    const forget = () => {
      this.live.delete(session);
      if (this.sessions.get(id) === pending) this.sessions.delete(id);
    };
    const pending = new Promise<ClientHttp2Session>((resolve, reject) => {
      const timer = setTimeout(() => {
        session.destroy(Object.assign(new Error(`no HTTP/2 connection within ${connectTimeoutMs} ms`), { code: 'UND_ERR_CONNECT_TIMEOUT' }));
      }, connectTimeoutMs);
      session.once('connect', () => {
        clearTimeout(timer);
        resolve(session);
      });
      session.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      session.once('close', () => {
        clearTimeout(timer);
        reject(Object.assign(new Error('the HTTP/2 connection closed before it was ready'), { code: 'ECONNRESET' }));
      });
    });
    // Errors after connect end the session's streams (each attempt sees its own); here they only retire the session.
    session.on('error', forget);
    session.once('close', forget);
    // Node emits 'goaway' before it closes the streams the GOAWAY refused, so their attempts can tell.
    session.once('goaway', (_code: number, lastStreamId: number) => {
      goaways.set(session, lastStreamId);
      forget();
    });
    session.setTimeout(this.idleMs, () => session.close());
    pending.catch(() => undefined);
    return pending;
  }

  /** New credentials or shutdown: no new stream goes to the current sessions; `graceful` lets theirs finish. */
  closeAll(graceful: boolean): void {
    this.sessions.clear();
    for (const session of this.live.keys()) {
      if (graceful) session.close();
      else session.destroy();
    }
    if (!graceful) this.live.clear();
  }

  /**
   * Every session whose key `matches` goes to a destination that left the catalog: no new stream
   * goes to it, and the streams open on it finish first (Node's graceful close).
   */
  closeWhere(matches: (id: string) => boolean): void {
    for (const session of this.takeWhere(matches)) session.close();
  }

  /**
   * The destination of every session whose key `matches` was found unhealthy: destroy them with
   * `err`, so their open streams fail now as resets (retried elsewhere when idempotent) instead
   * of waiting for an answer that will not come.
   */
  destroyWhere(matches: (id: string) => boolean, err: Error): void {
    for (const session of this.takeWhere(matches)) session.destroy(err);
  }

  /** Forgets every session whose key `matches` (no new stream goes to it) and returns them, for the caller to end. */
  private takeWhere(matches: (id: string) => boolean): ClientHttp2Session[] {
    const taken: ClientHttp2Session[] = [];
    for (const [session, id] of [...this.live]) {
      if (!matches(id)) continue;
      this.sessions.delete(id);
      this.live.delete(session);
      taken.push(session);
    }
    return taken;
  }
}
