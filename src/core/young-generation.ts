import { constants, PerformanceObserver } from 'node:perf_hooks';
import { getHeapSpaceStatistics, getHeapStatistics, setFlagsFromString } from 'node:v8';

/**
 * The young generation of a sidecar or gateway: small while it starts, allowed to grow under
 * load up to a cap, and given back once the load is over.
 *
 * V8 doubles a semi-space whenever many objects survive a scavenge, which loading a module
 * graph and a sidecar's warm-up both do: a client sidecar sat at rest with a new space of
 * 8 MB committed (74 MB of RSS) until an idle collection gave it back later. Started with a
 * growth factor of 1, the same sidecar holds a new space of 1 MB and 67 MB of RSS at rest; the
 * objects that survive start-up are promoted to the old space, where they live anyway.
 * bin/isthmus.js sets the factor to 1 for `isthmus sidecar` and `isthmus gateway` before anything
 * loads.
 *
 * Once the process serves and is busy (`busyScavenges` scavenges within a second: a sidecar at
 * 1000 requests/s scavenges ten times a second or more, one at a few requests a second every few
 * seconds), V8's default factor (2) is set back, so that under load the young generation grows:
 * kept at 1 MB it cost ~5% more CPU per request at 1000 requests/s (docs/benchmarks.md, "What
 * still holds the memory"). Until then, and again once the process has gone quiet, the factor
 * stays 1: V8 grows the space by what survived its scavenges in total, so light traffic, a few
 * health checks and catalog changes grew an idle sidecar's young generation from 1 to 4 MB
 * within seconds of its start, and slowly on to the cap. Left to itself V8 grows it up to 32 MB,
 * which gRPC traffic reached within seconds (50 calls in flight keep their objects alive across
 * scavenges) and kept long after the traffic stopped. So the growth stops at `capBytes`: after
 * each collection the factor is set to 1 once one more doubling would pass the cap, and back to
 * 2 when V8 has shrunk the space below it. `--max-semi-space-size` would do the same, but V8
 * reads it only from node's command line, which a user's manifest owns.
 *
 * A young generation that grew, or Buffers that died, stay until the next collection, and an
 * idle process does not collect: after a burst of traffic a sidecar kept 30–60 MB more than at
 * rest. When no collection has run for `quietMs` (the process allocates little: the burst is
 * over: no scavenge) and the new space has grown to four times its size at start or more (one
 * doubling is not worth a pause), or the external memory (Buffers) is `externalGrowthBytes`
 * above what it was then (or after the last trim, once quiet), `onQuiet` is told, once until the
 * next scavenge: the sidecar and gateway ask their HeapTrim for a low-memory collection then.
 */
export interface YoungGenerationOptions {
  /** The new space's size (both semi-spaces) past which it does not grow. Default 8 MiB. */
  capBytes?: number;
  /** How many scavenges within a second make the process busy, and its young generation free to grow. Default 5. */
  busyScavenges?: number;
  /** How long without a collection counts as quiet. Default 5 s. */
  quietMs?: number;
  /** How much more external memory than at start is worth a collection when quiet. Default 4 MiB. */
  externalGrowthBytes?: number;
  /** Told when the process has gone quiet with more young generation or external memory than at start. */
  onQuiet?: (reason: string) => void;
  /**
   * Told when the process has gone quiet after one or more collections, whatever they freed:
   * once per quiet spell. The Buffers a collection freed went back to malloc, and the sidecar and
   * gateway give malloc's free pages back to the system then (core/malloc-trim.ts), which costs
   * no collection.
   */
  onIdle?: () => void;
  /** Reads and the flag setter, for tests; defaults are V8's own. */
  newSpaceBytes?: () => number;
  externalBytes?: () => number;
  setGrowthFactor?: (factor: number) => void;
}

export const defaultYoungGeneration = { capBytes: 8 * 1024 * 1024, busyScavenges: 5, quietMs: 5000, externalGrowthBytes: 4 * 1024 * 1024 } as const;

/** V8's default `--semi-space-growth-factor`, and the one that stops growth. */
const growing = 2;
const held = 1;

/** The growth factor for a new space of `bytes`: 2 while one more doubling stays within `capBytes`. */
export function growthFactorFor(bytes: number, capBytes: number): number {
  return bytes * growing <= capBytes ? growing : held;
}

