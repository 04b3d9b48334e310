import { describe, expect, test } from 'vitest';
import { routingTo } from '../../test/helpers/sidecar-fixtures.js';
import type { RetryCondition } from '../model/resilience-policy.js';
import { attemptEndpoints, type AttemptedRequest } from './attempts.js';
import type { OutboundObserver } from './outbound-observer.js';
import type { RoutingTable } from './routing.js';

/**
 * The retry sequence of attemptEndpoints over a real routing table: which endpoint each attempt
 * goes to, given how the earlier ones failed. The attempts fail with the error codes undici and
 * Node raise (retry-policy.ts decides on codes only).
 */
const observer: OutboundObserver = { traced: false, propagate: () => undefined, tried: () => undefined, answered: () => undefined, grpcEnded: () => undefined, handedToTcp: () => undefined };
const failWith = (code: string) => Object.assign(new Error(code), { code });

function request(routing: RoutingTable, conditions: RetryCondition[]): AttemptedRequest {
  return {
    route: routing.route('demo', 'echo')!, service: 'demo/echo', method: 'GET', observer,
    replayable: () => true, gone: () => false, retry: { maxAttempts: 3, conditions: new Set(conditions) },
  };
}

describe('where a retry goes once every endpoint was tried', () => {
  test.each([
    // [how the first two attempts fail, where the third goes ('first', or 'none')]
    [['UND_ERR_HEADERS_TIMEOUT', 'ECONNREFUSED'], 'first', 'a timeout may be tried again there; the refused one not'],
    [['ECONNREFUSED', 'UND_ERR_HEADERS_TIMEOUT'], 'second', 'the latest that allows it: the one that timed out'],
    [['ECONNREFUSED', 'ECONNREFUSED'], 'none', 'refused twice: no endpoint may be tried again'],
  ] as [string[], 'first' | 'second' | 'none', string][])('%j → %s (%s)', async (failures, third) => {
    const routing = routingTo(['127.0.0.1:1', '127.0.0.1:2']);
    const order: string[] = [];
    const outcome = await attemptEndpoints(routing, request(routing, ['connect-failure', 'reset', '5xx']), async (_upstream, endpoint) => {
      order.push(endpoint.address);
      const code = failures[order.length - 1];
      if (code) throw failWith(code);
      return 200;
    });
    expect(new Set(order.slice(0, 2)).size).toBe(2);
    if (third === 'none') {
      expect(order).toHaveLength(2);
      expect(outcome.answered).toBe(false);
    } else {
      expect(order).toHaveLength(3);
      expect(order[2]).toBe(third === 'first' ? order[0] : order[1]);
      expect(outcome).toEqual({ answered: true });
    }
  });
});

describe('what outlier detection hears of an answered attempt', () => {
  // The relays tell each answer's head through retryAnswer (status, and a trailers-only head's
  // grpc-status), and an HTTP/2 relay the grpc-status of trailers that came after a head without one.
  const answer = (status: number, grpcStatus: number | undefined, trailersStatus: number | undefined) =>
    async (_u: unknown, _e: unknown, retryAnswer: (status: number, grpcStatus: number | undefined) => boolean, trailers: (grpcStatus: number) => void) => {
      retryAnswer(status, grpcStatus);
      if (trailersStatus !== undefined) setImmediate(() => trailers(trailersStatus));
      return status;
    };
  test.each([
    // [grpc request, head status, head grpc-status, trailers' grpc-status, ejected after five]
    [true, 200, 14, undefined, true, 'gRPC UNAVAILABLE, trailers-only: a server error'],
    [true, 200, 13, undefined, true, 'gRPC INTERNAL'],
    [true, 200, 5, undefined, false, 'gRPC NOT_FOUND: the caller\'s doing'],
    [true, 200, undefined, 14, true, 'UNAVAILABLE in the trailers, after the head and a body'],
    [true, 200, undefined, 0, false, 'OK in the trailers'],
    [true, 200, undefined, undefined, false, 'a gRPC answer that ended without trailers: no verdict'],
    [false, 200, 14, undefined, false, 'not a gRPC request: the header means nothing'],
    [false, 503, undefined, undefined, true, 'a 503'],
  ] as [boolean, number, number | undefined, number | undefined, boolean, string][])('grpc %s, %i, grpc-status %s, trailers %s → ejected %s (%s)', async (grpc, status, grpcStatus, trailersStatus, ejected) => {
    const routing = routingTo(['127.0.0.1:1', '127.0.0.1:2']);
    // Both endpoints answer alike, one attempt per request (no retry conditions): after ten
    // requests one of them has had five in a row, the default ejection, whichever the balancer chose.
    for (let i = 0; i < 10; i += 1) {
      await attemptEndpoints(routing, { ...request(routing, []), grpc, retry: { maxAttempts: 1 } }, answer(status, grpcStatus, trailersStatus));
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(routing.ejected().size).toBe(ejected ? 1 : 0);
  });
});
