import { describe, expect, test } from 'vitest';
import { record as recordLatency, total, type Buckets } from '../model/latency-histogram.js';
import type { TrafficRecord } from '../model/records.js';
import { statsOf, TrafficHistory } from './traffic-history.js';
import { compareText } from '../core/compare-text.js';

const latencies = (...ms: number[]): Buckets => {
  const b: Buckets = [];
  for (const m of ms) recordLatency(b, m);
  return b;
};

function rec(from: string, epoch: string, routes: { service: string; to: string; requests: number; errors?: number; ms?: number[] }[]): TrafficRecord {
  return {
    version: 1, from, epoch, updatedAt: new Date(0).toISOString(),
    routes: routes.map((r) => ({ namespace: 'demo', service: r.service, to: r.to, requests: r.requests, errors: r.errors ?? 0, buckets: latencies(...(r.ms ?? [])) })),
  };
}

describe('TrafficHistory: windows as differences of growing counters', () => {
  test('a window is the latest counters minus those at its start', () => {
    const h = new TrafficHistory({ resolutionMs: 5000, retentionMs: 600_000 });
    h.observe([rec('east', 'e1', [{ service: 'ledger', to: 'west', requests: 10, errors: 1, ms: Array(10).fill(5) }])], 0);
    h.observe([rec('east', 'e1', [{ service: 'ledger', to: 'west', requests: 30, errors: 1, ms: [...Array(10).fill(5), ...Array(20).fill(50)] }])], 60_000);
    const w = h.window(60_000, 60_000);
    expect(w.coveredMs).toBe(60_000);
    expect(w.routes).toHaveLength(1);
    expect(w.routes[0]).toMatchObject({ from: 'east', service: 'ledger', to: 'west', requests: 20, errors: 0 });
    expect(total(w.routes[0]!.buckets)).toBe(20);
    const stats = statsOf(w.routes, 60);
    expect(stats.rps).toBeCloseTo(20 / 60, 3);
    expect(stats.successPercent).toBe(100);
    expect(stats.p50Ms).toBeGreaterThan(40);
  });

  test('a young history answers over what it has, and says how much', () => {
    const h = new TrafficHistory({ resolutionMs: 5000, retentionMs: 600_000 });
    h.observe([rec('east', 'e1', [{ service: 'hello', to: 'east', requests: 4 }])], 1000);
    h.observe([rec('east', 'e1', [{ service: 'hello', to: 'east', requests: 9 }])], 11_000);
    const w = h.window(300_000, 11_000);
    expect(w.coveredMs).toBe(10_000);
    expect(w.routes[0]?.requests).toBe(5);
  });

  test('a new epoch (the federation restarted) counts its counters from zero', () => {
    const h = new TrafficHistory({ resolutionMs: 1000, retentionMs: 600_000 });
    h.observe([rec('east', 'e1', [{ service: 'hello', to: 'east', requests: 100 }])], 0);
    h.observe([rec('east', 'e2', [{ service: 'hello', to: 'east', requests: 7 }])], 10_000);
    expect(h.window(10_000, 10_000).routes[0]?.requests).toBe(7);
  });

  test('a source that appeared in the window counts whole; routes with no new request are left out', () => {
    const h = new TrafficHistory({ resolutionMs: 1000, retentionMs: 600_000 });
    h.observe([rec('east', 'e1', [{ service: 'hello', to: 'east', requests: 3 }])], 0);
    h.observe([rec('east', 'e1', [{ service: 'hello', to: 'east', requests: 3 }]), rec('west', 'w1', [{ service: 'ledger', to: 'west', requests: 2 }])], 5000);
    const w = h.window(5000, 5000);
    expect(w.routes.map((r) => `${r.from}:${r.requests}`)).toEqual(['west:2']);
  });

  test('samples older than the retention go, newer ones stay a resolution apart, and steps add up to the window', () => {
    const h = new TrafficHistory({ resolutionMs: 5000, retentionMs: 30_000 });
    for (let t = 0; t <= 60_000; t += 1000) h.observe([rec('east', 'e1', [{ service: 'hello', to: 'east', requests: t / 1000 }])], t);
    const steps = h.steps(30_000, 60_000);
    expect(steps.length).toBeGreaterThanOrEqual(5);
    for (const s of steps) expect(s.seconds).toBeGreaterThanOrEqual(2.5);
    const w = h.window(30_000, 60_000);
    expect(w.coveredMs).toBeLessThanOrEqual(35_000);
    const stepped = steps.filter((s) => s.t > 60_000 - w.coveredMs).reduce((n, s) => n + (s.routes[0]?.requests ?? 0), 0);
    expect(stepped).toBe(w.routes[0]?.requests);
  });

  test('statsOf with nothing says nothing rather than zero', () => {
    expect(statsOf([], 60)).toMatchObject({ requests: 0, rps: 0, successPercent: null, p50Ms: null, p99Ms: null });
  });

  test('split counts: a window is the difference per split and backend, every source cluster together', () => {
    const h = new TrafficHistory({ resolutionMs: 5000, retentionMs: 600_000 });
    const withSplits = (from: string, epoch: string, v1: number, v2: number): TrafficRecord => ({
      ...rec(from, epoch, []),
      splits: [{ namespace: 'demo', service: 'hello', backend: 'demo/hello-v1', requests: v1 }, { namespace: 'demo', service: 'hello', backend: 'demo/hello-v2', requests: v2 }],
    });
    h.observe([withSplits('east', 'e1', 10, 1), withSplits('west', 'w1', 5, 5)], 0);
    h.observe([withSplits('east', 'e1', 19, 2), withSplits('west', 'w2', 3, 0)], 60_000);
    // east: +9 / +1; west restarted (another epoch): its counters count whole, 3 / 0.
    expect(h.window(60_000, 60_000).splits.sort((a, b) => compareText(a.backend, b.backend))).toEqual([
      { namespace: 'demo', service: 'hello', backend: 'demo/hello-v1', requests: 12 },
      { namespace: 'demo', service: 'hello', backend: 'demo/hello-v2', requests: 1 },
    ]);
  });
});

