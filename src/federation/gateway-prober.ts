import { performance } from 'node:perf_hooks';
import type { PeerCertificate } from 'node:tls';
import { buildConnector } from '../core/undici.js';
import { Client } from '../core/undici-client.js';
import { keys } from '../core/keys.js';
import type { Logger } from '../core/log.js';
import type { Catalog } from '../model/catalog.js';
import type { ProbeRecord } from '../model/records.js';
import { formatProbeSni } from '../model/sni.js';
import { clusterRoleId } from '../trust/spiffe.js';
import { altNamesFromText } from '../trust/x509-facts.js';

/**
 * One probe: the request round trip (or why it failed), and `handshakeMs` when this probe had
 * to open the connection first (TCP connect + TLS handshake + identity check).
 */
export type ProbeSample = ({ ok: true; ms: number } | { ok: false; error: string }) & { handshakeMs?: number };

export type ProbeSummary = Pick<ProbeRecord, 'p50Ms' | 'p99Ms' | 'minMs' | 'maxMs' | 'samples' | 'failures' | 'lastError' | 'handshakeP50Ms'>;

/** Samples kept per pair (and per gateway): at 5 s a window is the last five minutes. */
export const probeWindow = 60;

const round3 = (ms: number) => Math.round(ms * 1000) / 1000;

/** Nearest-rank quantile of an ascending list: always a latency that was really observed. */
function quantile(sorted: readonly number[], q: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length))) - 1] as number;
}

const p50 = (values: number[]) => {
  const v = quantile(values.sort((a, b) => a - b), 0.5);
  return v === null ? null : round3(v);
};

/** Pure: a window of samples (oldest first) → what is published. `samples` counts successes only. */
export function summarize(window: readonly ProbeSample[]): ProbeSummary {
  const ms = window.flatMap((s) => (s.ok ? [s.ms] : [])).sort((a, b) => a - b);
  const failed = window.filter((s): s is Extract<ProbeSample, { ok: false }> => !s.ok);
  const at = (q: number) => { const v = quantile(ms, q); return v === null ? null : round3(v); };
  const lastError = failed.at(-1)?.error;
  return {
    p50Ms: at(0.5), p99Ms: at(0.99), minMs: at(0), maxMs: at(1),
    samples: ms.length, failures: failed.length, ...(lastError === undefined ? {} : { lastError }),
    handshakeP50Ms: p50(window.flatMap((s) => (s.handshakeMs === undefined ? [] : [s.handshakeMs]))),
  };
}

export interface ProbeTarget { host: string; port: number; servername: string; expectedId: string; roots: string[]; timeoutMs: number }

const sameConnection = (a: ProbeTarget, b: ProbeTarget) =>
  a.host === b.host && a.port === b.port && a.servername === b.servername && a.expectedId === b.expectedId
  && a.roots.length === b.roots.length && a.roots.every((root, i) => root === b.roots[i]);

/**
 * A kept TLS connection through one gateway to the remote federation, and the probe that runs on
 * it: `GET /healthz` with keep-alive, timed from the request to the end of the response body.
 * A brand-new TLS handshake per probe measured mostly the CPU cost of RSA on a busy machine (tens
 * of ms on loopback where requests take ~3), so, as Linkerd's gateway probe does, the connection
 * stays open between rounds and its handshake is reported on its own (`handshakeMs`).
 *
 * undici's Client (pipelining 1) does the HTTP/1.1: status line, headers, Content-Length or
 * chunked bodies, the server's Keep-Alive hint, noticing a peer that closed an idle connection.
 * Our connector wraps its TLS connect to time the handshake and to require the remote
 * federation's SPIFFE ID (the gateway's address names nothing, so no host name is checked).
 */
export class GatewayConnection {
  private client: Client | undefined;
  /** Set by the connector when the current client opened its socket; read and cleared per probe. */
  private handshake: { endedAt: number; ms: number } | undefined;
  private readonly closing = new Set<Promise<void>>();

  constructor(private target: ProbeTarget) {}

