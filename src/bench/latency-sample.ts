/**
 * Every latency of one measured point, kept exactly (milliseconds, float). A point is at most
 * rate × seconds values (bounded by the bench's flags, a few hundred thousand at worst), so exact
 * percentiles cost less than getting an HDR histogram's bucket arithmetic right, and there is no
 * bucket error to explain when two scenarios differ by a tenth of a millisecond.
 */
export class LatencySample {
  private values: Float64Array;
  private count = 0;
  private sorted = true;

  constructor(expected = 1024) {
    this.values = new Float64Array(Math.max(16, expected));
  }

  get size(): number {
    return this.count;
  }

  record(ms: number): void {
    if (this.count === this.values.length) {
      const grown = new Float64Array(this.values.length * 2);
      grown.set(this.values);
      this.values = grown;
    }
    this.values[this.count] = ms;
    this.count += 1;
    this.sorted = false;
  }

  /** Nearest-rank percentile (p in 0..100): a value that was really observed, never interpolated. */
  percentile(p: number): number {
    if (this.count === 0) return Number.NaN;
    const view = this.view();
    const rank = Math.min(this.count, Math.max(1, Math.ceil((p / 100) * this.count)));
    return view[rank - 1] as number;
  }

  max(): number {
    return this.count === 0 ? Number.NaN : (this.view()[this.count - 1] as number);
  }

  mean(): number {
    if (this.count === 0) return Number.NaN;
    let sum = 0;
    for (let i = 0; i < this.count; i += 1) sum += this.values[i] as number;
    return sum / this.count;
  }

  private view(): Float64Array {
    const view = this.values.subarray(0, this.count);
    if (!this.sorted) {
      view.sort();
      this.sorted = true;
    }
    return view;
  }
}
