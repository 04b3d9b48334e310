import type { Duplex } from 'node:stream';
import type { OpenSockets } from './open-sockets.js';
import { splice, type OwnReads, type SpliceEnd, type SplicedBytes } from './splice.js';

/**
 * Byte counters that move while a long-lived connection is still open.
 *
 * A spliced TCP connection (a database pool, a WebSocket, a gateway's routed mTLS connection) can
 * stay open for hours. Counted only when it closes, its bytes would be invisible on a dashboard
 * for as long as it carries traffic, and then arrive in one step. Each open connection has a
 * meter instead: a scrape of the metrics asks every open meter to report what its connection
 * moved since the meter last reported (`reportOpenMeters`), and the end of the connection reports
 * the rest. The counters are then exact at every scrape, and never count a byte twice.
 */
export class ByteMeter {
  private reportedA = 0;
  private reportedB = 0;
  private closed = false;

  /**
   * `read`: the connection's bytes so far, each way (cumulative); `report`: told what moved since
   * the last report, only when something did.
   */
  constructor(private readonly read: () => SplicedBytes, private readonly report: (fromA: number, fromB: number) => void) {
    openMeters.add(this);
  }

  /** Reports what moved since the last report. */
  flush(): void {
    if (!this.closed) this.settle(this.read());
  }

  /** The connection ended having moved `total`: the rest is reported and the meter is done. */
  close(total: SplicedBytes): void {
    if (this.closed) return;
    this.closed = true;
    openMeters.delete(this);
    this.settle(total);
  }

  private settle(total: SplicedBytes): void {
    const a = Math.max(0, total.fromA - this.reportedA);
    const b = Math.max(0, total.fromB - this.reportedB);
    if (a === 0 && b === 0) return;
    this.reportedA += a;
    this.reportedB += b;
    this.report(a, b);
  }
}

const openMeters = new Set<ByteMeter>();

/** Every open meter reports what moved since its last report (called when metrics are scraped). */
export function reportOpenMeters(): void {
  for (const meter of openMeters) meter.flush();
}

/** Meters whose connection is still open. */
export function openMeterCount(): number {
  return openMeters.size;
}

export interface MeteredSpliceOptions {
  idleMs: number;
  /** Holds both sockets while they are spliced (splice's `open`). */
  open?: OpenSockets | undefined;
  /** Bytes of a's written to b before the splice began (what came after a tunnel's opening head): counted as a's. */
  early?: number;
  /** Told what moved each way since it was last told, `early` included: at each metrics scrape while open, and the rest at the end. */
  report: (fromA: number, fromB: number) => void;
  /** After the last report: how it ended and the connection's totals, `early` included. */
  onEnd?: (how: SpliceEnd, bytes: SplicedBytes) => void;
  bReads?: OwnReads;
  aReads?: OwnReads;
}

/**
 * splice() (core/splice.ts) with a ByteMeter over it: a spliced connection's bytes are reported
 * while it is open as well as at its end. Returns a reading of its bytes so far, `early` included.
 */
export function meteredSplice(a: Duplex, b: Duplex, opts: MeteredSpliceOptions): () => SplicedBytes {
  const early = opts.early ?? 0;
  let sofar: Readonly<SplicedBytes> = { fromA: 0, fromB: 0 };
  const read = (): SplicedBytes => ({ fromA: early + sofar.fromA, fromB: sofar.fromB });
  const meter = new ByteMeter(read, opts.report);
  sofar = splice(a, b, opts.idleMs, opts.open, (how, bytes) => {
    const total = { fromA: early + bytes.fromA, fromB: bytes.fromB };
    meter.close(total);
    opts.onEnd?.(how, total);
  }, opts.bReads, opts.aReads);
  return read;
}
