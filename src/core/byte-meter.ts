import type { SplicedBytes } from './splice.js';

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