export class YoungGeneration {
  private readonly capBytes: number;
  private readonly busyScavenges: number;
  private readonly quietMs: number;
  private readonly externalGrowthBytes: number;
  private readonly newSpaceBytes: () => number;
  private readonly externalBytes: () => number;
  private readonly setGrowthFactor: (factor: number) => void;
  private readonly onQuiet: ((reason: string) => void) | undefined;
  private readonly onIdle: (() => void) | undefined;
  /** Whether any collection ran since onIdle was last told (or since serve()). */
  private collectedSinceIdle = false;
  /** When the last `busyScavenges` scavenges ran (performance.now()), oldest first. */
  private readonly recentScavenges: number[] = [];
  /** Busy since the last quiet check: the young generation may grow. */
  private busy = false;
  /** The factor bin/isthmus.js started the process with. */
  private factor = held;
  private observer: PerformanceObserver | undefined;
  private timer: NodeJS.Timeout | undefined;
  private startNewSpace = 0;
  /** External memory at start, or once quiet after the last trim asked for. */
  private baseExternal = 0;
  /** Scavenges seen since the last quiet check. */
  private collections = 0;
  /** Whether onQuiet was told since the last collection. */
  private told = false;

  constructor(opts: YoungGenerationOptions = {}) {
    this.capBytes = opts.capBytes ?? defaultYoungGeneration.capBytes;
    this.busyScavenges = opts.busyScavenges ?? defaultYoungGeneration.busyScavenges;
    this.quietMs = opts.quietMs ?? defaultYoungGeneration.quietMs;
    this.externalGrowthBytes = opts.externalGrowthBytes ?? defaultYoungGeneration.externalGrowthBytes;
    this.newSpaceBytes = opts.newSpaceBytes ?? newSpaceSize;
    this.externalBytes = opts.externalBytes ?? (() => getHeapStatistics().external_memory);
    this.setGrowthFactor = opts.setGrowthFactor ?? ((factor) => setFlagsFromString(`--semi-space-growth-factor=${factor}`));
    this.onQuiet = opts.onQuiet;
    this.onIdle = opts.onIdle;
  }

  /** The process serves from now on: growth up to the cap when busy, and quiet checks. */
  serve(): void {
    if (this.observer) return;
    this.startNewSpace = this.newSpaceBytes();
    this.baseExternal = this.externalBytes();
    // Held until busy, whatever the process started with (bin/isthmus.js sets 1; V8's default is 2).
    this.factor = held;
    this.setGrowthFactor(held);
    this.observer = new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) {
        this.collected((entry as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MINOR, entry.startTime);
      }
    });
    this.observer.observe({ entryTypes: ['gc'] });
    if (this.onQuiet || this.onIdle) {
      this.timer = setInterval(() => this.check(), this.quietMs);
      this.timer.unref();
    }
  }

  /** Stops watching, and leaves V8's default growth factor set. */
  stop(): void {
    if (this.observer && this.factor !== growing) {
      this.factor = growing;
      this.setGrowthFactor(growing);
    }
    this.observer?.disconnect();
    this.observer = undefined;
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /**
   * After a collection that began at `now` (the observer's entries come in batches). Only
   * scavenges count as activity: the low-memory collection onQuiet asks for is a full one, and
   * must not make the process look busy again.
   */
  collected(scavenged: boolean, now: number = performance.now()): void {
    this.collectedSinceIdle = true;
    if (scavenged) {
      this.collections += 1;
      this.told = false;
      this.recentScavenges.push(now);
      if (this.recentScavenges.length > this.busyScavenges) this.recentScavenges.shift();
      if (this.recentScavenges.length === this.busyScavenges && now - this.recentScavenges[0]! <= 1000) this.busy = true;
    }
    this.adjust();
  }

  /**
   * Every quietMs: a process that collected nothing since the last check is idle (onIdle, if it
   * collected since the last time), and if it holds more than at start, onQuiet is told once.
   */
  check(): void {
    const quiet = this.collections === 0;
    this.collections = 0;
    if (!quiet) return;
    if (this.busy) {
      // The load is over: no more growth until the next.
      this.busy = false;
      this.adjust();
    }
    if (this.collectedSinceIdle) {
      this.collectedSinceIdle = false;
      this.onIdle?.();
    }
    if (this.told) {
      // Quiet since it was told (and the trim ran): what Buffers hold now is live, and the next
      // burst is counted from it, so that Buffers a sidecar keeps do not ask for a trim after
      // every scavenge.
      this.baseExternal = this.externalBytes();
      return;
    }
    const newSpace = this.newSpaceBytes();
    const external = this.externalBytes() - this.baseExternal;
    let reason: string | undefined;
    if (newSpace >= this.startNewSpace * 4) reason = `young generation at ${mb(newSpace)} MB after load`;
    else if (external >= this.externalGrowthBytes) reason = `${mb(external)} MB more Buffers than before the load`;
    if (reason === undefined) return;
    this.told = true;
    this.onQuiet?.(reason);
  }

  private adjust(): void {
    const factor = this.busy ? growthFactorFor(this.newSpaceBytes(), this.capBytes) : held;
    if (factor === this.factor) return;
    this.factor = factor;
    this.setGrowthFactor(factor);
  }
}

function newSpaceSize(): number {
  for (const space of getHeapSpaceStatistics()) if (space.space_name === 'new_space') return space.space_size;
  return 0;
}

const mb = (bytes: number) => Math.round(bytes / 104857.6) / 10;
