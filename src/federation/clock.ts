import { etcdHttpGet, type EtcdTls } from './etcd-tls.js';

/**
 * Estimates this machine's clock offset from the etcd member's (etcd answers HTTP with a Date
 * header; it has no time API). Resolution is one second, enough to catch the skew that breaks
 * certificate validity windows (we back-date certificates by a minute).
 * Positive: the etcd member's clock is ahead of ours.
 */
export async function etcdClockSkewMs(endpoint: string, tls: EtcdTls | undefined, timeoutMs = 3000): Promise<number> {
  const before = Date.now();
  const response = await etcdHttpGet(endpoint, '/version', tls, timeoutMs);
  const after = Date.now();
  const header = response.headers.date;
  const remote = header ? Date.parse(header) : Number.NaN;
  if (!Number.isFinite(remote)) throw new Error(`${endpoint} sent no Date header`);
  // The header is truncated to the second: compare with the middle of the second it names.
  return remote + 500 - (before + after) / 2;
}

export const clockSkewWarnMs = 5_000;
export const clockSkewFailMs = 30_000;

export interface ClockSkewVerdict {
  status: 'ok' | 'warn' | 'failed';
  detail: string;
  /** Set for warn and failed. */
  hint?: string;
}

/**
 * Every member given is asked, not only the first: the client talks to all of them, so a member
 * whose clock is off matters as much as the first one, and a first member that is down must not
 * fail a check the others can answer. The worst skew decides; members that did not answer are
 * named in a warning; none answering fails.
 */
export async function clockSkewOfEndpoints(endpoints: string[], tls: EtcdTls | undefined, hintFailed: string): Promise<ClockSkewVerdict> {
  const asked = await Promise.all(endpoints.map(async (endpoint) => {
    try {
      return { endpoint, skewMs: await etcdClockSkewMs(endpoint, tls) };
    } catch (err) {
      return { endpoint, error: (err as Error).message };
    }
  }));
  return clockSkewVerdict(asked, hintFailed);
}

/** The decision alone, from each member's answer: pure, so tested with a table. */
export function clockSkewVerdict(asked: ({ endpoint: string; skewMs: number } | { endpoint: string; error: string })[], hintFailed: string): ClockSkewVerdict {
  const answered = asked.filter((a): a is { endpoint: string; skewMs: number } => 'skewMs' in a);
  const silent = asked.filter((a): a is { endpoint: string; error: string } => 'error' in a);
  if (answered.length === 0) {
    return { status: 'failed', detail: `no etcd member told its clock (${silent.map((s) => `${s.endpoint}: ${s.error}`).join('; ')})`, hint: 'check that the etcd URLs are right and reachable from here' };
  }
  const worst = answered.reduce((a, b) => (Math.abs(b.skewMs) > Math.abs(a.skewMs) ? b : a));
  const from = answered.length === 1 ? 'etcd\'s clock' : `the clock of ${worst.endpoint} (the furthest of ${answered.length} members)`;
  const detail = `${(worst.skewMs / 1000).toFixed(1)} s from ${from}`;
  if (Math.abs(worst.skewMs) > clockSkewFailMs) return { status: 'failed', detail, hint: hintFailed };
  if (Math.abs(worst.skewMs) > clockSkewWarnMs) return { status: 'warn', detail, hint: 'synchronise clocks with NTP' };
  if (silent.length > 0) {
    return { status: 'warn', detail: `${detail}; ${silent.map((s) => s.endpoint).join(', ')} did not answer (${silent[0]!.error})`, hint: 'an etcd member given is down or unreachable from here: start it, or leave it out of the etcd URLs' };
  }
  return { status: 'ok', detail };
}
