import { performance } from 'node:perf_hooks';
import { LatencySample } from './latency-sample.js';

/** What one request came back with. */
export interface Outcome {
  status: number;
  bytes: number;
}

export type Send = () => Promise<Outcome>;

export interface OpenLoopOptions {
  rate: number;
  seconds: number;
  send: Send;
  /**
   * Requests outstanding at once; past it a due request is counted as a failure instead of sent.
   * Keeps memory bounded when the target stalls (an open loop otherwise queues without limit).
   */
  maxInFlight: number;
  /** How long to wait for the last answers after the last scheduled send. */
  drainMs: number;
  /** Keep when each answer slower than this was due (`slow`), to tell a burst at the start from a stall later. */
  slowAboveMs?: number;
}

/** One slow answer: when it was due, from the first scheduled send, and how long it took. */
export interface SlowAnswer {
  dueAtMs: number;
  ms: number;
}

/** At most this many slow answers are kept (the first ones). */
export const maxSlowAnswers = 2000;

export interface OpenLoopResult {
  rate: number;
  scheduled: number;
  sent: number;
  ok: number;
  failed: number;
  /** Failure kind (`status 503`, an undici error code, ...) → count. */
  failures: Record<string, number>;
  /** Successful requests only, from the SCHEDULED send time to the last byte of the body. */
  latency: LatencySample;
  /** How late the timer fired: scheduled send → actual send. Part of every latency above. */
  sendLag: LatencySample;
  /** From the first scheduled send to the last answer (never shorter than the schedule). */
  elapsedSeconds: number;
  /** Body size of the last successful answer. */
  bytes: number;
  /** With `slowAboveMs`: the successful answers slower than that, in the order they came. */
  slow?: SlowAnswer[];
}

/**
 * An open-loop load generator: request i is due at start + i/rate whatever happened to the
 * requests before it, and its latency is counted from that due time, not from when the timer got
 * round to sending it. A closed loop (send, wait, send) slows down exactly when the target does and
 * so hides the stall from its own numbers (coordinated omission); this one does not.
 *
 * Timers fire with millisecond granularity, so sends are up to ~1 ms late; that lag is recorded
 * (`sendLag`), included in every scenario alike, and cancels out of "added" latency. A busy-wait
 * would be more punctual but would take a core away from the proxies on a 2-core machine.
 */
export function runOpenLoop(opts: OpenLoopOptions): Promise<OpenLoopResult> {
  const total = Math.max(1, Math.round(opts.rate * opts.seconds));
  const gapMs = 1000 / opts.rate;
  const latency = new LatencySample(total);
  const sendLag = new LatencySample(total);
  const failures: Record<string, number> = {};
  let next = 0;
  let inFlight = 0;
  let sent = 0;
  let ok = 0;
  let failed = 0;
  let bytes = 0;
  let lastAnswer = 0;
  let closed = false;
  const slow: SlowAnswer[] = [];
  const start = performance.now() + 5;
  const dueAt = (i: number) => start + i * gapMs;
  const fail = (kind: string, n = 1) => {
    failures[kind] = (failures[kind] ?? 0) + n;
    failed += n;
  };

  return new Promise((resolve) => {
    let drainTimer: NodeJS.Timeout | undefined;
    const finish = () => {
      if (closed) return;
      closed = true;
      if (drainTimer) clearTimeout(drainTimer);
      if (inFlight > 0) fail('unanswered after drain', inFlight);
      const end = Math.max(lastAnswer, dueAt(total));
      resolve({
        rate: opts.rate, scheduled: total, sent, ok, failed, failures, latency, sendLag, elapsedSeconds: (end - start) / 1000, bytes,
        ...(opts.slowAboveMs === undefined ? {} : { slow }),
      });
    };
    const settled = (scheduledAt: number, outcome: Outcome | undefined, err?: unknown) => {
      if (closed) return;
      const now = performance.now();
      lastAnswer = now;
      inFlight -= 1;
      if (outcome && outcome.status === 200) {
        ok += 1;
        bytes = outcome.bytes;
        const ms = now - scheduledAt;
        latency.record(ms);
        if (opts.slowAboveMs !== undefined && ms > opts.slowAboveMs && slow.length < maxSlowAnswers) slow.push({ dueAtMs: scheduledAt - start, ms });
      } else if (outcome) {
        fail(`status ${outcome.status}`);
      } else {
        fail(errorKind(err));
      }
      if (next >= total && inFlight === 0) finish();
    };
    const dispatch = (scheduledAt: number) => {
      if (inFlight >= opts.maxInFlight) {
        fail('not sent: too many in flight');
        return;
      }
      sendLag.record(performance.now() - scheduledAt);
      inFlight += 1;
      sent += 1;
      let pending: Promise<Outcome>;
      try {
        pending = opts.send();
      } catch (err) {
        pending = Promise.reject(err);
      }
      pending.then((outcome) => settled(scheduledAt, outcome), (err: unknown) => settled(scheduledAt, undefined, err));
    };
    const tick = () => {
      const now = performance.now();
      while (next < total && dueAt(next) <= now) {
        dispatch(dueAt(next));
        next += 1;
      }
      if (next < total) {
        setTimeout(tick, Math.max(0, dueAt(next) - performance.now()));
      } else if (inFlight === 0) {
        finish();
      } else {
        drainTimer = setTimeout(finish, opts.drainMs);
      }
    };
    setTimeout(tick, Math.max(0, start - performance.now()));
  });
}

function errorKind(err: unknown): string {
  const e = err as { code?: string; name?: string; message?: string } | undefined;
  return e?.code ?? e?.name ?? String(err);
}
