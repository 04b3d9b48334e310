import { describe, expect, it } from 'vitest';
import { probeWindow, summarize, type ProbeSample } from './gateway-prober.js';

const ok = (ms: number): ProbeSample => ({ ok: true, ms });
const fail = (error: string): ProbeSample => ({ ok: false, error });
const range = (n: number) => Array.from({ length: n }, (_, i) => ok(i + 1));

describe('summarize (window → published summary)', () => {
  it.each<[string, ProbeSample[], object]>([
    ['an empty window', [], { p50Ms: null, p99Ms: null, minMs: null, maxMs: null, samples: 0, failures: 0 }],
    ['one sample', [ok(2.5)], { p50Ms: 2.5, p99Ms: 2.5, minMs: 2.5, maxMs: 2.5, samples: 1, failures: 0 }],
    ['two samples: nearest rank, never an interpolation', [ok(3), ok(1)], { p50Ms: 1, p99Ms: 3, minMs: 1, maxMs: 3, samples: 2, failures: 0 }],
    ['1..100 ms', range(100), { p50Ms: 50, p99Ms: 99, minMs: 1, maxMs: 100, samples: 100, failures: 0 }],
    ['1..60 ms (a full window)', range(probeWindow), { p50Ms: 30, p99Ms: 60, minMs: 1, maxMs: 60, samples: 60, failures: 0 }],
    ['rounded to the microsecond', [ok(1.23456789)], { p50Ms: 1.235, p99Ms: 1.235, minMs: 1.235, maxMs: 1.235, samples: 1, failures: 0 }],
    ['failures only', [fail('connect ECONNREFUSED'), fail('timeout')], { p50Ms: null, p99Ms: null, minMs: null, maxMs: null, samples: 0, failures: 2, lastError: 'timeout' }],
    ['failures among samples: lastError is the latest failure', [ok(4), fail('alert 112'), ok(2), fail('ECONNRESET'), ok(6)], { p50Ms: 4, p99Ms: 6, minMs: 2, maxMs: 6, samples: 3, failures: 2, lastError: 'ECONNRESET' }],
  ])('%s', (_what, window, expected) => {
    expect(summarize(window)).toEqual(expected);
  });
});
