/**
 * Circuit breaking for one upstream pool, after Envoy's cluster circuit breakers: a request
 * beyond a limit fails at once instead of piling up behind a slow or dead upstream, and the
 * limits free themselves as requests finish: nothing trips and stays tripped. Pure.
 *
 * - `maxRequests`: requests outstanding in the pool (sent on a connection, or waiting for one).
 * - `maxPendingRequests`: requests waiting for a connection.
 * - `maxConnections`: connections open or opening; requests beyond them wait (and so count
 *   against `maxPendingRequests`).
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

/** The connections a pool may hold: its own cap, lowered by a breaker's maxConnections. */
export function connectionCap(poolCap: number, limits: Readonly<BreakerLimits> | undefined): number {
  return limits?.maxConnections === undefined ? poolCap : Math.min(poolCap, limits.maxConnections);
}
