import { describe, expect, test } from 'vitest';
import { chooseFault, type FaultSettings } from './fault-injection.js';

const policy = 'FaultInjection demo/f';
const delay50: FaultSettings = { policy, delay: { ms: 300, percent: 50 }, headers: [] };
const abortAll: FaultSettings = { policy, abort: { status: 503, percent: 100 }, headers: [] };
const abortNone: FaultSettings = { policy, abort: { status: 503, percent: 0 }, headers: [] };
const grpcAbort: FaultSettings = { policy, abort: { grpcStatus: 14, percent: 100 }, headers: [] };
const both: FaultSettings = { policy, delay: { ms: 100, percent: 100 }, abort: { status: 500, percent: 100 }, headers: [['x-chaos', 'on']] };

describe('chooseFault', () => {
  test.each([
    ['50% delay, draw below', delay50, {}, 0.49, 0.5, { delayMs: 300 }],
    ['50% delay, draw at 50%', delay50, {}, 0.5, 0.5, { delayMs: 0 }],
    ['100% abort, highest draw', abortAll, {}, 0.5, 0.999999, { delayMs: 0, abort: { status: 503 } }],
    ['0% abort, lowest draw', abortNone, {}, 0.5, 0, { delayMs: 0 }],
    ['gRPC abort', grpcAbort, {}, 0, 0, { delayMs: 0, abort: { grpcStatus: 14 } }],
    ['both, header present', both, { 'x-chaos': 'on' }, 0.9, 0.9, { delayMs: 100, abort: { status: 500 } }],
    ['both, header among several values', both, { 'x-chaos': ['off', 'on'] }, 0.9, 0.9, { delayMs: 100, abort: { status: 500 } }],
    ['both, header with another value', both, { 'x-chaos': 'off' }, 0, 0, { delayMs: 0 }],
    ['both, header absent', both, {}, 0, 0, { delayMs: 0 }],
  ] as [string, FaultSettings, Record<string, string | string[]>, number, number, object][])('%s', (_name, fault, headers, u1, u2, expected) => {
    expect(chooseFault(fault, headers, u1, u2)).toEqual(expected);
  });

  test('over a uniform sweep of draws, a 50% delay hits exactly half', () => {
    let delayed = 0;
    for (let i = 0; i < 1000; i += 1) if (chooseFault(delay50, {}, i / 1000, 0).delayMs > 0) delayed += 1;
    expect(delayed).toBe(500);
  });
});