  async probe(target: ProbeTarget = this.target): Promise<ProbeSample> {
    // A gateway re-published at a new address, or a rotated trust bundle: a new connection.
    if (!sameConnection(this.target, target)) this.drop();
    this.target = target;
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), target.timeoutMs);
    try {
      const first = await this.request(abort.signal);
      // A reused connection that the peer closed just as we wrote is no failure of the path: the
      // request is idempotent, so it is retried once on a new connection (RFC 9112 §9.3.1).
      if (!first.ok && first.stale && !abort.signal.aborted) return withoutStale(await this.request(abort.signal));
      return withoutStale(first);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Closes the connection (if open); resolves once its socket is gone. */
  async close(): Promise<void> {
    this.drop();
    await Promise.all(this.closing);
  }

  private async request(signal: AbortSignal): Promise<ProbeSample & { stale?: boolean }> {
    const client = this.client ??= this.open();
    this.handshake = undefined;
    const started = performance.now();
    let handshakeMs: number | undefined;
    try {
      const res = await client.request({ method: 'GET', path: '/healthz', headers: { host: this.target.servername }, signal });
      // Read the body to its end (a body cut short rejects): the round trip is the complete
      // response, and only then is the connection free for the next probe.
      await res.body.text();
      const ended = performance.now();
      const handshake = this.opened();
      handshakeMs = handshake?.ms;
      // When this probe opened the connection, the request left only once the handshake was done.
      const ms = ended - Math.max(started, handshake?.endedAt ?? started);
      const timing = handshakeMs === undefined ? {} : { handshakeMs };
      return res.statusCode === 200 ? { ok: true, ms, ...timing } : { ok: false, error: `/healthz answered ${res.statusCode}`, ...timing };
    } catch (err) {
      handshakeMs = this.opened()?.ms;
      const reused = handshakeMs === undefined;
      this.drop();
      const error = signal.aborted ? `no answer within ${this.target.timeoutMs} ms` : errorText(err);
      return { ok: false, error, ...(handshakeMs === undefined ? {} : { handshakeMs }), stale: reused && (err as { code?: string }).code === 'UND_ERR_SOCKET' };
    }
  }

  /** The handshake the current probe waited for, if it had to open the connection. */
  private opened(): { endedAt: number; ms: number } | undefined {
    return this.handshake;
  }

  private open(): Client {
    const { host, port, servername, roots, expectedId } = this.target;
    const connector = buildConnector({
      servername, ca: roots, minVersion: 'TLSv1.2',
      // Our own timer bounds the whole probe; no session reuse, so a handshake is a full one.
      timeout: 0, maxCachedSessions: 0,
      checkServerIdentity: (_host: string, cert: PeerCertificate) => {
        const ids = uriSans(cert);
        return ids.includes(expectedId) ? undefined : new Error(`the peer is ${ids.join(', ') || 'no SPIFFE ID'}, not ${expectedId}`);
      },
    });
    const client: Client = new Client(`https://${host.includes(':') ? `[${host}]` : host}:${port}`, {
      pipelining: 1,
      // Kept between rounds for as long as the server's Keep-Alive hint allows (fastify: 72 s).
      keepAliveTimeout: 600_000, keepAliveMaxTimeout: 600_000,
      connect: (options, callback) => {
        const startedAt = performance.now();
        connector(options, (...args) => {
          const endedAt = performance.now();
          if (args[0] === null && this.client === client) this.handshake = { endedAt, ms: endedAt - startedAt };
          callback(...args);
        });
      },
    });
    return client;
  }

  private drop(): void {
    const client = this.client;
    if (!client) return;
    this.client = undefined;
    const closed = client.destroy().catch(() => undefined).finally(() => this.closing.delete(closed));
    this.closing.add(closed);
  }
}

function withoutStale({ stale: _stale, ...sample }: ProbeSample & { stale?: boolean }): ProbeSample {
  return sample;
}

/** undici and node:net errors; an AggregateError (one per address tried) has no message of its own. */
function errorText(err: unknown): string {
  const e = err as Error & { code?: string };
  return e.message || e.code || String(err);
}

function uriSans(cert: PeerCertificate): string[] {
  return altNamesFromText(cert.subjectaltname ?? '').uris;
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
 * Probes every gateway of every other alive cluster each interval over a kept connection per
 * gateway, and keeps a sliding window per pair and per gateway. Rounds never overlap: a slow round
 * makes the next one wait, not pile up.
 */
export class GatewayProber {
  private readonly pairs = new Map<string, ProbeSample[]>();
  private readonly perGateway = new Map<string, ProbeSample[]>();
  /** `<cluster>/<gateway id>` → its kept connection. */
  private readonly connections = new Map<string, GatewayConnection>();
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

  /** Stops probing and closes every kept connection. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.running;
    await Promise.all([...this.connections.values()].map((c) => c.close()));
    this.connections.clear();
  }

  /**
   * The catalog changed: close the kept connections to gateways no longer in it now rather than
   * at the next round, so that a draining gateway is not held by its probes (docs/gateway.md,
   * "Draining"). A round in progress does the same at its end, and its probes are left alone.
   */
  async forgetGone(): Promise<void> {
    if (this.running || this.stopped) return;
    const live = new Set(this.opts.catalog().clusters.flatMap((c) => c.gateways.map((g) => `${c.name}/${g.id}`)));
    const gone = [...this.connections].filter(([key]) => !live.has(key));
    for (const [key] of gone) this.connections.delete(key);
    await Promise.all(gone.map(([, connection]) => connection.close()));
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
        const key = `${target.name}/${g.id}`;
        const probeTarget = { host: g.address, port: g.port, servername: formatProbeSni(target.name), expectedId, roots, timeoutMs };
        let connection = this.connections.get(key);
        if (!connection) this.connections.set(key, connection = new GatewayConnection(probeTarget));
        const sample = await connection.probe(probeTarget);
        push(this.pairs, target.name, sample);
        push(this.perGateway, key, sample);
      }));
    }));
    // Clusters and gateways that left take their windows and connections with them (and the
    // publisher deletes their records).
    const live = new Set(targets.flatMap((t) => [t.name, ...t.gateways.map((g) => `${t.name}/${g.id}`)]));
    for (const [key, connection] of this.connections) {
      if (live.has(key)) continue;
      this.connections.delete(key);
      await connection.close();
    }
    if (this.stopped) return;
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
