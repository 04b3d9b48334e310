/**
 * How loaded and how slow an endpoint looks from this sidecar: a peak-sensitive moving average
 * of its response latency and the requests outstanding to it, as Finagle's and Linkerd's
 * (tower's) Peak-EWMA balancer keeps them. The balancer (balancer.ts) samples two endpoints of a
 * priority and sends to the one with the lower cost: power of two choices. Pure and mutable on
 * purpose: one small object per endpoint address, updated in place by the request path, so
 * tracking a request allocates nothing.
 *
 * - A slower answer than the average replaces it at once (the peak); a faster one pulls it down
 *   with weight 1 − e^(−Δt/τ), Δt the time since the last answer. A slow endpoint is left on the
 *   first slow answer, not after many.
 * - Read, the average decays towards 0 with the same τ while no answer comes (as tower decays it
 *   when it reads a load), so an endpoint left for being slow is tried again after a while and
 *   wins its traffic back once it answers fast.
 * - An estimate with no answer for `staleMs` (10 s) is dropped: the endpoint costs its queue, as
 *   a new one does, and its next answer is its estimate, not a blend with the old one. Decay
 *   alone left an endpoint unused for τ × ln(peak / the others' latency): one 85 ms answer
 *   beside 3 ms peers (a gateway catching up after a hang, or any answer on a busy machine) kept
 *   it out for ~33 s, a 400 ms one for ~50 s. Now an endpoint unused for 10 s wins the next draw
 *   it is in (every one, with two endpoints), and a slow one costs about one request per 10 s
 *   while it stays slow.
 * - An endpoint that comes back (its active health check passes again after failing, or an
 *   ejection for refused connections ends early) starts again from nothing (`forgetLatency`):
 *   what it measured while sick says nothing about it now. Without that, a gateway that hung
 *   for 8 s answered its backlog at 8 s on resuming, and that peak kept it out of a two-endpoint
 *   balancer for a minute by decay alone (8000 ms reaches a healthy peer's ~3 ms only after
 *   τ × ln(2700)), and would still keep it out for 10 s until the estimate goes stale.
 * - Cost = (average + 1 ms) × (outstanding + 1) / weight. The 1 ms keeps the outstanding count
 *   meaningful when nothing was measured yet: an unmeasured endpoint costs as much as its queue,
 *   so new endpoints are tried at once (least-request, as Envoy's default) instead of given a
 *   made-up latency. The weight divides, so at equal cost the heavier endpoint wins.
 */
export interface EndpointLoad {
  /** The peak-EWMA of response latency, ms; 0 until an answer was measured. */
  ewmaMs: number;
  /** When ewmaMs was last set (the caller's monotonic clock, ms). */
  stampMs: number;
  /** Requests sent to the endpoint and not yet answered or failed. */
  outstanding: number;
  /** Attempts that started before this (same clock) are not measured: see `forgetLatency`. */
  since: number;
}

/** τ of the average: how fast an old latency is forgotten (Linkerd's default decay, 10 s). */
export const decayMs = 10_000;

/** An estimate not refreshed by an answer for this long says nothing about now: it is dropped. */
export const staleMs = 10_000;

export function endpointLoad(): EndpointLoad {
  return { ewmaMs: 0, stampMs: 0, outstanding: 0, since: Number.NEGATIVE_INFINITY };
}

/** One more request outstanding; end it with `requestEnded`. */
export function requestStarted(load: EndpointLoad): void {
  load.outstanding += 1;
}

/**
 * The request's attempt ended after `latencyMs`. An answer feeds the average; a failure can only
 * raise it (a peer that refuses at once must not look fast: outlier detection deals with errors).
 */
export function requestEnded(load: EndpointLoad, latencyMs: number, answered: boolean, now: number): void {
  if (load.outstanding > 0) load.outstanding -= 1;
  if (now - latencyMs < load.since) return;
  if (latencyMs > load.ewmaMs || (answered && now - load.stampMs > staleMs)) {
    load.ewmaMs = latencyMs;
  } else if (answered) {
    const kept = Math.exp(-Math.max(0, now - load.stampMs) / decayMs);
    load.ewmaMs = load.ewmaMs * kept + latencyMs * (1 - kept);
  } else {
    return;
  }
  load.stampMs = now;
}

/**
 * The endpoint is back in service: its average starts again from nothing (its cost is its queue
 * again, as for a new endpoint), and attempts still in flight from before, which may end now with
 * the whole outage as their latency, are not measured.
 */
export function forgetLatency(load: EndpointLoad, now: number): void {
  load.ewmaMs = 0;
  load.stampMs = now;
  load.since = now;
}

/** What sending one more request to the endpoint is expected to cost; lower is better. */
export function loadCost(load: EndpointLoad, weight: number, now: number): number {
  const age = now - load.stampMs;
  const average = load.ewmaMs === 0 || age > staleMs ? 0 : load.ewmaMs * Math.exp(-Math.max(0, age) / decayMs);
  return ((average + 1) * (load.outstanding + 1)) / weight;
}
