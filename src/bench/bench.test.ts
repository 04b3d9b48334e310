import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';
import { describe, expect, test } from 'vitest';
import { startSampleInstance } from '../dev/sample-service.js';
import type { MeshFile } from '../dev/dev-mesh.js';
import { parseBenchArgs } from './args.js';
import { transfer } from './bulk.js';
import { cpuSpent, type CpuSnapshot } from './cpu-snapshot.js';
import { LatencySample } from './latency-sample.js';
import type { OpenLoopResult } from './open-loop.js';
import { peerBinary, startPeerChain, type PeerChain } from './peer-chain.js';
import { nginxQuote, renderHaproxyGateway, renderNginxInbound, renderNginxOutbound } from './peer-config.js';
import { isAlive, parseProcStatSystem, parseProcStatTicks } from './proc-cpu.js';
import { idleCarriers, ourCarries, ourRole, parsePeakRss, proxiesSpent, withoutCarriers, type ProcessReadings, type ProxyProcess } from './proxy-processes.js';
import { coldRows, counterSum, formatColdRows } from './cold-start.js';
import { compareRows, formatComparisons, ratioOf } from './comparison.js';
import { buildRows, formatProxyCpu, formatRows, type Row } from './report.js';
import { benchTargets, chainOrigins, targetLabel } from './targets.js';

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
  const snap = (atMs: number, mesh: number, generator: number, busy: number, peers = 0): CpuSnapshot => ({ atMs, mesh, etcd: 0, peers, generator, system: { busy, steal: 0 } });
  test('other = machine busy minus mesh, etcd and generator', () => {
    expect(cpuSpent(snap(0, 1, 1, 10), snap(2000, 2, 1.5, 12), { generator: false, etcd: false })).toMatchObject({ seconds: 2, mesh: 1, generator: 0.5, other: 0.5 });
  });
  test('the peer chain\'s processes are not "other": they are ours to count', () => {
    expect(cpuSpent(snap(0, 1, 1, 10, 2), snap(1000, 2, 1.5, 12, 2.5), { generator: false, etcd: false })).toMatchObject({ peers: 0.5, other: 0 });
  });
  test('in-process, the generator is inside the mesh figure and not subtracted twice', () => {
    expect(cpuSpent(snap(0, 1, 1, 10), snap(1000, 2, 2, 11), { generator: true, etcd: false }).other).toBe(0);
  });
  test('when the mesh figure is the whole process tree, etcd (inside it) is not subtracted twice', () => {
    const withEtcd = (atMs: number, mesh: number, etcd: number, busy: number): CpuSnapshot => ({ atMs, mesh, etcd, peers: 0, generator: 0, system: { busy, steal: 0 } });
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
  const cpu = (mesh: number) => ({ seconds: 1, mesh, etcd: 0, peers: 0, generator: 0, other: 0, steal: 0 });
  const hello = { service: 'hello', cluster: 'east' };
  const ledger = { service: 'ledger', cluster: 'west' };
  test('added figures are taken against the baseline of the same rate', () => {
    const rows = buildRows([
      { scenario: 'baseline', side: 'origin', expect: ledger, result: result(100, Array(100).fill(1)), cpu: cpu(0.1) },
      { scenario: 'baseline', side: 'origin', expect: ledger, result: result(200, Array(100).fill(2)), cpu: cpu(0.1) },
      { scenario: 'cross-cluster', side: 'isthmus', expect: ledger, result: result(200, Array(100).fill(5)), cpu: cpu(0.3) },
    ]);
    expect(rows[0]?.addedP50Ms).toBeUndefined();
    expect(rows[2]).toMatchObject({ addedP50Ms: 3, addedP99Ms: 3, cpuSecondsPer1000: 3, achievedRps: 200 });
    expect(rows[2]?.addedCpuSecondsPer1000).toBeCloseTo(2);
  });
  test('each chain is measured against the baseline of the app it ends at, never another app\'s', () => {
    const rows = buildRows([
      { scenario: 'baseline', side: 'origin', expect: hello, result: result(1000, Array(100).fill(0.8)), cpu: cpu(0.1) },
      { scenario: 'same-cluster', side: 'isthmus', expect: hello, result: result(1000, Array(100).fill(1.5)), cpu: cpu(0.1) },
      { scenario: 'same-cluster', side: 'peer', expect: hello, result: result(1000, Array(100).fill(1.1)), cpu: cpu(0.1) },
      { scenario: 'baseline', side: 'origin', expect: ledger, result: result(1000, Array(100).fill(1.0)), cpu: cpu(0.1) },
      { scenario: 'cross-cluster', side: 'isthmus', expect: ledger, result: result(1000, Array(100).fill(1.6)), cpu: cpu(0.1) },
      { scenario: 'cross-cluster', side: 'peer', expect: { service: 'ledger', cluster: 'east' }, result: result(1000, Array(100).fill(1.6)), cpu: cpu(0.1) },
    ]);
    expect(rows.map((r) => [r.label, r.addedP50Ms === undefined ? undefined : Number(r.addedP50Ms.toFixed(2))])).toEqual([
      ['baseline hello', undefined], ['isthmus same-cluster', 0.7], ['peer same-cluster', 0.3],
      ['baseline ledger', undefined], ['isthmus cross-cluster', 0.6],
      // ledger in another cluster is another app: no baseline of its own, no "added" figure.
      ['peer cross-cluster', undefined],
    ]);
  });
});

