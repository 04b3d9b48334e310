import { describe, expect, test } from 'vitest';
import { breakerVerdict, connectionCap, tunnelVerdict, type BreakerLimits, type BreakerVerdict, type PoolLoad } from './circuit-breaker.js';

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

test.each([
  [32, 4, 0, 4], [32, 4, 3, 1], [32, 4, 4, 1], [32, 4, 9, 1], [2, 100, 5, 2],
] as [number, number, number, number][])('pool cap %i, maxConnections %i, %i tunnels open → %i', (cap, max, tunnels, expected) => {
  expect(connectionCap(cap, { policy, maxConnections: max }, tunnels)).toBe(expected);
});

test.each([
  ['no limits', 5, 5, undefined, { open: false }],
  ['no maxConnections', 5, 5, { policy, maxRequests: 1 }, { open: false }],
  ['room left', 1, 1, { policy, maxConnections: 3 }, { open: false }],
  ['tunnels alone fill it', 0, 2, { policy, maxConnections: 2 }, { open: true, limit: 'maxConnections', value: 2 }],
  ['busy pool connections and tunnels together', 1, 1, { policy, maxConnections: 2 }, { open: true, limit: 'maxConnections', value: 2 }],
] as [string, number, number, BreakerLimits | undefined, unknown][])('tunnel admission: %s', (_name, busy, tunnels, limits, expected) => {
  expect(tunnelVerdict(busy, tunnels, limits)).toEqual(expected);
});
