import type { Registry } from './prom.js';

/**
 * A counter and a histogram for what a proxy counts per request. prom-client validates and
 * hashes the label set on every `inc()` and `observe()`, even through a child kept per label
 * set: about 3% of a sidecar's CPU at 1000 requests/s (docs/benchmark-history.md, "Where the CPU
 * goes"). Here a child is made once per label set and counting is a field update; the work moves
 * to the scrape. Both register on a prom-client Registry as metrics of their own and hand it
 * their values in the shape prom-client's own Counter and Histogram do, so the registry formats
 * them and the exposition is the same text (tally-metrics.test.ts compares the two).
 */

type Labels = Readonly<Record<string, string>>;

interface MetricOptions {
  name: string;
  help: string;
  registers: Registry[];
}

/** What prom-client's Registry reads from a metric (`getForPromString` before `get`). */
interface ValuePair {
  labels: Record<string, string | number>;
  sharedLabels?: Labels;
  value: number;
  metricName?: string;
  /** prom-client's histograms give each bucket `exemplar: null` (exemplars are not kept here). */
  exemplar?: null;
}

abstract class TallyMetric<Child> {
  readonly name: string;
  readonly help: string;
  readonly aggregator = 'sum';
  private readonly children = new Map<string, { labels: Labels; child: Child }>();

  constructor(options: MetricOptions, readonly type: 'counter' | 'histogram') {
    this.name = options.name;
    this.help = options.help;
    for (const registry of options.registers) registry.registerMetric(this as never);
  }

  /** The child of one label set, made on first use: keep it, and count through it. */
  labels(labels: Labels): Child {
    const key = JSON.stringify(labels);
    let entry = this.children.get(key);
    if (!entry) this.children.set(key, (entry = { labels: { ...labels }, child: this.newChild() }));
    return entry.child;
  }

  /**
   * Every label set back to zero. The children stay: their holders keep them (that is the point),
   * so dropping them would leave those counting where no scrape looks.
   */
  reset(): void {
    for (const { child } of this.children.values()) this.zero(child);
  }

  protected abstract newChild(): Child;
  protected abstract zero(child: Child): void;
  protected abstract values(): ValuePair[];

  protected entries(): IterableIterator<{ labels: Labels; child: Child }> {
    return this.children.values();
  }

  /** For the exposition: the registry escapes and formats the values. */
  getForPromString(): { name: string; help: string; type: string; values: ValuePair[]; aggregator: string } {
    return { name: this.name, help: this.help, type: this.type, values: this.values(), aggregator: this.aggregator };
  }

  /** For JSON (`getMetricsAsJSON`): each value's labels whole, as prom-client gives them. */
  get(): { name: string; help: string; type: string; values: ValuePair[]; aggregator: string } {
    const data = this.getForPromString();
    return { ...data, values: data.values.map(({ labels, sharedLabels, ...rest }) => ({ ...rest, labels: { ...labels, ...sharedLabels } })) };
  }
}

export interface TallyCounterChild {
  inc(): void;
}

export class TallyCounter extends TallyMetric<TallyCounterChild & { value: number }> {
  constructor(options: MetricOptions) {
    super(options, 'counter');
  }

  protected newChild(): TallyCounterChild & { value: number } {
    return { value: 0, inc() { this.value += 1; } };
  }

  protected zero(child: TallyCounterChild & { value: number }): void {
    child.value = 0;
  }

  protected values(): ValuePair[] {
    return [...this.entries()].map(({ labels, child }) => ({ labels: { ...labels }, value: child.value }));
  }
}

export interface TallyHistogramChild {
  observe(value: number): void;
}

interface HistogramTally extends TallyHistogramChild {
  /** Observations per bucket, not cumulative; the last one is above every bound. */
  readonly counts: Float64Array;
  sum: number;
  count: number;
}

export class TallyHistogram extends TallyMetric<HistogramTally> {
  private readonly bounds: readonly number[];

  constructor(options: MetricOptions & { buckets: readonly number[] }) {
    super(options, 'histogram');
    this.bounds = [...options.buckets].sort((a, b) => a - b);
  }

  protected newChild(): HistogramTally {
    const bounds = this.bounds;
    const tally: HistogramTally = {
      counts: new Float64Array(bounds.length + 1), sum: 0, count: 0,
      observe(value: number) {
        // As prom-client: a value equal to a bound counts in that bound's bucket.
        let i = 0;
        while (i < bounds.length && value > (bounds[i] as number)) i += 1;
        tally.counts[i] = (tally.counts[i] as number) + 1;
        tally.sum += value;
        tally.count += 1;
      },
    };
    return tally;
  }

  protected zero(child: HistogramTally): void {
    child.counts.fill(0);
    child.sum = 0;
    child.count = 0;
  }

  protected values(): ValuePair[] {
    const bucket = `${this.name}_bucket`;
    return [...this.entries()].flatMap(({ labels, child }) => {
      let cumulative = 0;
      const buckets: ValuePair[] = this.bounds.map((le, i) => {
        cumulative += child.counts[i] as number;
        return { labels: { le }, sharedLabels: labels, value: cumulative, metricName: bucket, exemplar: null };
      });
      return [
        ...buckets,
        { labels: { le: '+Inf' }, sharedLabels: labels, value: child.count, metricName: bucket, exemplar: null },
        { labels: {}, sharedLabels: labels, value: child.sum, metricName: `${this.name}_sum` },
        { labels: {}, sharedLabels: labels, value: child.count, metricName: `${this.name}_count` },
      ];
    });
  }
}
