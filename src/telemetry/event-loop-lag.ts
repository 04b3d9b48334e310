import { createHistogram, performance, type RecordableHistogram } from 'node:perf_hooks';
import type * as PromClient from 'prom-client';
import gauge from 'prom-client/lib/gauge.js';

/**
 * How often the event loop's lag is sampled. prom-client samples every 10 ms: those 100 wake-ups
 * a second cost a bare node process 9.4 ms of CPU per second, about all that an idle sidecar used.
 */
export const lagSampleMs = 1000;

/**
 * `<prefix>nodejs_eventloop_lag_*` under prom-client's names, measured here rather than by
 * prom-client's collector, which reads `perf_hooks.monitorEventLoopDelay`. That histogram holds
 * the whole time between two ticks of its timer, the sampling interval included: sampled once a
 * second, prom-client reported an idle sidecar's lag as 1.00 s (min, p50 and p99 alike), and it
 * reports a count of zero as a minimum of 9.2e9 s. Each figure here is how late a tick came
 * after it was due, so an idle process reads about a millisecond, the resolution of a Node timer.
 * Its histogram keeps two significant digits up to a minute (about 30 KB), where Node's keeps
 * three up to 2⁶³ ns (368 KB of memory in every proxy).
 *
 * The min, max, mean, stddev and percentiles cover the samples since the last scrape; a scrape
 * with no sample since the last one leaves them as they were. `nodejs_eventloop_lag_seconds` is
 * measured at the scrape: how long a `setImmediate` took to run.
 */
export function eventLoopLagMetrics(registry: PromClient.Registry, prefix: string): void {
  const histogram = createHistogram({ lowest: 1, highest: 60e9, figures: 2 });
  sampled.add(new WeakRef(histogram));
  startSampling();
  const registers = [registry];
  const figures: Array<[string, string, (h: RecordableHistogram) => number]> = [
    ['min', 'The least event loop lag sampled since the last scrape, in seconds.', (h) => h.min],
    ['max', 'The greatest event loop lag sampled since the last scrape, in seconds.', (h) => h.max],
    ['mean', 'The mean event loop lag sampled since the last scrape, in seconds.', (h) => h.mean],
    ['stddev', 'The standard deviation of the event loop lag sampled since the last scrape, in seconds.', (h) => h.stddev],
    ['p50', 'The median event loop lag sampled since the last scrape, in seconds.', (h) => h.percentile(50)],
    ['p90', 'The 90th percentile of the event loop lag sampled since the last scrape, in seconds.', (h) => h.percentile(90)],
    ['p99', 'The 99th percentile of the event loop lag sampled since the last scrape, in seconds.', (h) => h.percentile(99)],
  ];
  let gauges: Array<{ read: (h: RecordableHistogram) => number; gauge: PromClient.Gauge }>;
  new gauge({
    name: `${prefix}nodejs_eventloop_lag_seconds`,
    help: 'How long a setImmediate callback queued at the scrape waited to run, in seconds.',
    registers,
    async collect() {
      // Before the first await: the registry reads the other gauges as soon as this one yields.
      if (histogram.count > 0) {
        for (const { read, gauge: g } of gauges) g.set(read(histogram) / 1e9);
        histogram.reset();
      }
      const queued = performance.now();
      await new Promise<void>((resolve) => setImmediate(resolve));
      this.set((performance.now() - queued) / 1000);
    },
  });
  // After the gauge above: a registry starts collecting its metrics in the order they were made.
  gauges = figures.map(([name, help, read]) => ({ read, gauge: new gauge({ name: `${prefix}nodejs_eventloop_lag_${name}_seconds`, help, registers }) }));
}

/** Every registry's histogram; the one timer records each sample into all that are still alive. */
const sampled = new Set<WeakRef<RecordableHistogram>>();
let sampling = false;

function startSampling(): void {
  if (sampling) return;
  sampling = true;
  let due = performance.now() + lagSampleMs;
  setInterval(() => {
    const now = performance.now();
    const lagNs = Math.max(1, Math.round((now - due) * 1e6));
    due = now + lagSampleMs;
    for (const ref of sampled) {
      const histogram = ref.deref();
      if (histogram) histogram.record(lagNs);
      else sampled.delete(ref);
    }
  }, lagSampleMs).unref();
}
