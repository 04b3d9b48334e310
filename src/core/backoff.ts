/**
 * The one retry delay of the code base: exponential, capped, with jitter. Each wait is drawn from
 * the upper half of the current step, [step/2, step], where step = min(max, initial · 2^n): half
 * of it keeps a retry loop from spinning, the random half spreads the retries of many processes
 * that failed together (fifty sidecars losing their federation at once), the "equal jitter" of
 * the AWS Architecture Blog's "Exponential Backoff And Jitter". A small helper rather than
 * cockatiel's policies: the loops here (watches, leases, long polls) keep their own state and
 * only need the next delay, and the sidecar should not load a policy library for it.
 */
export interface BackoffOptions {
  /** The first step, in ms. */
  initialMs: number;
  /** No step is longer than this, in ms. */
  maxMs: number;
  /** A number in [0, 1); Math.random by default (tests pass their own). */
  random?: () => number;
}

/** The wait before retry number `attempt` (1 for the first retry). */
export function backoffDelay(attempt: number, opts: BackoffOptions): number {
  const step = Math.min(opts.maxMs, opts.initialMs * 2 ** Math.max(0, Math.min(attempt - 1, 30)));
  return Math.round(step / 2 + (step / 2) * (opts.random ?? Math.random)());
}

/** The same as a counter, for loops that retry until they succeed: next() after each failure, reset() after a success. */
export class Backoff {
  private attempt = 0;

  constructor(private readonly opts: BackoffOptions) {}

  /** The wait before the next retry; each call makes the next one longer, up to the cap. */
  next(): number {
    this.attempt += 1;
    return backoffDelay(this.attempt, this.opts);
  }

  reset(): void {
    this.attempt = 0;
  }
}
