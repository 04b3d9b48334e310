import { Range, type IDuplexStream, type IKeyValue, type IWatchRequest, type IWatchResponse } from 'etcd3';
import type { Logger } from 'pino';
import type { StoredRecord, StoreEvent } from './store.js';
import { Backoff } from '../core/backoff.js';

export interface PrefixWatch {
  close(): Promise<void>;
  /** Last revision whose changes have been handed to the handlers (the list's, then each batch's). */
  readonly revision: number;
}

/**
 * Handlers are called one at a time, in revision order, and never concurrently: keep them
 * synchronous (enqueue and return). A handler that throws is reported to onError and the watch
 * goes on.
 */
export interface PrefixWatchHandlers {
  onReset: (records: StoredRecord[], revision: number) => void;
  onEvents: (events: StoreEvent[], revision: number) => void;
  onError?: (err: Error) => void;
}

/** What a watch needs from the store, passed in so this file holds no client of its own. */
export interface WatchPort {
  range(prefix: string): Promise<{ kvs: IKeyValue[]; revision: number }>;
  /** Throws ISTHMUS_ERR_ETCD_RECORD_INVALID for a value that is not one of our records. */
  decode(kv: IKeyValue): StoredRecord;
  openStream(): Promise<IDuplexStream<IWatchRequest, IWatchResponse>>;
  logger: Logger;
  onClosed?: () => void;
}

type StreamEnd = { relist: boolean; established: boolean };

const retryInitialMs = 100;
const retryMaxMs = 2_000;

/**
 * List-then-watch over one prefix (docs/federation.md, "Watches").
 *
 * We drive a raw etcd watch stream instead of etcd3's Watcher because the Watcher moves its resume
 * revision to the *current* store revision as soon as a (re)created watch is acknowledged, before
 * the catch-up events arrive; a second disconnect in that window would skip them. It also reports
 * compaction only as an anonymous "Watcher canceled" error. Here the resume point is the last
 * revision actually delivered, and a compaction (or any cancel) leads to a full re-list.
 *
 * Consumers keep a mirror of the *valid* records under the prefix: a record that cannot be decoded
 * is left out of a reset and turned into a delete event, and reported to onError.
 */
export class PrefixWatcher implements PrefixWatch {
  readonly #prefix: string;
  readonly #handlers: PrefixWatchHandlers;
  readonly #port: WatchPort;
  readonly #log: Logger;
  readonly #done: Promise<void>;
  #revision = 0;
  #closed = false;
  /** Ends whatever the run loop is waiting on (a stream or a pause). */
  #interrupt: (() => void) | undefined;

  constructor(prefix: string, handlers: PrefixWatchHandlers, port: WatchPort) {
    this.#prefix = prefix;
    this.#handlers = handlers;
    this.#port = port;
    this.#log = port.logger.child({ watch: prefix });
    this.#done = this.#run();
  }

  get revision(): number {
    return this.#revision;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#interrupt?.();
    await this.#done;
    this.#port.onClosed?.();
  }

  async #run(): Promise<void> {
    let relist = true;
    const backoff = new Backoff({ initialMs: retryInitialMs, maxMs: retryMaxMs });
    while (!this.#closed) {
      try {
        if (relist) {
          await this.#reset();
          relist = false;
        }
        const end = await this.#follow();
        relist = end.relist;
        if (end.established) backoff.reset();
      } catch (err) {
        this.#report(err);
      }
      if (this.#closed) break;
      await this.#pause(backoff.next());
    }
  }

  async #reset(): Promise<void> {
    const { kvs, revision } = await this.#port.range(this.#prefix);
    if (this.#closed) return;
    const records: StoredRecord[] = [];
    for (const kv of kvs) {
      try {
        records.push(this.#port.decode(kv));
      } catch (err) {
        this.#report(err);
      }
    }
    this.#revision = revision;
    this.#deliver(() => this.#handlers.onReset(records, revision));
  }

  /** Follows one watch stream from the last delivered revision until it ends. */
  async #follow(): Promise<StreamEnd> {
    if (this.#closed) return { relist: false, established: false };
    const stream = await this.#port.openStream();
    const range = Range.prefix(this.#prefix);
    return await new Promise<StreamEnd>((resolve) => {
      let settled = false;
      let established = false;
      const finish = (relist: boolean): void => {
        if (settled) return;
        settled = true;
        this.#interrupt = undefined;
        // end() first: etcd3 resets every channel of the host when a still-writable stream
        // fails, and our own cancel would otherwise count as such a failure. end() alone does not
        // release the watch on etcd 3.4, so cancel() as well.
        stream.end();
        stream.cancel();
        resolve({ relist, established });
      };
      this.#interrupt = () => finish(false);
      if (this.#closed) return finish(false);

      stream.on('data', (res) => {
        if (settled) return;
        if (res.created) {
          // A store whose revision is behind what we already delivered was restored or replaced:
          // resuming would silently wait for revisions that mean something else there.
          if (res.canceled || Number(res.header.revision) < this.#revision) {
            this.#log.warn({ reason: res.cancel_reason, storeRevision: res.header.revision, seen: this.#revision }, 'watch not resumable; re-listing');
            return finish(true);
          }
          established = true;
          return;
        }
        if (res.canceled) {
          // etcd cancels a watch whose start revision was compacted away (compact_revision set)
          // and, rarely, for other reasons; either way only a full re-list is safe.
          this.#log.info({ compactRevision: res.compact_revision, reason: res.cancel_reason }, 'watch canceled by etcd; re-listing');
          return finish(true);
        }
        this.#onResponse(res);
      });
      stream.on('error', (err) => {
        if (!settled) this.#log.debug({ err }, 'watch stream failed; resuming');
        finish(false);
      });
      stream.on('end', () => finish(false));
      stream.write({
        create_request: { key: range.start, range_end: range.end, start_revision: this.#revision + 1, progress_notify: true },
      });
    });
  }

  #onResponse(res: IWatchResponse): void {
    if (res.events.length === 0) {
      // A progress notification: everything up to header.revision has been sent (etcd only
      // sends these to watchers that have caught up).
      this.#revision = Math.max(this.#revision, Number(res.header.revision));
      return;
    }
    // The revision comes from the events, not the header: while catching up, etcd sends the
    // current store revision in the header with only the first part of the backlog.
    const events: StoreEvent[] = [];
    let revision = this.#revision;
    for (const ev of res.events) {
      const modRevision = Number(ev.kv.mod_revision);
      revision = Math.max(revision, modRevision);
      const key = ev.kv.key.toString();
      if (ev.type === 'Delete') {
        events.push({ type: 'delete', key, modRevision });
        continue;
      }
      try {
        events.push({ type: 'put', record: this.#port.decode(ev.kv) });
      } catch (err) {
        this.#report(err);
        events.push({ type: 'delete', key, modRevision });
      }
    }
    this.#revision = revision;
    this.#deliver(() => this.#handlers.onEvents(events, revision));
  }

  #deliver(call: () => void): void {
    try {
      call();
    } catch (err) {
      this.#report(new Error(`a watch handler for ${this.#prefix} threw`, { cause: err }));
    }
  }

  #report(err: unknown): void {
    const error = err instanceof Error ? err : new Error(String(err));
    this.#log.warn({ err: error }, 'watch problem');
    try {
      this.#handlers.onError?.(error);
    } catch (inner) {
      this.#log.error({ err: inner }, 'watch onError handler threw');
    }
  }

  #pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#interrupt = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#interrupt = done;
    });
  }
}