describe('which processes are a chain\'s proxies', () => {
  const hello = { service: 'hello', cluster: 'east' };
  const ledger = { service: 'ledger', cluster: 'west' };
  const bin = ['/usr/bin/node', '--import', 'file:///x/dist/dev/parent-watch.js', '/x/bin/isthmus.js'];
  test.each([
    [[...bin, 'sidecar', '--config', '/tmp/b/sidecars/east/client/sidecar.yaml', '--log-format', 'json'], { kind: 'sidecar', cluster: 'east', instance: 'client' }],
    [[...bin, 'sidecar', '--config', '/tmp/b/sidecars/west/ledger-west-1/sidecar.yaml'], { kind: 'sidecar', cluster: 'west', instance: 'ledger-west-1' }],
    [[...bin, 'gateway', '--config', '/tmp/b/clusters/west/cluster.yaml', '--id', 'gw-1'], { kind: 'gateway', cluster: 'west', id: 'gw-1' }],
    [['etcd', '--data-dir', '/tmp/b/etcd'], undefined],
    [[...bin, 'dev', 'up', '--clusters', 'east,west'], undefined],
  ])('%j is %j', (args, role) => {
    expect(ourRole(args)).toEqual(role);
  });
  test.each([
    ['east client sidecar', { kind: 'sidecar', cluster: 'east', instance: 'client' } as const, [hello, ledger]],
    ['west client sidecar (requests do not start there)', { kind: 'sidecar', cluster: 'west', instance: 'client' } as const, []],
    ['east hello sidecar, either zone', { kind: 'sidecar', cluster: 'east', instance: 'hello-east-2' } as const, [hello]],
    ['west hello sidecar', { kind: 'sidecar', cluster: 'west', instance: 'hello-west-1' } as const, []],
    ['west ledger sidecar', { kind: 'sidecar', cluster: 'west', instance: 'ledger-west-1' } as const, [ledger]],
    ['west gateway', { kind: 'gateway', cluster: 'west', id: 'gw-1' } as const, [ledger]],
    ['east gateway (same-cluster requests do not use it)', { kind: 'gateway', cluster: 'east', id: 'gw-1' } as const, []],
  ])('%s carries the right chains', (_, role, carries) => {
    expect(ourCarries(role, [hello, ledger], 'east')).toEqual(carries);
  });
  test('peak RSS is VmHWM in bytes', () => {
    expect(parsePeakRss('Name:\tnginx\nVmPeak:\t  20000 kB\nVmHWM:\t    9876 kB\nVmRSS:\t 9000 kB\n')).toBe(9876 * 1024);
    expect(() => parsePeakRss('Name:\tx\n')).toThrow(/VmHWM/);
  });
  test('a chain sums only its side\'s processes that carry its destination', () => {
    const processes: ProxyProcess[] = [
      { side: 'peer', name: 'outbound', pid: 1, carries: [hello, ledger], includesOrigin: false },
      { side: 'peer', name: 'gateway', pid: 2, carries: [ledger], includesOrigin: false },
      { side: 'peer', name: 'inbound hello', pid: 3, carries: [hello], includesOrigin: false },
      { side: 'isthmus', name: 'client', pid: 4, carries: [hello, ledger], includesOrigin: false },
    ];
    const reading = (cpu: number[], rss: number[]): ProcessReadings => new Map(cpu.map((c, i) => [i + 1, { cpuSeconds: c, peakRssBytes: rss[i] as number }]));
    const spent = proxiesSpent(processes, 'peer', ledger, reading([1, 1, 1, 1], [0, 0, 0, 0]), reading([1.5, 1.25, 9, 9], [10e6, 5e6, 7e6, 99e6]));
    expect(spent).toMatchObject({ cpuSeconds: 0.75, peakRssBytes: 15e6 });
    expect(spent.processes.map((p) => p.name)).toEqual(['outbound', 'gateway']);
    expect(proxiesSpent(processes, 'isthmus', { service: 'nope', cluster: 'x' }, reading([], []), reading([], [])).cpuSeconds).toBeNaN();
  });
  describe('a process named for a chain that carried none of it while it was primed is not counted', () => {
    const ours: ProxyProcess[] = [
      { side: 'isthmus', name: 'sidecar east/client', pid: 1, carries: [hello, ledger], includesOrigin: false },
      { side: 'isthmus', name: 'sidecar east/hello-east-1', pid: 2, carries: [hello], includesOrigin: false },
      { side: 'isthmus', name: 'sidecar east/hello-east-2', pid: 3, carries: [hello], includesOrigin: false },
      { side: 'isthmus', name: 'gateway west/gw-1', pid: 4, carries: [ledger], includesOrigin: false },
      { side: 'isthmus', name: 'gateway west/gw-2', pid: 5, carries: [ledger], includesOrigin: false },
      { side: 'peer', name: 'nginx inbound', pid: 6, carries: [hello], includesOrigin: false },
    ];
    const cpu = (seconds: number[]): ProcessReadings => new Map(seconds.map((c, i) => [i + 1, { cpuSeconds: c, peakRssBytes: 0 }]));
    const zero = cpu([0, 0, 0, 0, 0, 0]);
    test.each([
      // CPU seconds while the chain was primed: client, hello-east-1, hello-east-2, gw-1, gw-2, nginx.
      ["the other zone's hello sidecar, idle (1.5% of the client)", hello, [0.4, 0.35, 0.006, 0, 0, 0.2], ['sidecar east/hello-east-1']],
      ['both hello sidecars when the balancer spreads over zones', hello, [0.4, 0.18, 0.17, 0, 0, 0.2], ['sidecar east/hello-east-1', 'sidecar east/hello-east-2']],
      ['two gateways sharing a cluster\'s traffic (a fifth of the client each)', ledger, [0.4, 0.01, 0.01, 0.09, 0.08, 0], ['gateway west/gw-1', 'gateway west/gw-2']],
    ])('%s', (_, destination, seconds, counted) => {
      const idle = idleCarriers(ours, destination, zero, cpu(seconds));
      const after = withoutCarriers(ours, idle.map((i) => i.process), destination);
      expect(after.filter((p) => p.side === 'isthmus' && p.name !== 'sidecar east/client' && p.carries.some((d) => d.service === destination.service)).map((p) => p.name)).toEqual(counted);
      // The peers' processes and the other chain are left as they were.
      expect(after.find((p) => p.side === 'peer')).toEqual(ours[5]);
      expect(after.find((p) => p.name === 'sidecar east/client')?.carries).toEqual([hello, ledger]);
    });
    test('a sample sidecar whose inbound counts are known is judged by them, not by its CPU', () => {
      // hello-east-2 spent a fifth of the busiest's CPU (a collection, say) but answered nothing.
      const busyIdle = idleCarriers(ours, hello, zero, cpu([0.05, 0.04, 0.01, 0, 0, 0.02]), 0.1, { before: new Map([[2, 100], [3, 7]]), after: new Map([[2, 400], [3, 7]]) });
      expect(busyIdle.map((i) => [i.process.name, i.by])).toEqual([['sidecar east/hello-east-2', 'requests']]);
      // It answered a few requests with hardly any CPU: it carried the chain, so it counts.
      const quietCarrier = idleCarriers(ours, hello, zero, cpu([0.4, 0.35, 0.001, 0, 0, 0.2]), 0.1, { before: new Map([[2, 0], [3, 0]]), after: new Map([[2, 900], [3, 3]]) });
      expect(quietCarrier).toEqual([]);
      // No count for it (its admin port did not answer): the CPU rule decides.
      const unknown = idleCarriers(ours, hello, zero, cpu([0.4, 0.35, 0.006, 0, 0, 0.2]), 0.1, { before: new Map([[2, 0]]), after: new Map([[2, 900]]) });
      expect(unknown.map((i) => [i.process.name, i.by])).toEqual([['sidecar east/hello-east-2', 'cpu']]);
    });
    test('a gateway whose byte count is known is judged by it: one that carried bytes counts however little CPU its relay used', () => {
      // gw-1 (native relay) used 2% of the client's CPU in a short window's clock ticks but carried the chain's bytes; gw-2 carried none.
      const idle = idleCarriers(ours, ledger, zero, cpu([0.5, 0, 0, 0.01, 0.01, 0]), 0.1, { before: new Map([[4, 1000], [5, 40]]), after: new Map([[4, 250_000], [5, 40]]) });
      expect(idle.map((i) => [i.process.name, i.by])).toEqual([['gateway west/gw-2', 'requests']]);
    });
    test('a process gone or a window with no CPU at all leaves the naming as it was', () => {
      expect(idleCarriers(ours, hello, zero, new Map([[1, { cpuSeconds: 0.4, peakRssBytes: 0 }]]))).toEqual([]);
      expect(idleCarriers(ours, hello, zero, zero)).toEqual([]);
    });
    test('a process left carrying nothing is dropped from the list', () => {
      const idle = idleCarriers(ours, hello, zero, cpu([0.4, 0.35, 0.006, 0, 0, 0.2]));
      expect(withoutCarriers(ours, idle.map((i) => i.process), hello).map((p) => p.name)).not.toContain('sidecar east/hello-east-2');
    });
  });
});

