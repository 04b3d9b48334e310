import { describe, expect, test } from 'vitest';
import type { MeshFile } from '../dev/dev-mesh.js';
import { parseBenchArgs } from './args.js';
import { cpuSpent, type CpuSnapshot } from './cpu-snapshot.js';
import { LatencySample } from './latency-sample.js';
import type { OpenLoopResult } from './open-loop.js';
import { parseProcStatSystem, parseProcStatTicks } from './proc-cpu.js';
import { buildRows } from './report.js';
import { benchTargets } from './targets.js';

describe('LatencySample', () => {
  const sample = new LatencySample(4); // grows past its first capacity
  for (let v = 100; v >= 1; v -= 1) sample.record(v);
  test.each([[50, 50], [99, 99], [99.9, 100], [100, 100], [0, 1], [1, 1]])('p%d of 1..100 is %d (nearest rank)', (p, expected) => {
    expect(sample.percentile(p)).toBe(expected);
  });
  test('max, mean and size', () => {
    expect([sample.max(), sample.mean(), sample.size]).toEqual([100, 50.5, 100]);
  });
  test('empty sample answers NaN, not 0', () => {
    expect(new LatencySample().percentile(50)).toBeNaN();
  });
});

describe('/proc parsing', () => {
  test.each([
    ['1234 (node) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 11 0 99 0 0', 300],
    ['42 (a) b (c)) R 1 1 1 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 1 0 0', 10],
  ])('utime + stime of %j', (stat, ticks) => {
    expect(parseProcStatTicks(stat)).toBe(ticks);
  });
  test('machine-wide busy leaves out idle, iowait, irq and softirq', () => {
    const stat = 'cpu  100 20 30 5000 40 7 9 3 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n';
    expect(parseProcStatSystem(stat, 100)).toEqual({ busy: 1.5, steal: 0.03 });
  });
});

describe('cpuSpent', () => {
  const snap = (atMs: number, mesh: number, generator: number, busy: number): CpuSnapshot => ({ atMs, mesh, etcd: 0, generator, system: { busy, steal: 0 } });
  test('other = machine busy minus mesh, etcd and generator', () => {
    expect(cpuSpent(snap(0, 1, 1, 10), snap(2000, 2, 1.5, 12), { generator: false, etcd: false })).toMatchObject({ seconds: 2, mesh: 1, generator: 0.5, other: 0.5 });
  });
  test('in-process, the generator is inside the mesh figure and not subtracted twice', () => {
    expect(cpuSpent(snap(0, 1, 1, 10), snap(1000, 2, 2, 11), { generator: true, etcd: false }).other).toBe(0);
  });
  test('when the mesh figure is the whole process tree, etcd (inside it) is not subtracted twice', () => {
    const withEtcd = (atMs: number, mesh: number, etcd: number, busy: number): CpuSnapshot => ({ atMs, mesh, etcd, generator: 0, system: { busy, steal: 0 } });
    expect(cpuSpent(withEtcd(0, 1, 0.1, 10), withEtcd(1000, 2, 0.3, 11.5), { generator: false, etcd: true })).toMatchObject({ mesh: 1, other: 0.5 });
    expect(cpuSpent(withEtcd(0, 1, 0.1, 10), withEtcd(1000, 2, 0.3, 11.5), { generator: false, etcd: false }).other).toBeCloseTo(0.3);
  });
});

