import { describe, expect, test } from 'vitest';
import { LatencySample } from './latency-sample.js';
import type { OpenLoopResult } from './open-loop.js';
import { formatPairRounds, pairRound, parsePairBenchArgs } from './pair.js';

/** `latencies`: the answers' times, ms; their median is the round's p50. */
const result = (ok: number, failed = 0, latencies: number[] = []): OpenLoopResult => {
  const latency = new LatencySample();
  for (const ms of latencies) latency.record(ms);
  return { rate: 500, scheduled: ok + failed, sent: ok + failed, ok, failed, failures: {}, latency, sendLag: new LatencySample(), elapsedSeconds: 30, bytes: 1024 };
};

describe('npm run bench:pair', () => {
  test('flags: --against is required, the rest default, bounds are checked', () => {
    expect(() => parsePairBenchArgs([])).toThrow(/--against <checkout> is required/);
    expect(parsePairBenchArgs(['--against', '../other'])).toEqual({ against: '../other', rate: 500, seconds: 30, warmup: 5, rounds: 8, hostBase: 81, output: 'table' });
    expect(parsePairBenchArgs(['--against', '.', '--rounds', '3', '--rate', '800', '-o', 'json'])).toMatchObject({ rounds: 3, rate: 800, output: 'json' });
    expect(() => parsePairBenchArgs(['--against', '.', '--rounds', '31'])).toThrow(/rounds/);
    expect(() => parsePairBenchArgs(['--against', '.', '--frobnicate'])).toThrow(/frobnicate/);
    expect(parsePairBenchArgs(['--help'])).toBe('help');
  });

  test('a round is each side\'s CPU per answered request, its p50 latency, and their ratios; the table ends with the medians', () => {
    const r1 = pairRound(1, { cpuSeconds: 5.7, result: result(15_000, 0, [0.5, 0.9, 0.6]) }, { cpuSeconds: 6.0, result: result(15_000, 2, [0.7, 0.75, 2.0]) });
    expect(r1.oursMicros).toBeCloseTo(380, 6);
    expect(r1.theirsMicros).toBeCloseTo(400, 6);
    expect(r1.ratio).toBeCloseTo(0.95, 6);
    expect(r1.oursP50Ms).toBe(0.6);
    expect(r1.theirsP50Ms).toBe(0.75);
    expect(r1.p50Ratio).toBeCloseTo(0.8, 6);
    expect(r1.failed).toBe(2);
    const r2 = pairRound(2, { cpuSeconds: 4.5, result: result(15_000, 0, [1]) }, { cpuSeconds: 4.5, result: result(15_000, 0, [1]) });
    const r3 = pairRound(3, { cpuSeconds: 1, result: result(0) }, { cpuSeconds: 1, result: result(10) });
    expect(r3.ratio).toBeNaN();
    expect(r3.p50Ratio).toBeNaN();
    const r4 = pairRound(4, { cpuSeconds: 6.3, result: result(15_000, 0, [1.1]) }, { cpuSeconds: 6.0, result: result(15_000, 0, [1]) });
    const table = formatPairRounds([r1, r2, r4]).split('\n');
    expect(table[0]).toMatch(/^round\s+this build µs\/request\s+other build µs\/request\s+this \/ other\s+this p50 ms\s+other p50 ms\s+p50 this \/ other\s+failed/);
    expect(table[1]).toMatch(/^1\s+380\.0\s+400\.0\s+0\.950\s+0\.600\s+0\.750\s+0\.800\s+2/);
    expect(table.at(-1)).toMatch(/^median\s+380\.0\s+400\.0\s+1\.000\s+1\.000\s+1\.000\s+1\.000/);
    expect(formatPairRounds([r3])).toContain('—');
  });
});