describe('rows and ratios against the peer chain', () => {
  const result = (rate: number, latency: number, n = 100): OpenLoopResult => {
    const sample = new LatencySample();
    for (let i = 0; i < n; i += 1) sample.record(latency);
    return { rate, scheduled: n, sent: n, ok: n, failed: 0, failures: {}, latency: sample, sendLag: new LatencySample(), elapsedSeconds: n / rate, bytes: 100 };
  };
  const cpu = { seconds: 1, mesh: 0, etcd: 0, peers: 0, generator: 0, other: 0, steal: 0 };
  const proxies = (cpuSeconds: number, peakRssBytes: number) => ({ cpuSeconds, peakRssBytes, processes: [{ name: 'p', cpuSeconds, peakRssBytes }] });
  const hello = { service: 'hello', cluster: 'east' };
  const ledger = { service: 'ledger', cluster: 'west' };
  const rows = buildRows([
    { scenario: 'baseline', side: 'origin', expect: hello, result: result(1000, 1), cpu, proxies: proxies(0.01, 100e6) },
    { scenario: 'same-cluster', side: 'isthmus', expect: hello, result: result(1000, 1.9), cpu, proxies: proxies(0.05, 120e6) },
    { scenario: 'same-cluster', side: 'peer', expect: hello, result: result(1000, 1.3), cpu, proxies: proxies(0.02, 20e6) },
    { scenario: 'baseline', side: 'origin', expect: ledger, result: result(1000, 1), cpu, proxies: proxies(0.01, 100e6) },
    { scenario: 'cross-cluster', side: 'isthmus', expect: ledger, result: result(1000, 2.2), cpu, proxies: proxies(0.03, 150e6) },
    { scenario: 'cross-cluster', side: 'peer', expect: ledger, result: result(1000, 1.4), cpu, proxies: proxies(0.02, 30e6) },
  ]);
  test('each row has its side\'s proxies, per 1000 answers; the baselines have none', () => {
    expect(rows.map((r) => [r.label, r.proxiesCpuSecondsPer1000, r.proxiesPeakRssMb])).toEqual([
      ['baseline hello', undefined, undefined],
      ['isthmus same-cluster', 0.5, 120], ['peer same-cluster', 0.2, 20],
      ['baseline ledger', undefined, undefined],
      ['isthmus cross-cluster', 0.3, 150], ['peer cross-cluster', 0.2, 30],
    ]);
  });
  test('proxies that also serve the apps (one process) count the chain minus the baseline', () => {
    const [, ours] = buildRows([
      { scenario: 'baseline', side: 'origin', expect: hello, result: result(1000, 1), cpu, proxies: proxies(0.01, 100e6), proxiesIncludeOrigin: true },
      { scenario: 'same-cluster', side: 'isthmus', expect: hello, result: result(1000, 2), cpu, proxies: proxies(0.05, 120e6), proxiesIncludeOrigin: true },
    ]);
    expect(ours?.proxiesCpuSecondsPer1000).toBeCloseTo(0.4);
  });
  test.each([
    [1.5, 1, 1.5, 'met'], [3.1, 1, 1.5, 'missed'], [2, 1, undefined, 'no target'], [1, 0, 2, 'no ratio'], [1, -0.1, 2, 'no ratio'], [Number.NaN, 1, 2, 'no ratio'], [-0.2, 0.5, 1.5, 'met'],
  ])('ratioOf(%d, %d) against %s: %s', (ours, peer, target, verdict) => {
    expect(ratioOf(ours, peer, target).verdict).toBe(verdict);
  });
  const comparisons = compareRows(rows);
  test('each chain compares added p50, added p99, CPU and RSS, with the issue\'s targets', () => {
    const cross = comparisons.filter((c) => c.chain === 'cross-cluster');
    expect(cross.map((c) => [c.figure, c.target, c.verdict])).toEqual([
      ['added p50 ms', 1.5, 'missed'], ['added p99 ms', 2, 'missed'], ['proxies CPU s/1k req', 2, 'met'], ['proxies peak RSS MB', undefined, 'no target'],
    ]);
    expect(cross[0]?.ratio).toBeCloseTo(3);
    expect(cross[3]?.ratio).toBeCloseTo(5);
  });
  test('at 2000 requests/s, p50 itself is compared too (no queueing: within 2×)', () => {
    const at2000 = buildRows([
      { scenario: 'baseline', side: 'origin', expect: ledger, result: result(2000, 1), cpu },
      { scenario: 'cross-cluster', side: 'isthmus', expect: ledger, result: result(2000, 30), cpu },
      { scenario: 'cross-cluster', side: 'peer', expect: ledger, result: result(2000, 1.5), cpu },
    ]);
    expect(compareRows(at2000).find((c) => c.figure === 'p50 ms')).toMatchObject({ ratio: 20, target: 2, verdict: 'missed' });
  });
  test('a point during which other processes were busy marks its chain\'s verdicts', () => {
    const busy = rows.map((r) => (r.label === 'peer cross-cluster' ? { ...r, otherCpuPerSecond: 1.2 } : r));
    const marked = compareRows(busy);
    expect(marked.filter((c) => c.busyMachine).map((c) => c.chain)).toEqual(Array(4).fill('cross-cluster'));
    const table = formatComparisons(marked);
    expect(table.split('\n')[0]).toContain('"(busy machine)"');
    expect(table).toContain('≤ 2×: met (busy machine)');
    expect(table).toContain('no ratio target\n');
  });
  test('a machine-wide stall of 10 ms or more in ours, the peer\'s or that chain\'s baseline\'s window marks that rate\'s p99 ratio only', () => {
    const stalled = (label: string, maxMs: number) => rows.map((r) => (r.label === label ? { ...r, machineStalls: { count: 1, maxMs, totalMs: maxMs } } : { ...r, machineStalls: { count: 0, maxMs: 0, totalMs: 0 } }));
    const marked = (label: string, maxMs: number) => compareRows(stalled(label, maxMs)).filter((c) => c.machineStall).map((c) => `${c.chain} ${c.figure}`);
    expect(marked('peer cross-cluster', 24)).toEqual(['cross-cluster added p99 ms']);
    expect(marked('isthmus same-cluster', 10)).toEqual(['same-cluster added p99 ms']);
    expect(marked('baseline hello', 30)).toEqual(['same-cluster added p99 ms']);
    expect(marked('baseline ledger', 30)).toEqual(['cross-cluster added p99 ms']);
    expect(marked('peer cross-cluster', 9.9)).toEqual([]);
    const table = formatComparisons(compareRows(stalled('baseline ledger', 30)));
    expect(table.split('\n')[0]).toContain('"(machine stall)"');
    expect(table).toMatch(/cross-cluster +added p99 ms .*: missed \(machine stall\)\n/);
    expect(table).not.toMatch(/added p50 ms .*machine stall/);
    expect(formatRows(stalled('baseline ledger', 30.4))).toMatch(/^baseline ledger .* 1 \(max 30 ms\)$/m);
  });
  test('a chain measured on one side only is not compared', () => {
    expect(compareRows(rows.filter((r) => r.label !== 'peer same-cluster')).map((c) => c.chain)).not.toContain('same-cluster');
  });
  test('the table per rate (golden)', () => {
    expect(formatComparisons(comparisons)).toBe([
      'at 1000 requests/s: isthmus against the peer chain, same run',
      'chain          figure                isthmus  peer   isthmus/peer  target',
      'same-cluster   added p50 ms          +0.90    +0.30  3.00×         ≤ 1.5×: missed',
      'same-cluster   added p99 ms          +0.90    +0.30  3.00×         ≤ 2×: missed',
      'same-cluster   proxies CPU s/1k req  0.500    0.200  2.50×         ≤ 2×: missed',
      'same-cluster   proxies peak RSS MB   120.0    20.0   6.00×         no ratio target',
      'cross-cluster  added p50 ms          +1.20    +0.40  3.00×         ≤ 1.5×: missed',
      'cross-cluster  added p99 ms          +1.20    +0.40  3.00×         ≤ 2×: missed',
      'cross-cluster  proxies CPU s/1k req  0.300    0.200  1.50×         ≤ 2×: met',
      'cross-cluster  proxies peak RSS MB   150.0    30.0   5.00×         no ratio target',
    ].join('\n'));
  });
  test('each chain\'s proxies are also shown one by one, in µs of CPU per answered request', () => {
    const [, , ...lines] = formatProxyCpu(rows as Row[]).split('\n');
    expect(lines).toEqual([
      'isthmus same-cluster   1000  p 500',
      'peer same-cluster      1000  p 200',
      'isthmus cross-cluster  1000  p 300',
      'peer cross-cluster     1000  p 200',
    ]);
    expect(formatProxyCpu(rows as Row[]).split('\n')[0]).not.toContain('sample apps');
    expect(formatProxyCpu(rows as Row[], true).split('\n')[0]).toContain('ours is one process with the sample apps here, and its figure includes them');
  });
  test('the rows table labels each side and shows the proxies\' figures', () => {
    const lines = formatRows(rows as Row[]).split('\n');
    expect(lines[0]).toMatch(/^scenario\s+rate\s+achieved rps.*proxies CPU s\/1k\s+proxies RSS MB\s+errors/);
    expect(lines.map((l) => l.split(/\s{2,}/)[0])).toEqual(['scenario', 'baseline hello', 'isthmus same-cluster', 'peer same-cluster', 'baseline ledger', 'isthmus cross-cluster', 'peer cross-cluster']);
  });
});

