import { EventEmitter } from 'node:events';
import { describeError, IsthmusError } from '../core/errors.js';
import { keys } from '../core/keys.js';
import { silentLogger, type Logger } from '../core/log.js';
import { CatalogChanges, staleAfterMs } from '../federation/catalog-changes.js';
import { StoreMirror } from '../federation/mirror.js';
import { FederationStore, type PrefixWatch } from '../federation/store.js';
import type { EtcdTlsFiles } from '../federation/etcd-tls.js';
import type { Catalog } from '../model/catalog.js';
import type { DashboardSource } from './server.js';

export interface StoreSourceOptions {
  /** etcd client URL(s), as `--etcd` / ISTHMUS_ETCD give them. */
  endpoints: string[];
  /** Who serves the page; the page's "served by" adds the etcd address. Default `isthmus dash`. */
  name?: string;
  /** etcd's CA and this reader's client certificate (FederationStore.connect). */
  tls?: EtcdTlsFiles;
  /**
   * The federations' lease TTL (`federation.leaseTtl`, 15 s unless a cluster config changes it):
   * a cluster whose heartbeat is unseen for two of them is shown down, as its peers see it.
   */
  leaseTtlSeconds?: number;
  logger?: Logger;
  /** How long to try etcd at start (FederationStore.connect) before giving up. */
  dialTimeoutMs?: number;
  /** How long the first full list of `/isthmus/v1/` may take once etcd answered. */
  firstListTimeoutMs?: number;
  /** How often staleness is re-judged and etcd asked for its status. */
  tickMs?: number;
  /** After an outage, how long to keep the last catalog while the watch catches up. */
  catchUpGraceMs?: number;
}

export interface StoreSourceHealth {
  etcd: 'reachable' | 'unreachable';
  /** ISO time etcd stopped answering; present while it does not. */
  unreachableSince?: string;
  /** The last etcd revision the mirror reflects. */
  revision: number;
}

const federationLeaseTtlSeconds = 15;

/**
 * A read-only dashboard source straight from etcd, for `isthmus dash`: the same list-then-watch
 * of the whole `/isthmus/v1/` prefix into a StoreMirror, and the same catalog, as a federation
 * service keeps — without a lease, without writing a key, without being a cluster.
 *
 * While etcd is unreachable the catalog is frozen at the last state instead of letting every
 * cluster's heartbeat go stale (they are not down, we just cannot see them); the page says so in
 * its "served by" line. When etcd answers again, the catalog stays frozen until the watch has
 * caught up to etcd's revision at that moment (or a short grace has passed, for a store that no
 * one writes to), so the page does not flash every cluster down and up again.
 */
export class StoreSource extends EventEmitter implements DashboardSource {
  readonly mirror = new StoreMirror();
  catalog: Catalog = { revision: 0, clusters: [], services: [], invalidKeys: [] };
  readonly #store: FederationStore;
  readonly #log: Logger;
  readonly #name: string;
  readonly #etcd: string;
  readonly #staleAfterMs: number;
  readonly #catchUpGraceMs: number;
  readonly #changes = new CatalogChanges();
  #watch: PrefixWatch | undefined;
  #timer: NodeJS.Timeout | undefined;
  #checking: Promise<void> | undefined;
  #unreachableSince: number | undefined;
  /** After an outage: the store revision the watch must reach, and until when we wait for it. */
  #catchUp: { revision: number; until: number } | undefined;
  #closed = false;

  /** Connects, lists the prefix, and follows it. Throws ISTHMUS_ERR_ETCD_UNREACHABLE if etcd does not answer. */
  static async open(opts: StoreSourceOptions): Promise<StoreSource> {
    const logger = opts.logger ?? silentLogger;
    // The watch warns at every failed retry; during an outage one line saying so (ours) is enough.
    const storeLogger = logger.isLevelEnabled('debug') ? logger : logger.child({}, { level: 'error' });
    const store = await FederationStore.connect({ endpoints: opts.endpoints, tls: opts.tls, logger: storeLogger, dialTimeoutMs: opts.dialTimeoutMs ?? 3_000 });
    const source = new StoreSource(store, opts, logger);
    try {
      await source.#start(opts.firstListTimeoutMs ?? 10_000, opts.tickMs ?? 1_000);
    } catch (err) {
      await source.close();
      throw err;
    }
    return source;
  }

  /** The store the manager view writes policies to (with this reader's etcd user: it needs write access to `/policies/`). */
  get store(): FederationStore {
    return this.#store;
  }