describe('TrafficHistory: TCP services\' connections', () => {
  const tcpRec = (epoch: string, rows: [to: string, connections: number, failed: number, closed: number, sent: number, received: number][]): TrafficRecord => ({
    ...rec('east', epoch, []),
    tcp: rows.map(([to, connections, failed, closed, sentBytes, receivedBytes]) => ({ namespace: 'demo', service: 'redis', to, connections, failed, closed, sentBytes, receivedBytes })),
  });

  test('connections, failures, closes and bytes over the window as differences; open ones from the latest counters', () => {
    const h = new TrafficHistory({ resolutionMs: 5000, retentionMs: 600_000 });
    h.observe([tcpRec('e1', [['west', 10, 1, 6, 1000, 500]])], 0);
    h.observe([tcpRec('e1', [['west', 16, 2, 10, 4000, 2500]])], 60_000);
    const w = h.window(60_000, 60_000);
    expect(w.routes).toEqual([]);
    expect(w.tcp).toEqual([{ from: 'east', namespace: 'demo', service: 'redis', to: 'west', connections: 6, failed: 1, closed: 4, sentBytes: 3000, receivedBytes: 2000, open: 4 }]);
  });

  test('a connection held open with nothing new in the window still shows, as open; a row with nothing open or new does not', () => {
    const h = new TrafficHistory({ resolutionMs: 5000, retentionMs: 600_000 });
    h.observe([tcpRec('e1', [['west', 2, 0, 1, 100, 100], ['north', 3, 0, 3, 10, 10]])], 0);
    h.observe([tcpRec('e1', [['west', 2, 0, 1, 100, 100], ['north', 3, 0, 3, 10, 10]])], 60_000);
    expect(h.window(60_000, 60_000).tcp.map((r) => [r.to, r.connections, r.open])).toEqual([['west', 0, 1]]);
  });

  test('a new epoch counts from zero, and closes of connections from before it never make open negative', () => {
    const h = new TrafficHistory({ resolutionMs: 1000, retentionMs: 600_000 });
    h.observe([tcpRec('e1', [['west', 50, 0, 40, 9000, 9000]])], 0);
    h.observe([tcpRec('e2', [['west', 1, 0, 3, 30, 20]])], 10_000);
    expect(h.window(10_000, 10_000).tcp.map((r) => [r.connections, r.closed, r.sentBytes, r.open])).toEqual([[1, 3, 30, 0]]);
  });
});