describe('cold start rows', () => {
  const point = (values: number[], failed = 0) => {
    const latency = new LatencySample();
    for (const v of values) latency.record(v);
    return { rate: 500, scheduled: values.length + failed, sent: values.length + failed, ok: values.length, failed, failures: failed ? { 'status 503': failed } : {}, latency, sendLag: new LatencySample(), elapsedSeconds: 5, bytes: 0 } as OpenLoopResult;
  };
  const fast = Array.from({ length: 100 }, (_, i) => 1 + i / 10);
  test('ours meets the target only with p99 under 50 ms and no errors; the peer has none', () => {
    const rows = coldRows([
      { label: 'isthmus cross-cluster', side: 'isthmus', result: point(fast) },
      { label: 'isthmus cross-cluster', side: 'isthmus', result: point([...fast.slice(2), 60, 70]) },
      { label: 'isthmus cross-cluster', side: 'isthmus', result: point(fast, 1) },
      { label: 'peer cross-cluster', side: 'peer', result: point([...fast.slice(2), 60, 70]) },
    ]);
    expect(rows.map((r) => [r.p99Ms, r.verdict])).toEqual([[10.8, 'met'], [60, 'missed'], [10.8, 'missed'], [60, 'no target']]);
    const table = formatColdRows(rows).split('\n');
    expect(table[0]).toMatch(/^cold start\s+rate\s+p50 ms\s+p99 ms\s+max ms\s+errors\s+target p99 < 50 ms$/);
    expect(table[3]).toMatch(/1 \(status 503: 1\)\s+missed$/);
  });

  test('slow answers are placed in the quarter second they were due in, so a burst at the start reads apart from a stall later', () => {
    const result = { ...point(fast), slow: [{ dueAtMs: 2, ms: 90 }, { dueAtMs: 240, ms: 30 }, { dueAtMs: 3100, ms: 60 }, { dueAtMs: 260, ms: 26 }] };
    const [row] = coldRows([{ label: 'isthmus cross-cluster', side: 'isthmus', result }]);
    expect(row?.slowMoments).toEqual([
      { fromS: 0, toS: 0.25, count: 2, maxMs: 90 },
      { fromS: 0.25, toS: 0.5, count: 1, maxMs: 26 },
      { fromS: 3, toS: 3.25, count: 1, maxMs: 60 },
    ]);
    const text = formatColdRows([row!, ...coldRows([{ label: 'peer cross-cluster', side: 'peer', result: point(fast) }])]);
    expect(text).toContain('isthmus cross-cluster: answers over 25 ms were due at 0.00–0.25 s: 2 (max 90 ms), 0.25–0.50 s: 1 (max 26 ms), 3.00–3.25 s: 1 (max 60 ms)');
    expect(text).toContain('peer cross-cluster: no answer over 25 ms');
  });

  test('the requests our chain carried before the point are printed with it; the peer has no such count', () => {
    const rows = coldRows([
      { label: 'isthmus cross-cluster', side: 'isthmus', result: point(fast), carriedBefore: 1 },
      { label: 'peer cross-cluster', side: 'peer', result: point(fast) },
    ]);
    expect(rows.map((r) => r.carriedBefore)).toEqual([1, undefined]);
    const text = formatColdRows(rows);
    expect(text).toMatch(/\nbefore the point:\n {2}isthmus cross-cluster: 1 request to that service through the client sidecar before the first$/);
    expect(formatColdRows(coldRows([{ label: 'isthmus cross-cluster', side: 'isthmus', result: point(fast), carriedBefore: 0 }]))).toContain('0 requests to that service through the client sidecar before the first (a chain no request had crossed)');
    expect(formatColdRows(coldRows([{ label: 'peer cross-cluster', side: 'peer', result: point(fast) }]))).not.toContain('before the point');
  });

  test('counterSum adds a counter\'s series that carry a label, and is 0 when it has none', () => {
    const text = [
      '# HELP isthmus_requests_total Requests the app sent through this sidecar.',
      '# TYPE isthmus_requests_total counter',
      'isthmus_requests_total{source_cluster="east",destination_cluster="west",destination_service="demo/ledger",code="200"} 3',
      'isthmus_requests_total{source_cluster="east",destination_cluster="west",destination_service="demo/ledger",code="503"} 1',
      'isthmus_requests_total{source_cluster="east",destination_cluster="east",destination_service="demo/hello",code="200"} 5',
      'isthmus_requests_total_other{destination_service="demo/ledger"} 100',
      'isthmus_request_duration_seconds_count{destination_service="demo/ledger"} 4',
    ].join('\n');
    expect(counterSum(text, 'isthmus_requests_total', 'destination_service="demo/ledger"')).toBe(4);
    expect(counterSum(text, 'isthmus_requests_total')).toBe(9);
    expect(counterSum(text, 'isthmus_requests_total', 'destination_service="demo/nope"')).toBe(0);
    expect(counterSum('# TYPE isthmus_requests_total counter\n', 'isthmus_requests_total')).toBe(0);
  });
});

