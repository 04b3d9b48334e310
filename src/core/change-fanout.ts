import type { EventEmitter } from 'node:events';

/**
 * Everyone waiting on one event of a source, behind a single listener on it: the federation's
 * long-polls waiting for the next catalog (one from every sidecar and gateway of the cluster),
 * its open catalog streams, the dashboard's open pages. A listener on the source per waiting
 * caller would be hundreds on one event in a cluster of any size, and Node warns of a leak once
 * an event has more than ten.
 */
export class ChangeFanout<T> {
  private readonly callers = new Set<(value: T) => void>();

  /** `subscribe` puts the one listener on the source: `(tell) => federation.on('catalog', tell)`. */
  constructor(subscribe: (tell: (value: T) => void) => void) {
    subscribe((value: T) => {
      // A caller that goes away while told (a long-poll answered) leaves the set: tell a copy.
      for (const caller of [...this.callers]) caller(value);
    });
  }

  /** Calls `caller` at every event until the returned function takes it off. */
  add(caller: (value: T) => void): () => void {
    this.callers.add(caller);
    return () => { this.callers.delete(caller); };
  }

  /** Resolves at the next event, when `until` emits `close` (the caller went away), or after `waitMs`. */
  next(waitMs: number, until: EventEmitter): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        remove();
        until.off('close', done);
        resolve();
      };
      const timer = setTimeout(done, waitMs);
      const remove = this.add(done);
      until.on('close', done);
    });
  }

  /** How many callers wait now. */
  get size(): number {
    return this.callers.size;
  }
}
