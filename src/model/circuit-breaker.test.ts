import { describe, expect, test } from 'vitest';
import { breakerVerdict, connectionCap, type BreakerLimits, type BreakerVerdict, type PoolLoad } from './circuit-breaker.js';

const policy = 'CircuitBreaker demo/b';
const open = (limit: 'maxRequests' | 'maxPendingRequests', value: number): BreakerVerdict => ({ open: true, limit, value });
const closed: BreakerVerdict = { open: false };

describe('breakerVerdict', () => {
  const table: [string, PoolLoad, BreakerLimits | undefined, BreakerVerdict][] = [
    ['no breaker: always admitted', { inFlight: 1000, queued: 1000, canSendNow: false }, undefined, closed],
    ['under maxRequests, a connection free', { inFlight: 0, queued: 0, canSendNow: true }, { policy, maxRequests: 1 }, closed],
    ['at maxRequests (in flight)', { inFlight: 1, queued: 0, canSendNow: true }, { policy, maxRequests: 1 }, open('maxRequests', 1)],
    ['at maxRequests (in flight and queued count together)', { inFlight: 1, queued: 1, canSendNow: false }, { policy, maxRequests: 2 }, open('maxRequests', 2)],
    ['must wait, queue has room', { inFlight: 4, queued: 0, canSendNow: false }, { policy, maxPendingRequests: 1 }, closed],
    ['must wait, queue full', { inFlight: 4, queued: 1, canSendNow: false }, { policy, maxPendingRequests: 1 }, open('maxPendingRequests', 1)],
    ['queue full but a connection free: sent, not queued', { inFlight: 4, queued: 1, canSendNow: true }, { policy, maxPendingRequests: 1 }, closed],
    ['maxRequests is checked before the queue', { inFlight: 1, queued: 1, canSendNow: false }, { policy, maxRequests: 1, maxPendingRequests: 1 }, open('maxRequests', 1)],
    ['only maxConnections: waiting is unbounded', { inFlight: 100, queued: 100, canSendNow: false }, { policy, maxConnections: 1 }, closed],
  ];
  test.each(table)('%s', (_name, load, limits, expected) => {
    expect(breakerVerdict(load, limits)).toEqual(expected);
  });
});

test.each([[32, undefined, 32], [32, 4, 4], [2, 100, 2]] as [number, number | undefined, number][])('pool cap %i with maxConnections %s → %i', (cap, max, expected) => {
  expect(connectionCap(cap, max === undefined ? { policy } : { policy, maxConnections: max })).toBe(expected);
});
