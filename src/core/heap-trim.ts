/**
 * Gives memory back to the system once a burst of garbage is over.
 *
 * A sidecar that takes in a large catalog parses, checks and indexes a whole snapshot per change
 * (450 KB of JSON with 1000 services). V8 grows its heap for that garbage and keeps most of the
 * pages afterwards: a full collection frees the objects but neither shrinks the young
 * generation nor returns the freed old-generation pages soon. What does both is V8's "low
 * memory" collection, which Node reaches only through the inspector protocol
 * (`HeapProfiler.collectGarbage`); an in-process session needs no port and no debugger.
 * Measured on a sidecar with 1003 services: 67–75 → 64–67 MB of RSS (docs/benchmark-history.md,
 * "Memory results").
 *
 * Because it pauses the process (18–40 ms on an idle machine; up to 300 ms of wall time was seen
 * while a whole dev mesh started on two cores), a trim runs `settleMs` after the last request
 * for one, so a burst of changes gets one trim after it, and at most once per `minIntervalMs`.
 * A request inside that interval is kept and runs at its end, so the last burst is always
 * followed by a trim. Changes that kept coming every few seconds forever would pause the process
 * for about 0.4% of the time with the defaults, one short pause every 10 s.
 */
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import type { Logger } from './log.js';
import { mallocTrim, mallocTrimOutcome, type MallocTrimResult } from './malloc-trim.js';

export interface HeapTrimOptions {
  logger: Logger;
  /** How long after the last `request()` the trim runs. */
  settleMs?: number;
  /** The least time between two trims. */
  minIntervalMs?: number;
  /** The collection itself; the default is V8's low-memory collection through the inspector. */
  collect?: () => Promise<void>;
  /**
   * Run after the collection, which frees Buffers and other memory V8 held in malloc's arenas;
   * the default gives their free pages back to the system (core/malloc-trim.ts).
   */
  releaseMalloc?: () => MallocTrimResult;
  /**
   * After the first trim, a trim runs only if the old generation (old and large-object spaces,
   * where a catalog's garbage goes) has grown by this much since the last one. A burst of
   * catalogs grows it by megabytes; one small change to a large catalog by far less, and is not
   * worth a pause. Default 2 MiB.
   */
  minGrowthBytes?: number;
  /** What the growth is measured on; default the old and large-object spaces' physical size. */
  heapBytes?: () => number;
}

export const defaultHeapTrim = { settleMs: 2000, minIntervalMs: 10_000, minGrowthBytes: 2 * 1024 * 1024 } as const;

/**
 * From this many services on, each catalog (sidecar) or routing table (gateway) parsed and
 * indexed leaves megabytes of heap behind, and the proxy asks for a trim after it. Below it,
 * a proxy never trims: no inspector session, no V8 flag.
 */
export const largeTableServices = 100;

export class HeapTrim {
  private readonly settleMs: number;
  private readonly minIntervalMs: number;
  private readonly collect: () => Promise<void>;
  private readonly releaseMalloc: () => MallocTrimResult;
  private readonly minGrowthBytes: number;
  private readonly heapBytes: () => number;
  /** `heapBytes()` right after the last trim. */
  private afterLast: number | undefined;
  private readonly log: Logger;
  private timer: NodeJS.Timeout | undefined;
  /** When the next trim may run, by `performance.now()`. */
  private notBefore = -Infinity;
  private running = false;
  private pendingReason: string | undefined;
  private pendingAlways = false;
  private stopped = false;
  /** Trims run so far, and trims not run for too little growth (the tests read them). */
  runs = 0;
  skipped = 0;

  constructor(opts: HeapTrimOptions) {
    this.settleMs = opts.settleMs ?? defaultHeapTrim.settleMs;
    this.minIntervalMs = opts.minIntervalMs ?? defaultHeapTrim.minIntervalMs;
    this.collect = opts.collect ?? lowMemoryCollection;
    this.releaseMalloc = opts.releaseMalloc ?? mallocTrim;
    this.minGrowthBytes = opts.minGrowthBytes ?? defaultHeapTrim.minGrowthBytes;
    this.heapBytes = opts.heapBytes ?? oldGenerationBytes;
    this.log = opts.logger.child({ component: 'heap-trim' });
  }