describe('parseBenchArgs', () => {
  test('defaults', () => {
    expect(parseBenchArgs([])).toMatchObject({ rates: [1000, 2000], seconds: 10, warmup: 2, output: 'table', mesh: 'child', processes: true, quick: false, hostBase: 60, coldRate: 500, coldSeconds: 5, accessLog: false });
    expect(parseBenchArgs(['--access-log', '--quick'])).toMatchObject({ accessLog: true, quick: true });
    expect(parseBenchArgs([])).toMatchObject({ upgradeToHttp2: false });
    expect(parseBenchArgs(['--upgrade-to-http2', '--cold-only'])).toMatchObject({ upgradeToHttp2: true, coldOnly: true });
    expect(parseBenchArgs([])).toMatchObject({ gatewayRelay: 'native' });
    expect(parseBenchArgs(['--gateway-relay', 'node'])).toMatchObject({ gatewayRelay: 'node' });
    expect(() => parseBenchArgs(['--gateway-relay', 'fast'])).toThrow(/--gateway-relay must be "native" or "node", not "fast"/);
  });
  test('--cold-rate 0 skips the cold-start point; --cold-seconds sets its length', () => {
    expect(parseBenchArgs(['--cold-rate', '0', '--cold-seconds', '3'])).toMatchObject({ coldRate: 0, coldSeconds: 3 });
  });
  test('--quick: one rate, short points, unless told otherwise', () => {
    expect(parseBenchArgs(['--quick'])).toMatchObject({ rates: [1000], seconds: 5, warmup: 2, quick: true, processes: true });
    expect(parseBenchArgs(['--quick', '--rates', '500', '--seconds', '3'])).toMatchObject({ rates: [500], seconds: 3, quick: true });
  });
  test.each([
    [['--processes'], true], [['--processes', 'true'], true], [['--processes=true', '--rates', '1000'], true],
    [['--no-processes'], false], [['--processes', 'false'], false], [['--processes=false'], false],
    [['--processes', '--rates', '1000'], true], [['--mesh', 'in-process'], false], [['--mesh', 'in-process', '--no-processes'], false], [[], true],
  ])('%j: processes %s', (argv, processes) => {
    expect(parseBenchArgs(argv)).toMatchObject({ processes });
  });
  test('--processes followed by another flag leaves that flag alone', () => {
    expect(parseBenchArgs(['--processes', '--rates', '1000'])).toMatchObject({ rates: [1000], processes: true });
  });
  test.each([
    [['--rates', '0']], [['--rates', '200,abc']], [['--seconds', '61']], [['--output', 'yaml']], [['--mesh', 'docker']],
    [['--rates', '5000,5000,5000,5000,5000,5000', '--seconds', '60']], [['--frobnicate']], [['--cpu-prof', 'x', '--mesh', 'in-process']],
    [['--processes=maybe']], [['--processes', '--mesh', 'in-process']], [['--cold-rate', '-1']], [['--cold-seconds', '0']], [['--cold-seconds', '31']],
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
    etcd: '', trustDomain: 'bench.isthmus', ca: '', operator: '',
    clusters: {
      east: cluster('127.0.60.1', [{ name: 'hello', namespace: 'demo', instances: ['127.0.60.1:18080'] }]),
      west: cluster('127.0.61.1', [{ name: 'ledger', namespace: 'demo', instances: ['127.0.61.1:18082'] }]),
    },
  };
  test('each chain\'s baseline goes straight to the app it ends at; both chains start at the east client proxy', () => {
    expect(benchTargets(mesh).map((t) => [targetLabel(t), t.firstHop, t.path])).toEqual([
      ['baseline hello', '127.0.60.1:18080', '/?size=1024'],
      ['isthmus same-cluster', '127.0.60.1:15001', 'http://hello.demo.mesh/?size=1024'],
      ['baseline ledger', '127.0.61.1:18082', '/?size=1024'],
      ['isthmus cross-cluster', '127.0.60.1:15001', 'http://ledger.demo.mesh/?size=1024'],
    ]);
  });
  test('with the peer chain, each of its chains follows ours, to the same service and the same app', () => {
    expect(benchTargets(mesh, '127.0.60.2:4001').map((t) => [targetLabel(t), t.firstHop, t.path, `${t.expect.service}@${t.expect.cluster}`])).toEqual([
      ['baseline hello', '127.0.60.1:18080', '/?size=1024', 'hello@east'],
      ['isthmus same-cluster', '127.0.60.1:15001', 'http://hello.demo.mesh/?size=1024', 'hello@east'],
      ['peer same-cluster', '127.0.60.2:4001', 'http://hello.demo.mesh/?size=1024', 'hello@east'],
      ['baseline ledger', '127.0.61.1:18082', '/?size=1024', 'ledger@west'],
      ['isthmus cross-cluster', '127.0.60.1:15001', 'http://ledger.demo.mesh/?size=1024', 'ledger@west'],
      ['peer cross-cluster', '127.0.60.2:4001', 'http://ledger.demo.mesh/?size=1024', 'ledger@west'],
    ]);
    expect(chainOrigins(mesh)).toEqual({ 'same-cluster': '127.0.60.1:18080', 'cross-cluster': '127.0.61.1:18082' });
  });
  test('a mesh without west is refused', () => {
    expect(() => benchTargets({ ...mesh, clusters: { east: mesh.clusters.east! } })).toThrow(/east.*west/);
  });
});

describe('peer chain configuration', () => {
  const tls = { certChain: '/t/chain.pem', key: '/t/key.pem', rootCa: '/t/root.pem' };
  const lines = (text: string) => text.split('\n').map((l) => l.trim());
  const outbound = renderNginxOutbound({
    prefix: '/t/out', listen: '127.0.60.2:4001', tls, keepalive: 64,
    routes: [
      { host: 'hello.demo.mesh', upstream: '127.0.60.2:4002', sniName: 'hello.demo.mesh' },
      { host: 'ledger.demo.mesh', upstream: '127.0.61.2:4003', sniName: 'ledger.demo.mesh' },
    ],
  });
  const inbound = renderNginxInbound({ prefix: '/t/in', listen: '127.0.61.2:4004', serverName: 'ledger.demo.mesh', tls, origin: '127.0.61.1:18082', keepalive: 32 });
  const gateway = renderHaproxyGateway({ listen: '127.0.61.2:4003', routes: [{ sniName: 'ledger.demo.mesh', backend: '127.0.61.2:4004' }, { sniName: 'hello.demo.mesh', backend: '127.0.61.2:4005' }] });

  test.each([
    ['outbound', outbound], ['inbound', inbound],
  ])('%s nginx: one process in the foreground, its files in its own directory, keep-alive without a request limit', (_, text) => {
    expect(lines(text)).toEqual(expect.arrayContaining(['daemon off;', 'master_process off;', 'worker_processes 1;', 'access_log off;', 'keepalive_requests 1000000;', 'tcp_nodelay on;']));
    expect(text).not.toMatch(/\/var\/|\/etc\//);
  });
  test.each([
    'upstream route_0 {', 'server 127.0.60.2:4002;', 'upstream route_1 {', 'server 127.0.61.2:4003;', 'keepalive 64;',
    'server_name hello.demo.mesh;', 'proxy_pass https://route_0;', 'server_name ledger.demo.mesh;', 'proxy_pass https://route_1;',
    'proxy_ssl_name ledger.demo.mesh;', 'proxy_ssl_server_name on;', 'proxy_ssl_protocols TLSv1.3;', 'proxy_ssl_verify on;',
    'proxy_ssl_certificate /t/chain.pem;', 'proxy_ssl_certificate_key /t/key.pem;', 'proxy_ssl_trusted_certificate /t/root.pem;',
    'proxy_http_version 1.1;', 'proxy_set_header Connection "";', 'listen 127.0.60.2:4001 default_server;', 'return 404;',
  ])('outbound nginx has %j', (line) => {
    expect(lines(outbound)).toContain(line);
  });
  test('outbound: each route sends its own SNI to its own upstream', () => {
    const ledger = outbound.slice(outbound.indexOf('server_name ledger.demo.mesh;'));
    expect(ledger.indexOf('proxy_pass https://route_1;')).toBeLessThan(ledger.indexOf('proxy_ssl_name ledger.demo.mesh;'));
    expect(ledger).not.toContain('hello.demo.mesh');
  });
  test.each([
    'listen 127.0.61.2:4004 ssl;', 'ssl_protocols TLSv1.3;', 'ssl_verify_client on;', 'ssl_client_certificate /t/root.pem;', 'ssl_verify_depth 2;',
    'ssl_certificate /t/chain.pem;', 'server 127.0.61.1:18082;', 'keepalive 32;', 'proxy_pass http://origin;',
    'proxy_set_header x-forwarded-client-cert "Hash=$ssl_client_fingerprint;Subject=\\"$ssl_client_s_dn\\"";',
  ])('inbound nginx has %j', (line) => {
    expect(lines(inbound)).toContain(line);
  });
  test('inbound: an access log only when asked, at server level (the http level turns logs off)', () => {
    expect(inbound).not.toContain('peer_mtls');
    const logged = renderNginxInbound({ prefix: '/t/in', listen: '127.0.61.2:4004', serverName: 'x', tls, origin: '127.0.61.1:1', keepalive: 1, accessLog: '/t/in/access.log' });
    expect(logged.indexOf('access_log /t/in/access.log peer_mtls;')).toBeGreaterThan(logged.indexOf('server {'));
  });
  test.each([
    'nbthread 1', 'mode tcp', 'bind 127.0.61.2:4003', 'tcp-request inspect-delay 5s', 'tcp-request content accept if { req.ssl_hello_type 1 }',
    'use_backend inbound_0 if { req.ssl_sni -i ledger.demo.mesh }', 'use_backend inbound_1 if { req.ssl_sni -i hello.demo.mesh }',
    'server inbound_0 127.0.61.2:4004', 'server inbound_1 127.0.61.2:4005',
  ])('HAProxy gateway has %j', (line) => {
    expect(lines(gateway)).toContain(line);
  });
  test('HAProxy gateway has no default backend: an unknown SNI is closed, not sent somewhere', () => {
    expect(gateway).not.toContain('default_backend');
  });
  test.each([['plain', '"plain"'], ['a "b" c', '"a \\"b\\" c"'], ['back\\slash', '"back\\\\slash"']])('nginxQuote(%j) is %s', (value, quoted) => {
    expect(nginxQuote(value)).toBe(quoted);
  });
});

describe('peer chain (nginx → HAProxy → nginx with certificates from our CA), started for real', () => {
  test('a request crosses the cross-cluster peer chain with 200, and the inbound verified the client certificate', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'isthmus-peer-test-'));
    const origin = await startSampleInstance({ service: 'ledger', cluster: 'west', zone: 'west-a', instance: 'ledger-west-1', host: '127.0.0.1', port: 0 });
    let chain: PeerChain | undefined;
    try {
      chain = await startPeerChain({
        dir, trustDomain: 'bench.isthmus', namespace: 'demo', clientCluster: 'east', accessLogs: true, requestLogs: true,
        hosts: { east: '127.0.0.1', west: '127.0.0.1' },
        services: [{ name: 'ledger', cluster: 'west', origin: origin.address }],
      });
      expect(chain.processes.map((p) => p.name)).toEqual(['nginx inbound-ledger-west', 'haproxy gateway-west', 'nginx outbound-east']);
      expect(processesMentioning(dir).sort()).toEqual(chain.processes.map((p) => p.pid).sort());
      const pool = new Pool(`http://${chain.outbound}`, { connections: 2 });
      try {
        for (let i = 0; i < 5; i += 1) {
          const res = await pool.request({ method: 'GET', path: 'http://ledger.demo.mesh/', headers: { host: 'ledger.demo.mesh' } });
          const body = await res.body.json() as { service: string; cluster: string; caller: string | null };
          expect(res.statusCode).toBe(200);
          expect(body).toMatchObject({ service: 'ledger', cluster: 'west' });
          // The inbound hands the app the client certificate it checked: the outbound's leaf.
          expect(body.caller).toMatch(/^Hash=[0-9a-f]{40};Subject="O=bench\.isthmus"$/);
        }
        const unknown = await pool.request({ method: 'GET', path: 'http://nobody.demo.mesh/', headers: { host: 'nobody.demo.mesh' } });
        await unknown.body.dump();
        expect(unknown.statusCode).toBe(404);
      } finally {
        await pool.close();
      }
      // nginx writes its access log line when the request ends, before the answer is complete
      // for the client; still, poll briefly rather than rely on that.
      const lines = await waitForLines(chain.accessLogs.ledger as string, 5);
      expect(lines).toEqual(Array(5).fill('SUCCESS "O=bench.isthmus" TLSv1.3 200'));
      // --access-log: a JSON line per request on both nginx sidecars (the 404 of an unknown host is not a route's, and not logged).
      expect(Object.keys(chain.requestLogs).sort()).toEqual(['inbound-ledger-west', 'outbound-east']);
      for (const [name, file] of Object.entries(chain.requestLogs)) {
        const records = (await waitForLines(file, 5)).map((line) => JSON.parse(line) as Record<string, string>);
        expect(records, name).toHaveLength(5);
        for (const r of records) expect(r, name).toMatchObject({ method: 'GET', path: '/', status: '200' });
        expect(Number(records[0]!.responseBytes), name).toBeGreaterThan(100);
        if (name.startsWith('inbound')) expect(records[0]!.caller).toBe('O=bench.isthmus');
      }
    } finally {
      const pids = chain?.processes.map((p) => p.pid) ?? [];
      await chain?.stop();
      await origin.close();
      rmSync(dir, { recursive: true, force: true });
      for (const pid of pids) expect(isAlive(pid)).toBe(false);
      expect(processesMentioning(dir)).toEqual([]);
    }
  }, 30_000);
});

