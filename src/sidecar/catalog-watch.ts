import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createSecureContext, type SecureContext } from 'node:tls';
import { request } from '../core/undici.js';
import { H1Agent } from './h1-agent.js';
import { longPoll, snapshotProblem, type LongPollFeed } from '../core/long-poll.js';
import { Type, type Static, type TSchema } from '../core/typebox.js';
import { describeError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { ensureDirectory } from '../core/user-paths.js';
import type { Catalog } from '../model/catalog.js';
import { serviceListChanges } from '../model/service-changes.js';
import { CatalogSnapshotSchema, LocalEndpointsSchema, type LocalEndpoints } from '../model/records.js';
import type { PoliciesSnapshot } from '../model/policy-records.js';
import { connectorFor, type WorkloadIdentity } from './identity.js';
import { writeTextAtomicAsync } from '../core/user-paths.js';

export type { LocalEndpoints };

export interface SnapshotStatus {
  version: number;
  receivedAt: Date;
  source: 'federation' | 'disk';
  /** The size of the federation's answer it came in: a whole catalog, or what changed since the last. */
  bytes?: number;
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

interface Feed<S extends TSchema> extends LongPollFeed<S> {
  name: 'catalog' | 'endpoints' | 'policies';
  file: string;
  /** These snapshots have been numbered since the first federation. */
  versionOf(value: Static<S>): number;
}

/**
 * A catalog of more than about a hundred services (64 KiB of JSON; 450 KB with 1000) is taken
 * at most once a second. Each snapshot is the whole catalog, so a burst of changes (instances of
 * many services turning healthy one by one after a deploy) would otherwise cost every sidecar a
 * whole catalog per change: ten a second were seen in the memory bench, with the sidecar's heap
 * grown to 128 MB for the garbage. The first change after a quiet second still arrives at once.
 */
const largeCatalogBytes = 64 * 1024;
const largeCatalogPaceMs = 1000;
const catalogFeed: Feed<typeof CatalogSnapshotSchema> = {
  name: 'catalog', path: '/v1/catalog', file: 'catalog.json', schema: CatalogSnapshotSchema, versionOf: (c) => c.revision,
  paceMs: (bytes) => (bytes >= largeCatalogBytes ? largeCatalogPaceMs : 0),
  // After the first, a federation that can sends only what changed (src/federation/snapshot-history.ts).
  changes: serviceListChanges(CatalogSnapshotSchema),
};
const endpointsFeed: Feed<typeof LocalEndpointsSchema> = {
  name: 'endpoints', path: '/v1/endpoints', file: 'endpoints.json', schema: LocalEndpointsSchema, versionOf: (e) => e.version, optional: true,
  changes: serviceListChanges(LocalEndpointsSchema),
};
const PoliciesEnvelopeSchema = Type.Object({ version: Type.Integer(), policies: Type.Array(Type.Unknown()) });
/**
 * Traffic policies (docs/traffic-policy.md); a federation from before them answers 404, and the
 * sidecar routes plainly. Only the envelope is checked here: each record is checked when the
 * routing table is compiled (model/traffic-policy.ts), so one bad record does not hold back the rest.
 */
const policiesFeed: Feed<typeof PoliciesEnvelopeSchema> = {
  name: 'policies', path: '/v1/policies', file: 'policies.json', schema: PoliciesEnvelopeSchema, versionOf: (p) => p.version, optional: true,
};
const feeds = [catalogFeed, endpointsFeed, policiesFeed] as Feed<TSchema>[];
/** How long after a snapshot arrives it is saved to the state dir. */
const saveDelayMs = 1000;

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
   * change (with a big catalog, keeping the text itself would hold a second copy of it); none
   * for one that came as changes.
   */
  private readonly snapshots: { catalog?: { value: Catalog; digest?: string; status: SnapshotStatus }; endpoints?: { value: LocalEndpoints; digest?: string; status: SnapshotStatus }; policies?: { value: PoliciesSnapshot; digest?: string; status: SnapshotStatus } } = {};
  private readonly agent: H1Agent;
  private readonly abort = new AbortController();
  private readonly log: Logger;
  private readonly waitSeconds: number;
  private running: Promise<unknown> | undefined;
  private context: { base: SecureContext; context: SecureContext } | undefined;
  /** Snapshots waiting to be saved, by file. */
  private readonly unsaved = new Map<string, { feed: Feed<TSchema>; value: unknown }>();
  private saveTimer: NodeJS.Timeout | undefined;
  /** The saves under way, one after another. */
  private saving = Promise.resolve();

  constructor(private readonly opts: CatalogWatchOptions) {
    super();
    this.log = opts.logger.child({ component: 'catalog-watch' });
    this.waitSeconds = opts.waitSeconds ?? 30;
    this.agent = new H1Agent({
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
    for (const feed of feeds) this.loadFromDisk(feed);
    this.running = Promise.all(feeds.map((feed) => longPoll(feed, {
      federationUrl: this.opts.federationUrl, dispatcher: () => this.agent, signal: this.abort.signal, logger: this.log,
      waitSeconds: this.waitSeconds, ...(this.opts.notFoundRetryMs === undefined ? {} : { notFoundRetryMs: this.opts.notFoundRetryMs }),
      onSnapshot: (value, _version, answer) => this.accept(feed, value, { version: feed.versionOf(value), receivedAt: new Date(), source: 'federation', bytes: answer.bytes }, answer.changes),
    })));
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
    await this.saveNow();
    await this.agent.destroy();
  }

  private loadFromDisk(feed: Feed<TSchema>): void {
    const path = join(this.opts.stateDir, feed.file);
    let value: unknown;
    let receivedAt: Date;
    try {
      value = JSON.parse(readFileSync(path, 'utf8'));
      receivedAt = statSync(path).mtime;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn({ path, err: describeError(err) }, `ignoring the saved ${feed.name}`);
      return;
    }
    const reason = snapshotProblem(feed.schema, value);
    if (reason !== undefined) return void this.log.warn({ path, reason }, `ignoring the saved ${feed.name}`);
    this.accept(feed, value, { version: feed.versionOf(value), receivedAt, source: 'disk' });
  }

  /**
   * `changes`: the snapshot came as changes to the last one, so it is one; a whole snapshot may
   * repeat what the disk gave at start, which its digest tells.
   */
  private accept(feed: Feed<TSchema>, value: unknown, status: SnapshotStatus, changes = false): void {
    const held = this.snapshots[feed.name];
    const digest = changes ? undefined : createHash('sha256').update(JSON.stringify(value)).digest('base64');
    if (digest !== undefined && held?.digest === digest) {
      // The same snapshot, now confirmed by the federation: nothing to announce.
      held.status = { ...held.status, source: status.source };
      return;
    }
    (this.snapshots as Record<string, unknown>)[feed.name] = { value, digest, status };
    if (status.source === 'federation') this.save(feed, value);
    this.log.debug({ version: status.version, source: status.source, bytes: status.bytes }, `new ${feed.name}`);
    this.emit(feed.name, value, status);
  }

  /**
   * Saves a snapshot for this sidecar's restarts, a second after it came: a burst of changes is
   * saved once (a catalog of 1000 services is 450 KB, written and synced to disk each time), and
   * the disk's own time is spent off the event loop, so a slow disk does not hold up requests.
   * Saves run one after another; stopping saves what is pending and waits for it.
   */
  private save(feed: Feed<TSchema>, value: unknown): void {
    this.unsaved.set(feed.file, { feed, value });
    this.saveTimer ??= setTimeout(() => this.saveNow(), saveDelayMs).unref();
  }

  private saveNow(): Promise<void> {
    clearTimeout(this.saveTimer);
    this.saveTimer = undefined;
    const pending = [...this.unsaved];
    this.unsaved.clear();
    this.saving = this.saving.then(async () => {
      for (const [file, { feed, value }] of pending) {
        try {
          // Compact, as it came: the file is for this sidecar's restarts, not for people.
          await writeTextAtomicAsync(join(this.opts.stateDir, file), `${JSON.stringify(value)}\n`);
        } catch (err) {
          this.log.warn({ err: describeError(err), stateDir: this.opts.stateDir }, `could not save the ${feed.name}; a restart will need the federation service`);
        }
      }
    });
    return this.saving;
  }
}