describe('buildRows', () => {
  const result = (rate: number, latencies: number[]): OpenLoopResult => {
    const latency = new LatencySample();
    for (const v of latencies) latency.record(v);
    return { rate, scheduled: latencies.length, sent: latencies.length, ok: latencies.length, failed: 0, failures: {}, latency, sendLag: new LatencySample(), elapsedSeconds: latencies.length / rate, bytes: 100 };
  };
  const cpu = (mesh: number) => ({ seconds: 1, mesh, etcd: 0, generator: 0, other: 0, steal: 0 });
  test('added figures are taken against the baseline of the same rate', () => {
    const rows = buildRows([
      { scenario: 'baseline', result: result(100, Array(100).fill(1)), cpu: cpu(0.1) },
      { scenario: 'baseline', result: result(200, Array(100).fill(2)), cpu: cpu(0.1) },
      { scenario: 'cross-cluster', result: result(200, Array(100).fill(5)), cpu: cpu(0.3) },
    ]);
    expect(rows[0]?.addedP50Ms).toBeUndefined();
    expect(rows[2]).toMatchObject({ addedP50Ms: 3, addedP99Ms: 3, cpuSecondsPer1000: 3, achievedRps: 200 });
    expect(rows[2]?.addedCpuSecondsPer1000).toBeCloseTo(2);
  });
});

describe('parseBenchArgs', () => {
  test('defaults', () => {
    expect(parseBenchArgs([])).toMatchObject({ rates: [200, 500], seconds: 10, warmup: 2, output: 'table', mesh: 'child', processes: false, hostBase: 60 });
  });
  test.each([
    [['--processes'], true], [['--processes', 'true'], true], [['--processes=true', '--rates', '1000'], true],
    [['--no-processes'], false], [['--processes', 'false'], false], [['--processes=false'], false],
    [['--processes', '--rates', '1000'], true], [['--mesh', 'in-process'], false], [['--mesh', 'in-process', '--no-processes'], false],
  ])('%j: processes %s', (argv, processes) => {
    expect(parseBenchArgs(argv)).toMatchObject({ processes });
  });
  test('--processes followed by another flag leaves that flag alone', () => {
    expect(parseBenchArgs(['--processes', '--rates', '1000'])).toMatchObject({ rates: [1000], processes: true });
  });
  test.each([
    [['--rates', '0']], [['--rates', '200,abc']], [['--seconds', '61']], [['--output', 'yaml']], [['--mesh', 'docker']],
    [['--rates', '5000,5000,5000,5000,5000,5000', '--seconds', '60']], [['--frobnicate']], [['--cpu-prof', 'x', '--mesh', 'in-process']],
    [['--processes=maybe']], [['--processes', '--mesh', 'in-process']],
  ])('%j is refused with ISTHMUS_ERR_CONFIG_INVALID', (argv) => {
    expect(() => parseBenchArgs(argv)).toThrow(expect.objectContaining({ code: 'ISTHMUS_ERR_CONFIG_INVALID' }));
  });
});

describe('benchTargets', () => {
  const cluster = (host: string, services: MeshFile['clusters'][string]['services']) => ({
    host, region: host, zones: [], federation: '', config: '', gateways: [`${host}:15443`],
    client: { proxy: `${host}:15001`, admin: '', listeners: {} }, services,
  });
  const mesh: MeshFile = {
    etcd: '', trustDomain: 'bench.isthmus', ca: '',
    clusters: {
      east: cluster('127.0.60.1', [{ name: 'hello', namespace: 'demo', instances: ['127.0.60.1:18080'] }]),
      west: cluster('127.0.61.1', [{ name: 'ledger', namespace: 'demo', instances: ['127.0.61.1:18082'] }]),
    },
  };
  test('baseline goes straight to the west ledger app; both chains start at the east client proxy', () => {
    expect(benchTargets(mesh).map((t) => [t.scenario, t.firstHop, t.path])).toEqual([
      ['baseline', '127.0.61.1:18082', '/'],
      ['same-cluster', '127.0.60.1:15001', 'http://hello.demo.mesh/'],
      ['cross-cluster', '127.0.60.1:15001', 'http://ledger.demo.mesh/'],
    ]);
  });
  test('a mesh without west is refused', () => {
    expect(() => benchTargets({ ...mesh, clusters: { east: mesh.clusters.east! } })).toThrow(/east.*west/);
  });
});
