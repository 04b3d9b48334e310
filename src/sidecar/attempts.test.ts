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
const observer: OutboundObserver = { propagate: () => undefined, tried: () => undefined, answered: () => undefined };
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
