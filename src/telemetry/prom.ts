import { createRequire } from 'node:module';
import type * as PromClient from 'prom-client';

/**
 * The parts of prom-client Isthmus uses, without its index. The index also loads the push
 * gateway client, the cluster aggregator and every default metric, and its CPU metric requires
 * @opentelemetry/api (44 modules, about 7 MB of RSS in a fresh process) for exemplars we do not
 * use. Every proxy exposes /metrics, so each pays for what this file loads; the version is
 * pinned exactly in package.json, and src/telemetry/metrics.test.ts checks the process metrics.
 */
const require = createRequire(import.meta.url);

export const Registry = require('prom-client/lib/registry') as typeof PromClient.Registry;
export type Registry = PromClient.Registry;
export const Counter = require('prom-client/lib/counter') as typeof PromClient.Counter;
export type Counter<T extends string = string> = PromClient.Counter<T>;
export const Gauge = require('prom-client/lib/gauge') as typeof PromClient.Gauge;
export type Gauge<T extends string = string> = PromClient.Gauge<T>;
export const Histogram = require('prom-client/lib/histogram') as typeof PromClient.Histogram;
export type Histogram<T extends string = string> = PromClient.Histogram<T>;

/** A label set's child, looked up once and kept (prom-client hashes labels on every call otherwise). */
export type CounterChild = PromClient.Counter.Internal;
export type HistogramChild = PromClient.Histogram.Internal<string>;

type DefaultMetric = (registry: Registry, config: { prefix: string; eventLoopMonitoringPrecision: number }) => void;

/** prom-client's default process metrics (lib/defaultMetrics.js) but its CPU counter, which is below. */
const processMetricFiles = [
  'processStartTime', 'osMemoryHeap', 'processOpenFileDescriptors', 'processMaxFileDescriptors', 'eventLoopLag',
  'processHandles', 'processRequests', 'processResources', 'heapSizeAndUsed', 'heapSpacesSizeAndUsed', 'version', 'gc',
];

/**
 * The standard process metrics into `registry`, named `<prefix>process_cpu_seconds_total` and so
 * on as prom-client's collectDefaultMetrics names them, so dashboards written for those work.
 */
export function collectProcessMetrics(registry: Registry, prefix: string): void {
  const config = { prefix, eventLoopMonitoringPrecision: 10 };
  for (const file of processMetricFiles) (require(`prom-client/lib/metrics/${file}`) as DefaultMetric)(registry, config);
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