  private constructor(store: FederationStore, opts: StoreSourceOptions, logger: Logger) {
    super();
    this.#store = store;
    this.#log = logger.child({ component: 'dash-source' });
    this.#name = opts.name ?? 'isthmus dash';
    this.#etcd = opts.endpoints.map((e) => e.replace(/^https?:\/\//, '').replace(/\/+$/, '')).join(', ');
    this.#staleAfterMs = staleAfterMs(opts.leaseTtlSeconds ?? federationLeaseTtlSeconds);
    this.#catchUpGraceMs = opts.catchUpGraceMs ?? 5_000;
  }

  /** What the page shows as "served by": who we are, where we read, and whether that is current. */
  get cluster(): string {
    if (this.#unreachableSince === undefined) return `${this.#name} (etcd ${this.#etcd})`;
    return `${this.#name} (etcd ${this.#etcd} unreachable since ${isoSeconds(this.#unreachableSince)}; showing the last state)`;
  }

  health(): StoreSourceHealth {
    return {
      etcd: this.#unreachableSince === undefined ? 'reachable' : 'unreachable',
      ...(this.#unreachableSince === undefined ? {} : { unreachableSince: isoSeconds(this.#unreachableSince) }),
      revision: this.mirror.revision,
    };
  }

  /** Stops the watch and the timer and closes the etcd connection. Listeners get no more events. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    await this.#watch?.close();
    // Closing the client fails a status call still waiting on a dead etcd at once.
    await this.#store.close().catch(() => undefined);
    await this.#checking;
    this.removeAllListeners();
  }

  async #start(firstListTimeoutMs: number, tickMs: number): Promise<void> {
    let lastError: Error | undefined;
    let listed!: () => void;
    const firstList = new Promise<void>((resolve) => { listed = resolve; });
    this.#watch = this.#store.watchPrefix(keys.all, {
      onReset: (records, revision) => {
        this.mirror.reset(records, revision, Date.now());
        this.#refresh();
        listed();
      },
      onEvents: (events, revision) => {
        this.mirror.apply(events, revision, Date.now());
        this.#refresh();
      },
      onError: (err) => {
        lastError = err;
        this.#log.debug({ err: describeError(err) }, 'etcd watch interrupted; resuming');
      },
    });
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), firstListTimeoutMs); });
    const outcome = await Promise.race([firstList, timedOut]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      throw new IsthmusError(
        'ISTHMUS_ERR_ETCD_UNREACHABLE',
        `etcd at ${this.#etcd} answered but listing ${keys.all} did not finish within ${firstListTimeoutMs} ms` +
          `${lastError ? ` (${describeError(lastError)})` : ''}. Check that etcd is healthy.`,
        { cause: lastError, details: { endpoints: this.#etcd } },
      );
    }
    // Heartbeats go stale with time alone, so the catalog is re-judged every tick, as a federation does.
    this.#timer = setInterval(() => this.#tick(), tickMs);
    this.#timer.unref();
  }

  #tick(): void {
    this.#refresh();
    this.#checking ??= this.#checkEtcd().finally(() => { this.#checking = undefined; });
  }

  async #checkEtcd(): Promise<void> {
    try {
      const { revision } = await this.#store.status();
      if (this.#closed || this.#unreachableSince === undefined) return;
      this.#log.info({ etcd: this.#etcd, revision }, 'etcd answers again; catching up');
      this.#unreachableSince = undefined;
      this.#catchUp = { revision, until: Date.now() + this.#catchUpGraceMs };
    } catch (err) {
      if (this.#closed || this.#unreachableSince !== undefined) return;
      this.#unreachableSince = Date.now();
      this.#log.warn({ etcd: this.#etcd, err: describeError(err) }, 'etcd unreachable; showing the last state and retrying');
    }
  }

  /** Rebuilds the catalog unless etcd is out of reach or the watch is still catching up. */
  #refresh(): void {
    if (this.#closed || this.#unreachableSince !== undefined) return;
    if (this.#catchUp) {
      if ((this.#watch?.revision ?? 0) < this.#catchUp.revision && Date.now() < this.#catchUp.until) return;
      this.#catchUp = undefined;
    }
    const catalog = this.#changes.next(this.mirror, Date.now(), this.#staleAfterMs);
    if (!catalog) return;
    this.catalog = catalog;
    this.emit('catalog', catalog);
  }
}

function isoSeconds(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');
}
