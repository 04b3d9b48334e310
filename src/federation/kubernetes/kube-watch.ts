import type { Logger } from '../../core/log.js';
import { describeError } from '../../core/errors.js';
import { metaOf } from './kube-objects.js';

/** What a watch needs from the API: a list (items and the list's resourceVersion) and a watch stream. */
export interface WatchSource {
  /** Shown in logs: `services`, `endpointslices in demo`, … */
  what: string;
  /** The collection's path, e.g. `/api/v1/namespaces/demo/services`. */
  path: string;
  list(): Promise<{ items: unknown[]; resourceVersion: string }>;
}

/** client-node's `Watch`: one streaming GET; `done` is called once, with the error that ended it or null. */
export interface WatchStream {
  watch(path: string, query: Record<string, string | number | boolean | undefined>, onEvent: (type: string, object: unknown) => void, done: (err: unknown) => void): Promise<AbortController>;
}

export interface KubeWatchStats { lists: number; watches: number; gone: number; errors: number }

/**
 * One kind's objects, kept up to date the way client-go's reflector keeps them: list once, then
 * watch from the list's resourceVersion; a watch that ends is resumed from the last
 * resourceVersion seen (events and bookmarks both advance it); "410 Gone" — the server no longer
 * has history that old — means list again. Errors back off exponentially with full jitter, so
 * many federations do not hammer a recovering API server in step. Only summaries are kept
 * (`summarize`), never whole objects.
 */
export class KubeWatch<T> {
  readonly items = new Map<string, T>();
  readonly stats: KubeWatchStats = { lists: 0, watches: 0, gone: 0, errors: 0 };
  resourceVersion = '';
  private stopped = false;
  private controller: AbortController | undefined;
  private sleeping: { timer: NodeJS.Timeout; wake: () => void } | undefined;
  private loop: Promise<void> | undefined;
  private markSynced!: () => void;
  /** Resolves after the first successful list. */
  readonly synced = new Promise<void>((resolve) => { this.markSynced = resolve; });

  constructor(private readonly opts: {
    source: WatchSource;
    stream: WatchStream;
    summarize: (raw: unknown) => T | undefined;
    onChange: () => void;
    log: Logger;
    backoff?: { baseMs: number; maxMs: number };
    /** The server ends a watch after this long (client-go picks 5–10 minutes at random). */
    timeoutSeconds?: () => number;
    random?: () => number;
  }) {}

  start(): void {
    this.loop ??= this.run();
  }

  /** Ends the stream and the loop; no request is left open and no timer left behind. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.controller?.abort();
    if (this.sleeping) {
      clearTimeout(this.sleeping.timer);
      this.sleeping.wake();
    }
    await this.loop;
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      try {
        if (this.resourceVersion === '') await this.relist();
        const outcome = await this.watchOnce();
        if (outcome === 'gone') {
          this.stats.gone += 1;
          this.opts.log.info({ watch: this.opts.source.what, resourceVersion: this.resourceVersion }, 'watch history expired (410 Gone); listing again');
          this.resourceVersion = '';
          continue;
        }
        // A watch that ends at once with nothing in it is a failure too, or a server that closes
        // every watch would make this loop spin.
        failures = outcome === 'empty' ? failures + 1 : 0;
        if (failures > 0) await this.sleep(backoffMs(failures, this.opts.backoff, this.opts.random));
      } catch (err) {
        if (this.stopped) break;
        if (statusOf(err) === 410) {
          this.stats.gone += 1;
          this.resourceVersion = '';
          continue;
        }
        failures += 1;
        this.stats.errors += 1;
        const delay = backoffMs(failures, this.opts.backoff, this.opts.random);
        this.opts.log.warn({ watch: this.opts.source.what, err: describeError(err), retryInMs: delay }, 'Kubernetes watch failed; retrying');
        await this.sleep(delay);
      }
    }
  }

  private async relist(): Promise<void> {
    const list = await this.opts.source.list();
    this.stats.lists += 1;
    this.items.clear();
    for (const raw of list.items) this.put(raw);
    this.resourceVersion = list.resourceVersion;
    this.opts.onChange();
    this.markSynced();
  }

  private put(raw: unknown): void {
    const summary = this.opts.summarize(raw);
    const key = keyOf(raw);
    if (summary === undefined) this.items.delete(key);
    else this.items.set(key, summary);
  }

  /** 'gone' on 410, 'empty' when the stream ended at once without events, 'ended' otherwise. */
  private watchOnce(): Promise<'gone' | 'empty' | 'ended'> {
    const startedAt = Date.now();
    let events = 0;
    let gone = false;
    const timeoutSeconds = this.opts.timeoutSeconds?.() ?? 300 + Math.floor((this.opts.random ?? Math.random)() * 300);
    this.stats.watches += 1;
    return new Promise((resolve, reject) => {
      // A connection that died without a FIN sends nothing, not even bookmarks: give up on it a
      // while after the server should have ended the watch itself.
      let watchdog: NodeJS.Timeout | undefined;
      const finish = (err: unknown) => {
        clearTimeout(watchdog);
        this.controller = undefined;
        if (gone) resolve('gone');
        else if (err && !this.stopped) reject(err);
        else resolve(events === 0 && Date.now() - startedAt < 1000 ? 'empty' : 'ended');
      };
      watchdog = setTimeout(() => this.controller?.abort(), (timeoutSeconds + 30) * 1000);
      watchdog.unref();
      const onEvent = (type: string, object: unknown) => {
        events += 1;
        if (type === 'ERROR') {
          if ((object as { code?: unknown } | undefined)?.code === 410) gone = true;
          else this.opts.log.warn({ watch: this.opts.source.what, status: object }, 'Kubernetes watch sent an error');
          return;
        }
        const rv = metaOf(object).resourceVersion;
        if (type === 'ADDED' || type === 'MODIFIED') this.put(object);
        else if (type === 'DELETED') this.items.delete(keyOf(object));
        if (rv !== undefined) this.resourceVersion = rv;
        if (type !== 'BOOKMARK') this.opts.onChange();
      };
      this.opts.stream.watch(this.opts.source.path, { resourceVersion: this.resourceVersion, allowWatchBookmarks: true, timeoutSeconds }, onEvent, finish)
        .then((controller) => {
          if (this.stopped) controller.abort();
          else this.controller = controller;
        }, finish);
    });
  }

  private sleep(ms: number): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = () => {
        this.sleeping = undefined;
        resolve();
      };
      this.sleeping = { timer: setTimeout(wake, ms), wake };
    });
  }
}

/** Exponential backoff with full jitter: a random delay in [0, min(max, base·2^(n-1))]. */
export function backoffMs(failures: number, backoff = { baseMs: 500, maxMs: 30_000 }, random: () => number = Math.random): number {
  const ceiling = Math.min(backoff.maxMs, backoff.baseMs * 2 ** Math.max(0, failures - 1));
  return Math.round(random() * ceiling);
}

function keyOf(raw: unknown): string {
  const meta = metaOf(raw);
  return meta.namespace ? `${meta.namespace}/${meta.name}` : meta.name;
}

/** The HTTP status of a failed request, as client-node's Watch (`statusCode`) or API classes (`code`) report it. */
export function statusOf(err: unknown): number | undefined {
  const e = err as { statusCode?: unknown; code?: unknown } | undefined;
  if (typeof e?.statusCode === 'number') return e.statusCode;
  if (typeof e?.code === 'number') return e.code;
  return undefined;
}
