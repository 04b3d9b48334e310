import { describe, expect, it } from 'vitest';
import { probeWindow, summarize, type ProbeSample } from './gateway-prober.js';

const ok = (ms: number, handshakeMs?: number): ProbeSample => ({ ok: true, ms, ...(handshakeMs === undefined ? {} : { handshakeMs }) });
const fail = (error: string, handshakeMs?: number): ProbeSample => ({ ok: false, error, ...(handshakeMs === undefined ? {} : { handshakeMs }) });
const range = (n: number) => Array.from({ length: n }, (_, i) => ok(i + 1));

describe('summarize (window → published summary)', () => {
  it.each<[string, ProbeSample[], object]>([
    ['an empty window', [], { p50Ms: null, p99Ms: null, minMs: null, maxMs: null, samples: 0, failures: 0, handshakeP50Ms: null }],
    ['one sample', [ok(2.5)], { p50Ms: 2.5, p99Ms: 2.5, minMs: 2.5, maxMs: 2.5, samples: 1, failures: 0, handshakeP50Ms: null }],
    ['two samples: nearest rank, never an interpolation', [ok(3), ok(1)], { p50Ms: 1, p99Ms: 3, minMs: 1, maxMs: 3, samples: 2, failures: 0, handshakeP50Ms: null }],
    ['1..100 ms', range(100), { p50Ms: 50, p99Ms: 99, minMs: 1, maxMs: 100, samples: 100, failures: 0, handshakeP50Ms: null }],
    ['1..60 ms (a full window)', range(probeWindow), { p50Ms: 30, p99Ms: 60, minMs: 1, maxMs: 60, samples: 60, failures: 0, handshakeP50Ms: null }],
    ['rounded to the microsecond', [ok(1.23456789)], { p50Ms: 1.235, p99Ms: 1.235, minMs: 1.235, maxMs: 1.235, samples: 1, failures: 0, handshakeP50Ms: null }],
    ['failures only', [fail('connect ECONNREFUSED'), fail('timeout')], { p50Ms: null, p99Ms: null, minMs: null, maxMs: null, samples: 0, failures: 2, lastError: 'timeout', handshakeP50Ms: null }],
    ['failures among samples: lastError is the latest failure', [ok(4), fail('alert 112'), ok(2), fail('ECONNRESET'), ok(6)], { p50Ms: 4, p99Ms: 6, minMs: 2, maxMs: 6, samples: 3, failures: 2, lastError: 'ECONNRESET', handshakeP50Ms: null }],
    // The round trip never includes the handshake: a first probe that opened the connection
    // counts its request like any other, and its handshake goes to handshakeP50Ms alone.
    ['one opened connection, then reuse', [ok(2, 40), ok(3), ok(1)], { p50Ms: 2, p99Ms: 3, minMs: 1, maxMs: 3, samples: 3, failures: 0, handshakeP50Ms: 40 }],
    ['handshakes: nearest-rank p50 of those in the window', [ok(1, 30), ok(1), fail('ECONNRESET'), ok(2, 50.00049), ok(1, 20)], { p50Ms: 1, p99Ms: 2, minMs: 1, maxMs: 2, samples: 4, failures: 1, lastError: 'ECONNRESET', handshakeP50Ms: 30 }],
    ['a handshake whose request then failed still counts as a handshake', [fail('/healthz answered 503', 25)], { p50Ms: null, p99Ms: null, minMs: null, maxMs: null, samples: 0, failures: 1, lastError: '/healthz answered 503', handshakeP50Ms: 25 }],
  ])('%s', (_what, window, expected) => {
    expect(summarize(window)).toEqual(expected);
  });
});
