import type { Dispatcher } from 'undici';

const endings = new Set<PropertyKey>(['onResponseEnd', 'onResponseError']);

/**
 * `handler` as it is, except that `done` runs once when the request ends, however it ends (undici's
 * newer handler interface: upstream-pool.ts adapts an older one before it gets here). Used by upstream-pool.ts to count outstanding requests for a
 * circuit breaker's maxRequests, only when one is set.
 */
export function countedHandler(handler: Dispatcher.DispatchHandler, done: () => void): Dispatcher.DispatchHandler {
  let finished = false;
  return new Proxy(handler, {
    get(target, property) {
      const value = Reflect.get(target, property) as unknown;
      if (typeof value !== 'function') return value;
      if (!endings.has(property)) return value.bind(target);
      return (...args: unknown[]) => {
        if (!finished) {
          finished = true;
          done();
        }
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}
