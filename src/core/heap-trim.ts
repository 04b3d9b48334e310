import type { Logger } from './log.js';

/**
 * Gives memory back to the system once a burst of garbage is over.
 *
 * A sidecar that takes in a large catalog parses, checks and indexes a whole snapshot per change
 * (450 KB of JSON with 1000 services). V8 grows its heap for that garbage and keeps most of the
 * pages afterwards: a full collection frees the objects but neither shrinks the young
 * generation nor returns the freed old-generation pages soon. What does both is V8's "low
 * memory" collection, which Node reaches only through the inspector protocol
 * (`HeapProfiler.collectGarbage`); an in-process session needs no port and no debugger.
 * Measured on a sidecar with 1003 services: 76 → 66 MB of RSS for a 35 ms pause
 * (docs/benchmarks.md, "Memory of one sidecar process").
 *
 * Because it pauses the process, a trim runs `settleMs` after the last request for one (a burst
 * of catalog changes gets one trim, after it), and trims take at most 1/`pauseShare` of the time:
 * after a pause of p ms the next trim waits p × `pauseShare` ms, and at least `minIntervalMs`
 * (35 ms → 7 s with the defaults). A request inside that wait is kept and runs at its end, so
 * the last burst is always followed by one. Even a catalog that changed every second forever
 * would pause the process for 0.5% of the time, in single pauses, not more.
 */
export interface HeapTrimOptions {
  logger: Logger;
  /** How long after the last `request()` the trim runs. */
  settleMs?: number;
  /** The least time between two trims. */
  minIntervalMs?: number;
  /** Trims take at most 1/pauseShare of the time (see above). */
  pauseShare?: number;
  /** The collection itself; the default is V8's low-memory collection through the inspector. */
  collect?: () => Promise<void>;
}

export const defaultHeapTrim = { settleMs: 2000, minIntervalMs: 5000, pauseShare: 200 } as const;

export class HeapTrim {
  private readonly settleMs: number;
  private readonly minIntervalMs: number;
  private readonly pauseShare: number;
  private readonly collect: () => Promise<void>;
  private readonly log: Logger;
  private timer: NodeJS.Timeout | undefined;
  /** When the next trim may run, by `performance.now()`. */
  private notBefore = -Infinity;
  private running = false;
  private pendingReason: string | undefined;
  private stopped = false;
  /** Trims run so far; for tests and the admin's view. */
  runs = 0;

  constructor(opts: HeapTrimOptions) {
    this.settleMs = opts.settleMs ?? defaultHeapTrim.settleMs;
    this.minIntervalMs = opts.minIntervalMs ?? defaultHeapTrim.minIntervalMs;
    this.pauseShare = opts.pauseShare ?? defaultHeapTrim.pauseShare;
    this.collect = opts.collect ?? lowMemoryCollection;
    this.log = opts.logger.child({ component: 'heap-trim' });
  }

  /** Asks for a trim once things settle; `reason` goes into the log line. */
  request(reason: string): void {
    if (this.stopped) return;
    this.pendingReason = reason;
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
    this.pendingReason = undefined;
    this.running = true;
    const rssBefore = process.memoryUsage.rss();
    const started = performance.now();
    try {
      await this.collect();
      this.runs += 1;
      this.log.debug({
        reason, ms: Math.round(performance.now() - started),
        rssBeforeMb: mb(rssBefore), rssAfterMb: mb(process.memoryUsage.rss()),
      }, 'gave memory back after a burst of garbage');
    } catch (err) {
      // Not worth more than a line: the process runs on with the memory it had.
      this.log.debug({ reason, err: String(err) }, 'could not trim the heap');
    } finally {
      const ended = performance.now();
      this.notBefore = ended + Math.max(this.minIntervalMs, (ended - started) * this.pauseShare);
      this.running = false;
    }
    // A request that came while this one ran is kept for after the interval.
    if (this.pendingReason !== undefined && !this.stopped) this.schedule(this.settleMs);
  }
}

const mb = (bytes: number) => Math.round(bytes / 104857.6) / 10;

/**
 * V8's low-memory collection: full, compacting, the young generation shrunk and freed pages
 * returned. The session is disconnected on the next turn of the loop: disconnecting inside the
 * command's callback deadlocks Node 20 (the heap profiler agent's lock is still held there).
 */
export async function lowMemoryCollection(): Promise<void> {
  if (!process.features.inspector) throw new Error('this node has no inspector');
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