  /**
   * Asks for a trim once things settle; `reason` goes into the log line. With `always`, the
   * trim runs whatever the old generation grew (the young generation or dead Buffers are what
   * the caller saw grow).
   */
  request(reason: string, opts: { always?: boolean } = {}): void {
    if (this.stopped) return;
    this.pendingReason = reason;
    if (opts.always) this.pendingAlways = true;
    this.schedule(this.settleMs);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(delayMs: number): void {
    clearTimeout(this.timer);
    const wait = Math.max(delayMs, this.notBefore - performance.now());
    this.timer = setTimeout(() => { void this.run(); }, wait);
    this.timer.unref();
  }

  private async run(): Promise<void> {
    this.timer = undefined;
    if (this.stopped || this.pendingReason === undefined) return;
    if (this.running) return this.schedule(this.settleMs);
    const reason = this.pendingReason;
    const always = this.pendingAlways;
    this.pendingReason = undefined;
    this.pendingAlways = false;
    await this.collectOnce(reason, always);
  }

  private async collectOnce(reason: string, always: boolean): Promise<void> {
    const grown = this.afterLast === undefined ? undefined : this.heapBytes() - this.afterLast;
    if (!always && grown !== undefined && grown < this.minGrowthBytes) {
      this.skipped += 1;
      this.log.debug({ reason, grownKb: Math.round(grown / 1024) }, 'heap grew too little since the last trim to be worth a pause');
      return;
    }
    this.running = true;
    const rssBefore = process.memoryUsage.rss();
    const started = performance.now();
    try {
      await this.collect();
      const malloc = this.releaseMalloc();
      this.runs += 1;
      this.afterLast = this.heapBytes();
      this.log.debug({
        reason, ms: Math.round(performance.now() - started),
        rssBeforeMb: mb(rssBefore), rssAfterMb: mb(process.memoryUsage.rss()),
        mallocTrim: mallocTrimOutcome(malloc),
      }, 'gave memory back after a burst of garbage');
    } catch (err) {
      // Not worth more than a line: the process runs on with the memory it had.
      this.log.debug({ reason, err: String(err) }, 'could not trim the heap');
    } finally {
      this.notBefore = performance.now() + this.minIntervalMs;
      this.running = false;
    }
    // A request that came while this one ran is kept for after the interval.
    if (this.pendingReason !== undefined && !this.stopped) this.schedule(this.settleMs);
  }
}

/** The physical size of V8's old and large-object spaces, where what survives a catalog's indexing lives. */
function oldGenerationBytes(): number {
  let bytes = 0;
  for (const space of getHeapSpaceStatistics()) if (space.space_name === 'old_space' || space.space_name === 'large_object_space') bytes += space.physical_space_size;
  return bytes;
}

const mb = (bytes: number) => Math.round(bytes / 104857.6) / 10;

/**
 * V8's low-memory collection: full, compacting, the young generation shrunk and freed pages
 * returned. The session is disconnected on the next turn of the loop: disconnecting inside the
 * command's callback deadlocks Node 20 (the heap profiler agent's lock is still held there).
 *
 * A forced collection also throws away the bytecode of every function not running at that
 * moment, which would undo the sidecar's warm-up: in the cold-start bench, p99 went from 17–24
 * to 27–34 ms and the slowest request from 38 to 55–61 ms as the first requests recompiled the
 * request path. Bytecode flushing is therefore turned off first, for the whole process; V8
 * otherwise flushes only functions unused for a while, so little memory is kept for it.
 */
export async function lowMemoryCollection(): Promise<void> {
  if (!process.features.inspector) throw new Error('this node has no inspector');
  setFlagsFromString('--no-flush-bytecode');
  const { Session } = await import('node:inspector');
  const session = new Session();
  session.connect();
  try {
    await new Promise<void>((resolve, reject) => {
      session.post('HeapProfiler.collectGarbage', (err) => (err ? reject(err) : resolve()));
    });
  } finally {
    setImmediate(() => session.disconnect());
  }
}
