import { pickPrepared, prepareEndpoints } from '../model/balancer.js';
import type { Endpoint, ServiceLocalities } from '../model/localities.js';
import { endpointLoad, requestEnded, requestStarted } from '../model/peak-ewma.js';

/**
 * Micro-benchmark of the per-request pick (`node dist/bench/balancer-pick.js`): nanoseconds per
 * pick by weight alone and by power of two choices over peak-EWMA (with the request's start and
 * end bookkeeping), and the heap allocated per pick, for 2 and 8 endpoints in one priority.
 * The pick is a small part of a request's CPU; this shows that latency-aware balancing stays
 * a small part of it.
 */
const picks = 2_000_000;

function shape(endpoints: number, withLoads: boolean): ServiceLocalities {
  const list: Endpoint[] = Array.from({ length: endpoints }, (_, i) => ({
    address: `10.0.0.${i}:15006`, healthy: true, weight: 1, kind: 'local',
    ...(withLoads ? { load: { ...endpointLoad(), ewmaMs: 1 + i } } : {}),
  }));
  return { localities: [{ region: 'r', zone: 'a', cluster: 'east', priority: 0, endpoints: list }] };
}

function run(endpoints: number, latencyAware: boolean): { nsPerPick: number; bytesPerPick: number } {
  const prepared = prepareEndpoints(shape(endpoints, latencyAware));
  const loads = [100, 0, 0, 0];
  let sink = 0;
  const once = () => {
    const now = latencyAware ? performance.now() : undefined;
    const picked = pickPrepared(prepared, loads, Math.random, now);
    if (picked?.load && now !== undefined) {
      requestStarted(picked.load);
      requestEnded(picked.load, 1 + (sink & 3), true, now);
    }
    sink += picked ? 1 : 0;
  };
  for (let i = 0; i < 200_000; i += 1) once();
  globalThis.gc?.();
  const heapBefore = process.memoryUsage().heapUsed;
  const started = process.hrtime.bigint();
  for (let i = 0; i < picks; i += 1) once();
  const ns = Number(process.hrtime.bigint() - started);
  const heapAfter = process.memoryUsage().heapUsed;
  if (sink === 0) throw new Error('nothing picked');
  return { nsPerPick: ns / picks, bytesPerPick: Math.max(0, heapAfter - heapBefore) / picks };
}

const rows = [2, 8].flatMap((endpoints) => [false, true].map((latencyAware) => ({
  endpoints, balancer: latencyAware ? 'p2c peak-ewma' : 'weight only', ...run(endpoints, latencyAware),
})));
for (const row of rows) {
  console.log(`${String(row.endpoints).padStart(2)} endpoints  ${row.balancer.padEnd(14)} ${row.nsPerPick.toFixed(1).padStart(6)} ns/pick  ${row.bytesPerPick.toFixed(2)} bytes/pick`);
}
