/**
 * Circuit breaking for one upstream pool, after Envoy's cluster circuit breakers: a request
 * beyond a limit fails at once instead of piling up behind a slow or dead upstream, and the
 * limits free themselves as requests finish: nothing trips and stays tripped. Pure.
 *
 * - `maxRequests`: requests outstanding in the pool (sent on a connection, or waiting for one).
 * - `maxPendingRequests`: requests waiting for a connection.
 * - `maxConnections`: connections open or opening; requests beyond them wait (and so count
 *   against `maxPendingRequests`). A WebSocket or CONNECT tunnel holds a connection of its own
 *   for its life, so it counts too: beyond the limit a tunnel is refused (it cannot wait as a
 *   request does), and open tunnels leave the pool fewer connections.
 */
export interface BreakerLimits {
  /** The document that set them ("CircuitBreaker demo/hello-breaker"), for messages. */
  policy: string;
  maxConnections?: number;
  maxPendingRequests?: number;
  maxRequests?: number;
}

export interface PoolLoad {
  /** Requests handed to a connection and not finished. */
  inFlight: number;
  /** Requests waiting for a connection. */
  queued: number;
  /** Whether a connection could take the request now (free, or a new one may open). */
  canSendNow: boolean;
}

export type BreakerVerdict = { open: false } | { open: true; limit: 'maxRequests' | 'maxPendingRequests'; value: number };

export function breakerVerdict(load: PoolLoad, limits: Readonly<BreakerLimits> | undefined): BreakerVerdict {
  if (!limits) return { open: false };
  if (limits.maxRequests !== undefined && load.inFlight + load.queued >= limits.maxRequests) return { open: true, limit: 'maxRequests', value: limits.maxRequests };
  if (load.canSendNow) return { open: false };
  if (limits.maxPendingRequests !== undefined && load.queued >= limits.maxPendingRequests) return { open: true, limit: 'maxPendingRequests', value: limits.maxPendingRequests };
  return { open: false };
}

/**
 * The connections a pool may hold: its own cap, lowered by a breaker's maxConnections less the
 * tunnels open to the same upstream, but never below one: requests wait for a connection, and
 * a tunnel may stay open for hours, so they must not be left with none.
 */
export function connectionCap(poolCap: number, limits: Readonly<BreakerLimits> | undefined, tunnels = 0): number {
  return limits?.maxConnections === undefined ? poolCap : Math.min(poolCap, Math.max(1, limits.maxConnections - tunnels));
}

/**
 * Whether one more tunnel may open to an upstream that has `busyConnections` pool connections
 * carrying requests (idle keep-alive ones do not count: they would be closed before refusing)
 * and `tunnels` tunnels open.
 */
export function tunnelVerdict(busyConnections: number, tunnels: number, limits: Readonly<BreakerLimits> | undefined): { open: false } | { open: true; limit: 'maxConnections'; value: number } {
  if (limits?.maxConnections === undefined || busyConnections + tunnels < limits.maxConnections) return { open: false };
  return { open: true, limit: 'maxConnections', value: limits.maxConnections };
}
