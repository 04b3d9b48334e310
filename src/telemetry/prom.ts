import type * as PromClient from 'prom-client';
import counter from 'prom-client/lib/counter.js';
import gauge from 'prom-client/lib/gauge.js';
import histogram from 'prom-client/lib/histogram.js';
import heapSizeAndUsed from 'prom-client/lib/metrics/heapSizeAndUsed.js';
import heapSpacesSizeAndUsed from 'prom-client/lib/metrics/heapSpacesSizeAndUsed.js';
import osMemoryHeap from 'prom-client/lib/metrics/osMemoryHeap.js';
import processHandles from 'prom-client/lib/metrics/processHandles.js';
import processMaxFileDescriptors from 'prom-client/lib/metrics/processMaxFileDescriptors.js';
import processOpenFileDescriptors from 'prom-client/lib/metrics/processOpenFileDescriptors.js';
import processRequests from 'prom-client/lib/metrics/processRequests.js';
import processResources from 'prom-client/lib/metrics/processResources.js';
import processStartTime from 'prom-client/lib/metrics/processStartTime.js';
import nodeVersion from 'prom-client/lib/metrics/version.js';
import registry from 'prom-client/lib/registry.js';
import { constants as perfConstants, PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';
import { eventLoopLagMetrics } from './event-loop-lag.js';

/**
 * The parts of prom-client Isthmus uses, without its index. The index also loads the push
 * gateway client, the cluster aggregator and every default metric, and its CPU metric requires
 * @opentelemetry/api (44 modules, about 7 MB of RSS in a fresh process) for exemplars we do not
 * use. Every proxy exposes /metrics, so each pays for what this file loads; the version is
 * pinned exactly in package.json, and src/telemetry/metrics.test.ts checks the process metrics.
 */
export const Registry = registry;
export type Registry = PromClient.Registry;
export const Counter = counter;
export type Counter<T extends string = string> = PromClient.Counter<T>;
export const Gauge = gauge;
export type Gauge<T extends string = string> = PromClient.Gauge<T>;
export const Histogram = histogram;
export type Histogram<T extends string = string> = PromClient.Histogram<T>;

/** A label set's child, looked up once and kept (prom-client hashes labels on every call otherwise). */
export type CounterChild = PromClient.Counter.Internal;
export type HistogramChild = PromClient.Histogram.Internal<string>;

/**
 * prom-client's default process metrics (lib/defaultMetrics.js) but its CPU counter and its event
 * loop lag, which are ours (below and event-loop-lag.ts).
 */
const processMetricFiles = [
  processStartTime, osMemoryHeap, processOpenFileDescriptors, processMaxFileDescriptors,
  processHandles, processRequests, processResources, heapSizeAndUsed, heapSpacesSizeAndUsed, nodeVersion,
];

/**
 * The standard process metrics into `registry`, named `<prefix>process_cpu_seconds_total` and so
 * on as prom-client's collectDefaultMetrics names them, so dashboards written for those work.
 */
export function collectProcessMetrics(registry: Registry, prefix: string): void {
  const config = { prefix };
  for (const collect of processMetricFiles) collect(registry, config);
  eventLoopLagMetrics(registry, prefix);
  gcDurations(registry, prefix);
  // CPU time as three counters moved forward at each scrape by what process.cpuUsage() gained.
  let last = process.cpuUsage();
  const user = new Counter({ name: `${prefix}process_cpu_user_seconds_total`, help: 'Total user CPU time spent in seconds.', registers: [registry] });
  const system = new Counter({ name: `${prefix}process_cpu_system_seconds_total`, help: 'Total system CPU time spent in seconds.', registers: [registry] });
  new Counter({
    name: `${prefix}process_cpu_seconds_total`, help: 'Total user and system CPU time spent in seconds.', registers: [registry],
    collect() {
      const now = process.cpuUsage();
      const userSeconds = (now.user - last.user) / 1e6;
      const systemSeconds = (now.system - last.system) / 1e6;
      last = now;
      user.inc(userSeconds);
      system.inc(systemSeconds);
      this.inc(userSeconds + systemSeconds);
    },
  });
}

const gcKinds: Record<number, string> = {
  [perfConstants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [perfConstants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [perfConstants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [perfConstants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
};

/**
 * `<prefix>nodejs_gc_duration_seconds` by kind, with the name, help, labels and buckets of
 * prom-client's own (lib/metrics/gc.js), which observes only the first entry of each batch the
 * performance observer delivers: collections close together were counted as one (five in a row
 * counted none of the five as `major` in metrics.test.ts). Here every collection is observed.
 */
function gcDurations(registry: Registry, prefix: string): void {
  const histogram = new Histogram({
    name: `${prefix}nodejs_gc_duration_seconds`,
    help: 'Garbage collection duration by kind, one of major, minor, incremental or weakcb.',
    labelNames: ['kind'], buckets: [0.001, 0.01, 0.1, 1, 2, 5], registers: [registry],
  });
  const children = new Map<string, HistogramChild>();
  const observe = (entry: PerformanceEntry) => {
    const kind = gcKinds[(entry as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind ?? -1] ?? 'unknown';
    let child = children.get(kind);
    if (!child) children.set(kind, (child = histogram.labels({ kind })));
    child.observe(entry.duration / 1000);
  };
  new PerformanceObserver((list) => { for (const entry of list.getEntries()) observe(entry); }).observe({ entryTypes: ['gc'] });
}
