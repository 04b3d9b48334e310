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