describe('peer chain streaming bodies (npm run bench:bulk), started for real', () => {
  test('with streamBodies a 20 MB upload to the sample app\'s /upload and a 20 MB download cross it whole; with nginx\'s defaults the upload is refused (413)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'isthmus-peer-bulk-'));
    const origin = await startSampleInstance({ service: 'ledger', cluster: 'west', zone: 'west-a', instance: 'ledger-west-1', host: '127.0.0.1', port: 0 });
    const chains: PeerChain[] = [];
    try {
      const start = async (streamBodies: boolean) => {
        const chain = await startPeerChain({
          dir: join(dir, String(streamBodies)), trustDomain: 'bench.isthmus', namespace: 'demo', clientCluster: 'east', streamBodies,
          hosts: { east: '127.0.0.1', west: '127.0.0.1' }, services: [{ name: 'ledger', cluster: 'west', origin: origin.address }],
        });
        chains.push(chain);
        return chain;
      };
      const size = 20_000_000;
      const streamed = await start(true);
      const up = await transfer(streamed.outbound, true, 'upload', size);
      expect(up).toMatchObject({ bytes: size });
      expect(up.error).toBeUndefined();
      const down = await transfer(streamed.outbound, true, 'download', size);
      expect(down.error).toBeUndefined();
      const buffered = await start(false);
      expect((await transfer(buffered.outbound, true, 'upload', size)).error).toBe('status 413');
    } finally {
      for (const chain of chains) await chain.stop();
      await origin.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('peerBinary', () => {
  test('PATH first, then /usr/sbin (where Debian installs nginx and HAProxy, often off a non-root PATH)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'isthmus-peer-bin-'));
    try {
      writeFileSync(join(dir, 'nginx'), '');
      expect(peerBinary('nginx', `/nonexistent:${dir}`)).toBe(join(dir, 'nginx'));
      expect(peerBinary('haproxy', '/nonexistent')).toBe('/usr/sbin/haproxy');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('peer chain start-up failures', () => {
  test('a proxy that cannot start fails the start with its name, and nothing started before it is left running', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'isthmus-peer-test-'));
    try {
      // The inbound (real nginx) starts first; the gateway's binary does not exist.
      const started = startPeerChain({
        dir, trustDomain: 'bench.isthmus', namespace: 'demo', clientCluster: 'east', haproxy: join(dir, 'no-such-haproxy'),
        hosts: { east: '127.0.0.1', west: '127.0.0.1' },
        services: [{ name: 'ledger', cluster: 'west', origin: '127.0.0.1:9' }],
      });
      await expect(started).rejects.toThrow(/haproxy gateway-west .*could not run/);
      // It had started (its config is there), and it has exited: no process runs from this
      // directory, and nginx removed its pid file on the way out.
      expect(existsSync(join(dir, 'inbound-ledger-west', 'nginx.conf'))).toBe(true);
      expect(processesMentioning(dir)).toEqual([]);
      expect(existsSync(join(dir, 'inbound-ledger-west', 'nginx.pid'))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});

/** Pids whose command line contains `text` (the test's own temp directory). */
function processesMentioning(text: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(text)) found.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

async function waitForLines(file: string, count: number): Promise<string[]> {
  let lines: string[] = [];
  for (let i = 0; i < 50 && lines.length < count; i += 1) {
    lines = existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : [];
    if (lines.length < count) await new Promise((r) => setTimeout(r, 100));
  }
  return lines;
}
