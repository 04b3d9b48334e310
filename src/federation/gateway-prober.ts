import { performance } from 'node:perf_hooks';
import { connect, type PeerCertificate } from 'node:tls';
import { keys } from '../core/keys.js';
import type { Logger } from '../core/log.js';
import type { Catalog } from '../model/catalog.js';
import type { ProbeRecord } from '../model/records.js';
import { formatProbeSni } from '../model/sni.js';
import { clusterRoleId } from '../trust/spiffe.js';

/** One probe: how long the whole round trip took, or why it failed. */
export type ProbeSample = { ok: true; ms: number } | { ok: false; error: string };

export type ProbeSummary = Pick<ProbeRecord, 'p50Ms' | 'p99Ms' | 'minMs' | 'maxMs' | 'samples' | 'failures' | 'lastError'>;

/** Samples kept per pair (and per gateway): at 5 s a window is the last five minutes. */
export const probeWindow = 60;

const round3 = (ms: number) => Math.round(ms * 1000) / 1000;

/** Nearest-rank quantile of an ascending list: always a latency that was really observed. */
function quantile(sorted: readonly number[], q: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length))) - 1] as number;
}

/** Pure: a window of samples (oldest first) → what is published. `samples` counts successes only. */
export function summarize(window: readonly ProbeSample[]): ProbeSummary {
  const ms = window.flatMap((s) => (s.ok ? [s.ms] : [])).sort((a, b) => a - b);
  const failed = window.filter((s): s is Extract<ProbeSample, { ok: false }> => !s.ok);
  const at = (q: number) => { const v = quantile(ms, q); return v === null ? null : round3(v); };
  const lastError = failed.at(-1)?.error;
  return {
    p50Ms: at(0.5), p99Ms: at(0.99), minMs: at(0), maxMs: at(1),
    samples: ms.length, failures: failed.length, ...(lastError === undefined ? {} : { lastError }),
  };
}

export interface ProbeTarget { host: string; port: number; servername: string; expectedId: string; roots: string[]; timeoutMs: number }

/**
 * A real TLS round trip through a gateway: connect, handshake with the mesh roots, check that the
 * peer is the remote federation (its SPIFFE ID, not a host name: the gateway's address names
 * nothing), then `GET /healthz` on the same connection. Timed until the status line arrives.
 */
export function probeGateway(target: ProbeTarget): Promise<ProbeSample> {
  const started = performance.now();
  return new Promise((resolve) => {
    let done = false;
    const socket = connect({
      host: target.host, port: target.port, servername: target.servername, ca: target.roots, minVersion: 'TLSv1.2',
      checkServerIdentity: (_host, cert) => {
        const ids = uriSans(cert);
        return ids.includes(target.expectedId) ? undefined : new Error(`the peer is ${ids.join(', ') || 'no SPIFFE ID'}, not ${target.expectedId}`);
      },
    });
    const finish = (sample: ProbeSample) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(sample);
    };
    const fail = (error: string) => finish({ ok: false, error });
    const timer = setTimeout(() => fail(`no answer within ${target.timeoutMs} ms`), target.timeoutMs);
    let response = '';
    socket.once('secureConnect', () => socket.write(`GET /healthz HTTP/1.1\r\nhost: ${target.servername}\r\nconnection: close\r\n\r\n`));
    socket.on('data', (chunk: Buffer) => {
      response += chunk.toString('latin1');
      const end = response.indexOf('\r\n');
      if (end < 0) return;
      const status = response.slice(0, end);
      if (/^HTTP\/1\.[01] 200 /.test(status)) finish({ ok: true, ms: performance.now() - started });
      else fail(`/healthz answered "${status}"`);
    });
    socket.once('error', (err) => fail(err.message));
    socket.once('close', () => fail('the connection closed before an answer'));
  });
}

function uriSans(cert: PeerCertificate): string[] {
  return (cert.subjectaltname ?? '').split(', ').filter((s) => s.startsWith('URI:')).map((s) => s.slice('URI:'.length));
}

export interface GatewayProberOptions {
  cluster: string;
  intervalMs: number;
  catalog: () => Catalog;
  trustBundle: () => string[];
  /** Every round's records (`keys.probe(cluster, to)` → record); the federation publishes them under its lease. */
  publish: (records: ReadonlyMap<string, ProbeRecord>) => void;
  logger: Logger;
}

/**
 * Probes every gateway of every other alive cluster each interval and keeps a sliding window per
 * pair and per gateway. Rounds never overlap: a slow round makes the next one wait, not pile up.
 */
export class GatewayProber {
  private readonly pairs = new Map<string, ProbeSample[]>();
  private readonly perGateway = new Map<string, ProbeSample[]>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private latest: ProbeRecord[] = [];

  constructor(private readonly opts: GatewayProberOptions) {}

  start(): void {
    this.timer = setInterval(() => this.tick(), this.opts.intervalMs);
    this.timer.unref();
    this.tick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.running;
  }

  /** The records of the last round, for metrics. */
  records(): readonly ProbeRecord[] {
    return this.latest;
  }

  private tick(): void {
    if (this.running || this.stopped) return;
    this.running = this.round()
      .catch((err: unknown) => this.opts.logger.warn({ err: (err as Error).message }, 'gateway probe round failed'))
      .finally(() => { this.running = undefined; });
  }

  async round(): Promise<void> {
    const { cluster } = this.opts;
    const targets = this.opts.catalog().clusters.filter((c) => c.alive && c.name !== cluster);
    const roots = this.opts.trustBundle();
    // A probe that outlives the interval tells nothing more than "slow"; never longer than 5 s.
    const timeoutMs = Math.max(1000, Math.min(this.opts.intervalMs, 5000));
    await Promise.all(targets.map(async (target) => {
      // An alive cluster without a gateway is unreachable from here: that is a failure to show.
      if (target.gateways.length === 0) push(this.pairs, target.name, { ok: false, error: 'no gateway published' });
      const expectedId = clusterRoleId(target.trustDomain, target.name, 'federation');
      await Promise.all(target.gateways.map(async (g) => {
        const sample = await probeGateway({ host: g.address, port: g.port, servername: formatProbeSni(target.name), expectedId, roots, timeoutMs });
        push(this.pairs, target.name, sample);
        push(this.perGateway, `${target.name}/${g.id}`, sample);
      }));
    }));
    if (this.stopped) return;
    // Clusters and gateways that left take their windows with them (and the publisher deletes their records).
    const live = new Set(targets.flatMap((t) => [t.name, ...t.gateways.map((g) => `${t.name}/${g.id}`)]));
    for (const map of [this.pairs, this.perGateway]) for (const key of map.keys()) if (!live.has(key)) map.delete(key);
    const updatedAt = new Date().toISOString();
    this.latest = targets.map((t) => ({
      version: 1 as const, from: cluster, to: t.name, ...summarize(this.pairs.get(t.name) ?? []), updatedAt,
      gateways: t.gateways.map((g) => {
        const window = this.perGateway.get(`${t.name}/${g.id}`) ?? [];
        return { id: g.id, p50Ms: summarize(window).p50Ms, ok: window.at(-1)?.ok ?? false };
      }),
    }));
    this.opts.publish(new Map(this.latest.map((r) => [keys.probe(r.from, r.to), r])));
  }
}

function push(map: Map<string, ProbeSample[]>, key: string, sample: ProbeSample): void {
  const window = map.get(key) ?? [];
  window.push(sample);
  if (window.length > probeWindow) window.splice(0, window.length - probeWindow);
  map.set(key, window);
}
