import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createSecureContext, type SecureContext } from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from '../core/undici.js';
import { describeError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { Catalog } from '../model/catalog.js';
import type { PoliciesSnapshot } from '../model/policy-records.js';
import { connectorFor, writeTextAtomic, type WorkloadIdentity } from './identity.js';
import { ensureDirectory } from '../core/user-paths.js';

/** This cluster's own services and instances, as GET /v1/endpoints serves them. */
export interface LocalEndpoints {
  version: number;
  cluster: string;
  services: { namespace: string; name: string; endpoints: { address: string; zone: string; healthy: boolean; labels?: Record<string, string> }[] }[];
}

export interface SnapshotStatus {
  version: number;
  receivedAt: Date;
  source: 'federation' | 'disk';
}

export interface CatalogWatchOptions {
  federationUrl: string;
  /** The workload's credentials; a renewal applies to the next connection. */
  identity: Pick<WorkloadIdentity, 'secureContext' | 'current'>;
  /** Trusted for the federation API besides the identity's trust bundle (which normally holds it already). */
  rootCertPem?: string;
  stateDir: string;
  logger: Logger;
  waitSeconds?: number;
  /** How long to wait before asking again for an API this federation does not serve (404). */
  notFoundRetryMs?: number;
}

interface Feed<T> {
  kind: 'catalog' | 'endpoints' | 'policies';
  path: string;
  file: string;
  /** Why a snapshot is refused, or undefined when it is acceptable. */
  check(value: unknown): string | undefined;
  versionOf(value: T): number;
  /** Whether a 404 means "not served by this federation yet" rather than a fault. */
  optional: boolean;
}

const catalogFeed: Feed<Catalog> = {
  kind: 'catalog', path: '/v1/catalog', file: 'catalog.json', check: checkCatalog, versionOf: (c) => c.revision, optional: false,
};
const endpointsFeed: Feed<LocalEndpoints> = {
  kind: 'endpoints', path: '/v1/endpoints', file: 'endpoints.json', check: checkEndpoints, versionOf: (e) => e.version, optional: true,
};
/** Traffic policies (docs/traffic-policy.md); a federation from before them answers 404, and the sidecar routes plainly. */
const policiesFeed: Feed<PoliciesSnapshot> = {
  kind: 'policies', path: '/v1/policies', file: 'policies.json', check: checkPolicies, versionOf: (p) => p.version, optional: true,
};

/** Each record is checked again when the routing table is compiled (model/traffic-policy.ts); here only the envelope. */
export function checkPolicies(value: unknown): string | undefined {
  if (!isObject(value)) return 'not a JSON object';
  if (!Number.isFinite(value.version)) return 'version is not a number';
  if (!Array.isArray(value.policies)) return 'policies is not an array';
  return undefined;
}

/** The catalog's version is its etcd `revision` (src/model/catalog.ts); it must carry the lists a sidecar routes by. */
export function checkCatalog(value: unknown): string | undefined {
  if (!isObject(value)) return 'not a JSON object';
  if (!Number.isFinite(value.revision)) return 'revision is not a number';
  if (!Array.isArray(value.clusters) || !Array.isArray(value.services)) return 'clusters or services is not an array';
  return undefined;
}

export function checkEndpoints(value: unknown): string | undefined {
  if (!isObject(value)) return 'not a JSON object';
  if (!Number.isFinite(value.version)) return 'version is not a number';
  if (!Array.isArray(value.services)) return 'services is not an array';
  if (!value.services.every((s) => isObject(s) && Array.isArray(s.endpoints))) return 'a service has no endpoints array';
  return undefined;
}

/**
 * Keeps the sidecar's view of the mesh (the merged catalog) and of its own cluster (local
 * endpoints) current by long-polling the federation API. The last good snapshot of each is
 * kept in memory and on disk, and survives any error: a sidecar routes with what it last knew
 * while the federation service is down, including across its own restarts.
 *
 * Listeners: attach before `start()`, which emits what the disk holds synchronously.
 */
export class CatalogWatch extends EventEmitter {
  /**
   * The last good snapshot of each feed, with a digest of its JSON to tell a repeat from a
   * change: with a big catalog, keeping the text itself would hold a second copy of it.
   */
  private readonly snapshots: { catalog?: { value: Catalog; digest: string; status: SnapshotStatus }; endpoints?: { value: LocalEndpoints; digest: string; status: SnapshotStatus }; policies?: { value: PoliciesSnapshot; digest: string; status: SnapshotStatus } } = {};
  private readonly agent: Agent;
  private readonly abort = new AbortController();
  private readonly log: Logger;
  private readonly waitSeconds: number;
  private running: Promise<unknown> | undefined;
  private context: { base: SecureContext; context: SecureContext } | undefined;

  constructor(private readonly opts: CatalogWatchOptions) {
    super();
    this.log = opts.logger.child({ component: 'catalog-watch' });
    this.waitSeconds = opts.waitSeconds ?? 30;
    this.agent = new Agent({
      connect: connectorFor(() => this.federationContext()),
      headersTimeout: (this.waitSeconds + 10) * 1000,
      bodyTimeout: (this.waitSeconds + 10) * 1000,
    });
  }

  /** The identity's context, plus `rootCertPem` when given; rebuilt only when the identity's changes. */
  private federationContext(): SecureContext {
    const base = this.opts.identity.secureContext();
    if (this.opts.rootCertPem === undefined) return base;
    if (this.context?.base !== base) {
      const { certPem, chainPem, keyPem, trustBundle } = this.opts.identity.current();
      const ca = [...new Set([this.opts.rootCertPem, ...trustBundle].map((pem) => pem.trim()))];
      this.context = { base, context: createSecureContext({ cert: [certPem, ...chainPem].join('\n'), key: keyPem, ca }) };
    }
    return this.context.context;
  }

  /** POSTs JSON to the federation over the same mTLS connections; rejects unless it answers 2xx. */
  async post(path: string, body: unknown, timeoutMs = 5000): Promise<void> {
    const res = await request(`${this.opts.federationUrl}${path}`, {
      method: 'POST', dispatcher: this.agent, signal: AbortSignal.timeout(timeoutMs),
      headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
    });
    const text = await res.body.text();
    if (res.statusCode < 200 || res.statusCode >= 300) throw new Error(`the federation answered ${res.statusCode} to POST ${path}: ${text.slice(0, 300)}`);
  }

  start(): void {
    if (this.running) return;
    ensureDirectory(this.opts.stateDir, 'the sidecar\'s stateDir', 0o700);
    for (const feed of [catalogFeed, endpointsFeed, policiesFeed] as Feed<unknown>[]) this.loadFromDisk(feed);
    this.running = Promise.all([this.poll(catalogFeed), this.poll(endpointsFeed), this.poll(policiesFeed)]);
  }

  catalog(): Catalog | undefined {
    return this.snapshots.catalog?.value;
  }

  endpoints(): LocalEndpoints | undefined {
    return this.snapshots.endpoints?.value;
  }

  policies(): PoliciesSnapshot | undefined {
    return this.snapshots.policies?.value;
  }

  status(): { catalog?: SnapshotStatus; endpoints?: SnapshotStatus; policies?: SnapshotStatus } {
    return { catalog: this.snapshots.catalog?.status, endpoints: this.snapshots.endpoints?.status, policies: this.snapshots.policies?.status };
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.running;
    await this.agent.destroy();
  }

  private loadFromDisk(feed: Feed<unknown>): void {
    const path = join(this.opts.stateDir, feed.file);
    let value: unknown;
    let receivedAt: Date;
    try {
      value = JSON.parse(readFileSync(path, 'utf8'));
      receivedAt = statSync(path).mtime;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn({ path, err: describeError(err) }, `ignoring the saved ${feed.kind}`);
      return;
    }
    const reason = feed.check(value);
    if (reason !== undefined) return void this.log.warn({ path, reason }, `ignoring the saved ${feed.kind}`);
    this.accept(feed, value, { version: feed.versionOf(value), receivedAt, source: 'disk' });
  }

  /** Never throws; ends when stopped. */
  private async poll<T>(feed: Feed<T>): Promise<void> {
    const signal = this.abort.signal;
    // Until the first answer after start or an error, ask without a version: a restarted
    // federation numbers its snapshots afresh and could be waiting at the very number we hold.
    let synced = false;
    let outage = false;
    let retryMs = 1000;
    while (!signal.aborted) {
      try {
        const held = this.snapshots[feed.kind];
        const query = synced && held ? `?version=${held.status.version}&wait=${this.waitSeconds}` : '';
        const res = await request(`${this.opts.federationUrl}${feed.path}${query}`, { dispatcher: this.agent, signal });
        if (res.statusCode === 404 && feed.optional) {
          await res.body.dump();
          if (!outage) this.log.info(`the federation service does not serve ${feed.path} yet; retrying later`);
          outage = true;
          await sleep(this.opts.notFoundRetryMs ?? 30_000, undefined, { signal });
          continue;
        }
        const body: unknown = await res.body.json();
        if (res.statusCode !== 200) throw new Error(`federation answered ${res.statusCode}`);
        if (outage) this.log.info(`${feed.kind} reachable again`);
        outage = false;
        retryMs = 1000;
        const reason = feed.check(body);
        if (reason !== undefined) {
          this.log.warn({ reason }, `rejected a ${feed.kind} snapshot from the federation service; keeping the last good one`);
          synced = false;
          await sleep(5000, undefined, { signal });
          continue;
        }
        synced = true;
        this.accept(feed as Feed<unknown>, body, { version: feed.versionOf(body as T), receivedAt: new Date(), source: 'federation' });
      } catch (err) {
        if (signal.aborted) return;
        if (!outage) this.log.warn({ err: describeError(err), url: this.opts.federationUrl }, `${feed.kind} unavailable; keeping the last good one and retrying`);
        outage = true;
        synced = false;
        await sleep(retryMs, undefined, { signal }).catch(() => undefined);
        retryMs = Math.min(retryMs * 2, 30_000);
      }
    }
  }

  private accept(feed: Feed<unknown>, value: unknown, status: SnapshotStatus): void {
    const json = JSON.stringify(value);
    const digest = createHash('sha256').update(json).digest('base64');
    const held = this.snapshots[feed.kind];
    if (held?.digest === digest) {
      // The same snapshot, now confirmed by the federation: nothing to announce.
      held.status = { ...held.status, source: status.source };
      return;
    }
    (this.snapshots as Record<string, unknown>)[feed.kind] = { value, digest, status };
    if (status.source === 'federation') {
      try {
        // Compact, as it came: the file is for this sidecar's restarts, not for people.
        writeTextAtomic(join(this.opts.stateDir, feed.file), `${json}\n`);
      } catch (err) {
        this.log.warn({ err: describeError(err), stateDir: this.opts.stateDir }, `could not save the ${feed.kind}; a restart will need the federation service`);
      }
    }
    this.log.debug({ version: status.version, source: status.source }, `new ${feed.kind}`);
    this.emit(feed.kind, value, status);
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
