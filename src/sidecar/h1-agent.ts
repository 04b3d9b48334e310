import type { Dispatcher } from 'undici';
import { wrapHandler, type Connector, type ConnectorOptions } from '../core/undici.js';
import { failHandler } from './h1-connection.js';
import { OwnDispatcher } from './own-dispatcher.js';
import { UpstreamPool } from './upstream-pool.js';

export interface H1AgentOptions {
  /** TLS options (or a connector) for every origin's connections. */
  connect: ConnectorOptions | Connector;
  /** Applied to a request that sets none (undici's own defaults are 300 s each). */
  headersTimeout?: number;
  bodyTimeout?: number;
  /** Keep-alive connections per origin (default 4). */
  connections?: number;
  /**
   * An idle connection is closed after this (default 60 s; a shorter server hint wins, and the
   * federation API's is 72 s). Its calls come every 5 s (traffic reports) to 30 s (trust): with
   * undici's 4 s, each report found its connection closed and paid a new TLS handshake, on the
   * sidecar and on the federation, so an idle mesh of 1,000 sidecars cost its federation 200
   * handshakes a second.
   */
  idleMs?: number;
}

const defaultIdleMs = 60_000;

/**
 * Requests to whatever origin they name, each origin through an UpstreamPool of its own
 * (h1-connection.ts: Node's own HTTP/1.1 parser): what sidecars and gateways use to call the
 * federation API (certificates, trust, catalog, reports). It replaces undici's Agent there, so
 * that a proxy process never loads undici's client, whose llhttp WebAssembly module alone
 * costs about 4 MB of RSS once compiled (docs/benchmark-history.md, "Memory results").
 * undici's request API (`request()` in src/core/undici.ts) works on it as on any dispatcher.
 */
export class H1Agent extends OwnDispatcher {
  private readonly pools = new Map<string, UpstreamPool>();
  private closed = false;

  constructor(private readonly options: H1AgentOptions) {
    super();
  }

  override dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    if (this.closed) {
      failHandler(wrapHandler.wrap(handler), Object.assign(new Error('the agent is closed'), { code: 'UND_ERR_CLOSED' }));
      return false;
    }
    const origin = String(opts.origin);
    let pool = this.pools.get(origin);
    if (!pool) {
      pool = new UpstreamPool(origin, {
        connections: this.options.connections ?? 4, maxConnecting: 2, idleMs: this.options.idleMs ?? defaultIdleMs, connect: this.options.connect,
      });
      this.pools.set(origin, pool);
    }
    const { headersTimeout, bodyTimeout } = this.options;
    return pool.dispatch({
      ...opts,
      ...(opts.headersTimeout === undefined && headersTimeout !== undefined ? { headersTimeout } : {}),
      ...(opts.bodyTimeout === undefined && bodyTimeout !== undefined ? { bodyTimeout } : {}),
    }, handler);
  }

  protected closeAll(): Promise<void> {
    this.closed = true;
    return Promise.all([...this.pools.values()].map((p) => p.close())).then(() => undefined);
  }

  protected destroyAll(err: Error | null): Promise<void> {
    this.closed = true;
    return Promise.all([...this.pools.values()].map((p) => p.destroy(err))).then(() => undefined);
  }
}
