import type * as PromClient from 'prom-client';
import counter from 'prom-client/lib/counter.js';
import gauge from 'prom-client/lib/gauge.js';
import histogram from 'prom-client/lib/histogram.js';
import eventLoopLag from 'prom-client/lib/metrics/eventLoopLag.js';
import gc from 'prom-client/lib/metrics/gc.js';
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

/** prom-client's default process metrics (lib/defaultMetrics.js) but its CPU counter, which is below. */
const processMetricFiles = [
  processStartTime, osMemoryHeap, processOpenFileDescriptors, processMaxFileDescriptors, eventLoopLag,
  processHandles, processRequests, processResources, heapSizeAndUsed, heapSpacesSizeAndUsed, nodeVersion, gc,
];

/**
 * The standard process metrics into `registry`, named `<prefix>process_cpu_seconds_total` and so
 * on as prom-client's collectDefaultMetrics names them, so dashboards written for those work.
 */
export function collectProcessMetrics(registry: Registry, prefix: string): void {
  // The event loop lag is sampled once a second. prom-client's 10 ms default is a timer that wakes
  // the process 100 times a second, which alone cost a bare node process 9.4 ms of CPU per second
  // (0.19 ms at 1 s): nearly all of what an idle sidecar or gateway used. A stall still shows
  // whenever it holds up a sample, so the metric stays a fair picture of long stalls over a scrape.
  const config = { prefix, eventLoopMonitoringPrecision: 1000 };
  for (const collect of processMetricFiles) collect(registry, config);
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
