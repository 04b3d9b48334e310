import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { describeError, isIsthmusError } from '../core/errors.js';
import { backoffDelay } from '../core/backoff.js';
import { keys, recordVersion } from '../core/keys.js';
import type { Logger } from '../core/log.js';
import type { Catalog } from '../model/catalog.js';
import { GatewayRecordSchema, isRecord, type AliveRecord } from '../model/records.js';
import { version as federationVersion } from '../core/version.js';
import { subsetsByService } from '../model/labels.js';
import { workloadId } from '../trust/spiffe.js';
import { CatalogChanges, staleAfterMs } from './catalog-changes.js';
import { compareText } from '../core/compare-text.js';
import { serviceKey } from '../model/service-changes.js';
import type { LoadedClusterConfig } from './config.js';
import { desiredRecords } from './desired-records.js';
import { HealthChecker } from './health-checker.js';
import type { LocalService } from './local-services.js';
import { StoreMirror } from './mirror.js';
import { PolicySnapshots } from './policy-snapshot.js';
import { Publisher } from './publisher.js';
import type { Platform } from './platform.js';
import { FederationStore, type LeaseSession, type PrefixWatch, type StoredRecord, type StoreEvent } from './store.js';

/**
 * Everything that can happen to a federation service. Watches and timers only enqueue these;
 * one loop handles them in order, so no two handlers ever race on the mirror or the publisher.
 */
/** The routing table of this cluster's gateways: exported services and their local endpoints. */
export interface GatewayRoutes {
  version: number;
  cluster: string;
  services: { namespace: string; name: string; identities: string[]; endpoints: { address: string; zone: string; healthy: boolean }[] }[];
}

export type FederationEvent =
  | { type: 'store-reset'; records: StoredRecord[]; revision: number }
  | { type: 'store-changes'; events: StoreEvent[]; revision: number }
  | { type: 'local-changed' }
  | { type: 'telemetry' }
  | { type: 'heartbeat' }
  | { type: 'tick' };

/** What drain() hands to handle(): store changes are in the mirror already by then. */
type HandledEvent = Exclude<FederationEvent, { type: 'store-reset' | 'store-changes' }> | { type: 'store-changed' };

const maxAttempts = 5;

/** Who made a set of leased records published with the cluster's others: probes, sidecar traffic, the certificates issued (by root). */
type TelemetrySource = 'probes' | 'traffic' | 'certificates';

export class Federation extends EventEmitter {
  readonly mirror = new StoreMirror();
  readonly instanceId = randomUUID();
  catalog: Catalog = { revision: 0, clusters: [], services: [], invalidKeys: [] };
  /** In `<namespace>/<name>` order, which the snapshots served from them keep (a reader applying changes keeps it too: model/service-changes.ts). */
  services: LocalService[] = [];
  private readonly queue: FederationEvent[] = [];
  private draining = false;
  private session: LeaseSession | undefined;
  private watch: PrefixWatch | undefined;
  private readonly publisher = new Publisher(() => this.requireSession());
  private readonly health: HealthChecker;
  private readonly timers: NodeJS.Timeout[] = [];
  /** Gateways of this cluster that reported in through the API, published under our lease. */
  /**
   * Per gateway id: what it reports and until when, and each replica (`instance`) that reports
   * under that id with its own deadline (several pods of one Deployment share an id).
   */
  private readonly gatewayRegistrations = new Map<string, { address: string; zone: string; admin: string | undefined; expiresAt: number; instances: Map<string, number> }>();
  /** What this cluster's gateways route: bumped whenever exported services or their health change. */
  gatewayRoutes: GatewayRoutes = { version: 0, cluster: '', services: [] };
  private gatewayRoutesJson = '';
  /** Every local service's instances and health, for this cluster's sidecars (same shape). */
  localEndpoints: GatewayRoutes = { version: 0, cluster: '', services: [] };
  private localEndpointsJson = '';
  private readonly catalogChanges = new CatalogChanges();
  /** Traffic policies for this cluster's sidecars (GET /v1/policies), versioned apart from the catalog. */
  private readonly policySnapshots = new PolicySnapshots();
  /** The mirror's count of changes under the trust bundles (`/trust/bundles/`) when `bundles` was last told. */
  private bundleChanges = -1;
  /**
   * Leased records made elsewhere in the process, published with this cluster's others: gateway
   * probe summaries (GatewayProber), sidecar traffic and events (TrafficLedger), by source.
   */
  private readonly telemetryRecords = new Map<TelemetrySource, ReadonlyMap<string, object>>();
  /** host:port of our plain-HTTP dashboard port once it listens; told to other clusters in the alive record. */
  private dashboardAddress: string | undefined;
  private stopped = false;

  constructor(
    readonly loaded: LoadedClusterConfig,
    readonly store: FederationStore,
    private readonly log: Logger,
    /** Where this cluster's services come from (local or kubernetes). */
    readonly platform: Platform,
  ) {
    super();
    // Instances whose platform reports readiness (Kubernetes) are not probed: the kubelet already does.
    this.health = new HealthChecker({
      intervalMs: loaded.healthCheckIntervalMs,
      addresses: () => this.services.flatMap((s) => s.instances.filter((i) => i.ready === undefined).map((i) => i.address)),
      onChange: () => this.enqueue({ type: 'local-changed' }),
    });
  }

  get cluster(): string {
    return this.loaded.config.cluster;
  }

  /** A cluster whose heartbeat we have not seen for this long is withdrawn from our catalog. */
  get staleAfterMs(): number {
    return staleAfterMs(this.loaded.leaseTtlSeconds);
  }

  async start(): Promise<void> {
    const { config } = this.loaded;
    await this.platform.start(() => this.enqueue({ type: 'local-changed' }));
    this.services = byServiceKey(this.platform.services());
    this.session = await this.store.leaseSession({
      ttlSeconds: this.loaded.leaseTtlSeconds,
      onLost: (err) => this.log.warn({ err: describeError(err) }, 'cluster lease lost; re-granting and re-publishing'),
    });
    await this.adoptGateways();
    // The first publish must know what is exported (the intents live in etcd): one made before
    // the watch's first view would leave our exports out, and the clean-up below delete them.
    const view = await this.store.list(keys.all);
    this.mirror.reset(view.records, view.revision, Date.now());
    await this.session.put(keys.alive(this.cluster), this.aliveRecord());
    await this.health.round();
    await this.publish();
    await this.cleanUpOrphans();
    this.watch = this.store.watchPrefix(keys.all, {
      onReset: (records, revision) => this.enqueue({ type: 'store-reset', records, revision }),
      onEvents: (events, revision) => this.enqueue({ type: 'store-changes', events, revision }),
      onError: (err) => this.log.warn({ err: describeError(err) }, 'federation store watch interrupted; resuming'),
    });
    this.health.start();
    const heartbeatMs = Math.max(1000, (this.loaded.leaseTtlSeconds * 1000) / 3);
    this.timers.push(setInterval(() => this.enqueue({ type: 'heartbeat' }), heartbeatMs));
    this.timers.push(setInterval(() => this.enqueue({ type: 'tick' }), 1000));
    for (const timer of this.timers) timer.unref();
    this.log.info({ cluster: config.cluster, region: config.region, lease: this.session.id }, 'federation started');
  }

  /**
   * Graceful stop revokes the lease (`federation.onStop: withdraw`, the default): other clusters
   * drop our exports at once, not after the TTL. With `keep` the lease is left to expire: a
   * federation that replaces this one within the TTL (a pod update) takes the records over.
   */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const timer of this.timers) clearInterval(timer);
    this.health.stop();
    await this.platform.stop();
    await this.watch?.close();
    if (this.loaded.config.federation.onStop === 'keep') {
      await this.session?.release();
      this.log.info({ ttlSeconds: this.loaded.leaseTtlSeconds }, 'stopped without withdrawing: the cluster\'s records stay until the lease expires, or until the next federation takes them over');
      return;
    }
    await this.session?.revoke().catch((err: unknown) => this.log.warn({ err: describeError(err) }, 'could not revoke the cluster lease; records expire with its TTL'));
  }

  enqueue(event: FederationEvent): void {
    if (this.stopped) return;
    this.queue.push(event);
    if (!this.draining) void this.drain();
  }

  /**
   * Handles what queued up while the last batch was handled, as one batch: every store change in
   * it goes into the mirror in order, then the work that follows a change (catalog, snapshots,
   * publish) runs once, and each other kind of event once. Every handler recomputes from the
   * current state, so handling an event once stands for all its copies. A burst of changes (a
   * thousand exports arriving in a few watch responses, and our own writes echoed back) costs a
   * few recomputations, not one per watch response: one per response kept the event loop busy
   * for seconds at 1000 services, long enough to miss lease keep-alives.
   */
  private async drain(): Promise<void> {
    this.draining = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0);
        let storeChanged = false;
        const others: HandledEvent[] = [];
        const now = Date.now();
        for (const event of batch) {
          if (event.type === 'store-reset') {
            this.mirror.reset(event.records, event.revision, now);
            storeChanged = true;
          } else if (event.type === 'store-changes') {
            this.mirror.apply(event.events, event.revision, now);
            storeChanged = true;
          } else if (!others.some((o) => o.type === event.type)) others.push(event);
        }
        if (storeChanged) await this.handleWithRetry({ type: 'store-changed' });
        for (const event of others) {
          if (this.stopped) return;
          await this.handleWithRetry(event);
        }
      }
    } finally {
      this.draining = false;
    }
  }

  private async handleWithRetry(event: HandledEvent): Promise<void> {
    for (let attempt = 1; ; attempt += 1) {
      try {
        await this.handle(event);
        return;
      } catch (err) {
        const retryable = isIsthmusError(err, 'ISTHMUS_ERR_ETCD_UNREACHABLE') || isIsthmusError(err, 'ISTHMUS_ERR_ETCD_CONFLICT');
        if (!retryable || attempt >= maxAttempts || this.stopped) {
          // Dropped: every handler is idempotent and the next heartbeat re-syncs what it missed.
          this.log.error({ event: event.type, attempt, err: describeError(err) }, 'federation event failed; dropped');
          return;
        }
        await new Promise((r) => setTimeout(r, backoffDelay(attempt, { initialMs: 400, maxMs: 5000 })));
      }
    }
  }

  private async handle(event: HandledEvent): Promise<void> {
    const now = Date.now();
    switch (event.type) {
      case 'store-changed':
        if (this.stopped) return;
        await this.afterStoreChange();
        return;
      case 'local-changed':
        this.services = byServiceKey(this.platform.services());
        await this.syncExportIntents();
        await this.publish();
        this.showMesh();
        return;
      case 'telemetry':
        await this.publish();
        return;
      case 'heartbeat':
        await this.requireSession().put(keys.alive(this.cluster), this.aliveRecord());
        this.publisher.reconcile((key) => this.mirror.get(key));
        await this.publish();
        return;
      case 'tick':
        this.announceIntermediate();
        this.refreshCatalog();
        if (this.expireGateways(now)) await this.publish();
        return;
      default: {
        const never: never = event;
        throw new Error(`unhandled federation event ${JSON.stringify(never)}`);
      }
    }
  }

  private async afterStoreChange(): Promise<void> {
    if (this.mirror.get(keys.cluster(this.cluster)) === undefined && this.mirror.revision > 0) {
      this.log.error({ cluster: this.cluster }, 'this cluster is no longer in the mesh (isthmus leave?); stopping');
      await this.stop();
      this.emit('left');
      return;
    }
    this.announceIntermediate();
    this.noteBundles();
    this.refreshCatalog();
    this.refreshPolicies();
    await this.syncExportIntents();
    await this.publish();
    this.showMesh();
  }

  /**
   * Where the platform says what is exported (Kubernetes ServiceExports), the export intents of
   * this cluster in etcd follow it: written when an export appears, deleted when it goes, so
   * `isthmus services` and every other cluster see the same thing as `kubectl get serviceexports`.
   * Waits for the first full view of etcd, so nothing is deleted that was merely not seen yet.
   */
  private async syncExportIntents(): Promise<void> {
    const wanted = this.platform.exports();
    if (!wanted || this.mirror.revision === 0) return;
    const prefix = keys.serviceExportsOf(this.cluster);
    const present = new Set(this.mirror.entries(prefix).map(([key]) => key.slice(prefix.length)));
    for (const [id, exportedAt] of wanted) {
      if (present.has(id)) continue;
      const [ns = '', name = ''] = id.split('/');
      await this.store.put(keys.serviceExport(this.cluster, ns, name), { version: recordVersion, exportedAt });
    }
    for (const id of present) {
      const [ns = '', name = ''] = id.split('/');
      if (!wanted.has(id)) await this.store.delete(keys.serviceExport(this.cluster, ns, name));
    }
  }

  /**
   * Tells the platform what the mesh offers now (it writes ServiceImports and export status from
   * it). Not before the first full view of etcd: an empty catalog at start would have it delete
   * every ServiceImport, only to write them again a moment later.
   */
  private showMesh(): void {
    if (this.mirror.revision === 0) return;
    const exportedAt = new Map<string, string>();
    for (const [key, value] of this.mirror.entries(keys.serviceExports)) {
      const at = (value as { exportedAt?: unknown } | undefined)?.exportedAt;
      if (typeof at === 'string') exportedAt.set(key.slice(keys.serviceExports.length), at);
    }
    this.platform.meshChanged({ catalog: this.catalog, exportedAt });
  }

  /**
   * This cluster's intermediate as etcd has it (`isthmus ca rotate-intermediate` writes it), told
   * after every change and every second: the listener (server.ts) switches to it once the CA
   * directory holds it, and does nothing while it is the one in use.
   */
  private announceIntermediate(): void {
    const record = this.mirror.get(keys.intermediate(this.cluster)) as { certificate?: unknown } | undefined;
    if (typeof record?.certificate === 'string') this.emit('intermediate', record.certificate);
  }

  /** Tells `bundles` when a trust bundle record was added, replaced or removed (GET /v1/trust is long-polled on it, through server.ts). */
  private noteBundles(): void {
    const changes = this.mirror.changesUnder(keys.bundles);
    if (changes === this.bundleChanges) return;
    this.bundleChanges = changes;
    this.emit('bundles');
  }

  get policies() {
    return this.policySnapshots.current;
  }

  private refreshPolicies(): void {
    const changed = this.policySnapshots.next(this.mirror.entries(keys.policies));
    if (!changed) return;
    if (changed.invalidKeys.length > 0) this.log.warn({ keys: changed.invalidKeys }, 'policy records that are not valid were left out');
    this.emit('policies', changed.snapshot);
    // ServiceSubsets are part of the gateway's routes.
    this.refreshLocalSnapshots();
  }

  private refreshCatalog(): void {
    const catalog = this.catalogChanges.next(this.mirror, Date.now(), this.staleAfterMs);
    if (!catalog) return;
    this.catalog = catalog;
    this.emit('catalog', catalog);
  }

  /** Export intents of this cluster, as `<ns>/<name>`. */
  exportedServices(): Set<string> {
    const prefix = keys.serviceExportsOf(this.cluster);
    return new Set(this.mirror.entries(prefix).map(([key]) => key.slice(prefix.length)));
  }

  /**
   * A gateway reports in every few seconds; it stays published while it does, and is dropped
   * (from etcd too) three report intervals after it stops, so sidecars elsewhere stop using it.
   */
  registerGateway(gateway: { id: string; address: string; zone: string; admin?: string | undefined; instance?: string | undefined }, now = Date.now()): number {
    const previous = this.gatewayRegistrations.get(gateway.id);
    const ttlMs = this.gatewayTtlMs;
    const instances = previous?.instances ?? new Map<string, number>();
    instances.set(gateway.instance ?? '', now + ttlMs);
    this.gatewayRegistrations.set(gateway.id, { address: gateway.address, zone: gateway.zone, admin: gateway.admin, expiresAt: now + ttlMs, instances });
    if (!previous || previous.address !== gateway.address || previous.zone !== gateway.zone || previous.admin !== gateway.admin) {
      this.log.info({ gateway: gateway.id, address: gateway.address }, 'gateway registered');
      this.enqueue({ type: 'local-changed' });
    }
    return ttlMs;
  }

  /**
   * A gateway that starts to drain withdraws itself, so that other clusters stop sending new
   * connections to it and their sidecars close the idle ones they hold (docs/gateway.md,
   * "Draining"). The record goes (from etcd at the next publish) unless another replica of the
   * same id reported within the TTL: then it stays for that replica, and this one's connections
   * end with its drain. `withdrawn` says whether the record went.
   */
  withdrawGateway(id: string, instance = '', now = Date.now()): { withdrawn: boolean; replicasLeft: number } {
    const registration = this.gatewayRegistrations.get(id);
    if (!registration) return { withdrawn: false, replicasLeft: 0 };
    registration.instances.delete(instance);
    for (const [other, until] of registration.instances) if (until < now) registration.instances.delete(other);
    if (registration.instances.size > 0) {
      this.log.info({ gateway: id, instance, replicasLeft: registration.instances.size }, 'a gateway replica is draining; its record stays for the replicas still reporting');
      return { withdrawn: false, replicasLeft: registration.instances.size };
    }
    this.gatewayRegistrations.delete(id);
    this.log.info({ gateway: id, address: registration.address }, 'gateway draining; withdrawn');
    this.enqueue({ type: 'local-changed' });
    return { withdrawn: true, replicasLeft: 0 };
  }

  /** Replaces one source's records; keys no longer given are deleted from etcd by the next publish. */
  setTelemetryRecords(source: TelemetrySource, records: ReadonlyMap<string, object>): void {
    this.telemetryRecords.set(source, records);
    this.enqueue({ type: 'telemetry' });
  }

  setProbeRecords(records: ReadonlyMap<string, object>): void {
    this.setTelemetryRecords('probes', records);
  }

  /** Our dashboard port's address, written into the alive record at the next heartbeat. */
  setDashboardAddress(address: string | undefined): void {
    this.dashboardAddress = address;
    if (this.session) this.enqueue({ type: 'heartbeat' });
  }

  get gatewayTtlMs(): number {
    return Math.max(3000, this.loaded.leaseTtlSeconds * 1000);
  }

  private expireGateways(now: number): boolean {
    let changed = false;
    for (const [id, registration] of this.gatewayRegistrations) {
      for (const [instance, until] of registration.instances) if (until < now) registration.instances.delete(instance);
      if (registration.expiresAt < now) {
        this.gatewayRegistrations.delete(id);
        this.log.warn({ gateway: id }, 'gateway stopped reporting; withdrawn');
        changed = true;
      }
    }
    return changed;
  }

  /** Recomputes what local sidecars and gateways route to; each snapshot's version moves only when it changes. */
  private refreshLocalSnapshots(): void {
    const exported = this.exportedServices();
    const services = this.services.map((s) => ({
      namespace: s.namespace,
      name: s.name,
      identities: [workloadId(this.loaded.config.trustDomain, s.namespace, s.serviceAccount)],
      endpoints: s.instances.map((i) => ({ address: i.address, zone: i.zone, healthy: this.isHealthy(i), ...(i.labels ? { labels: i.labels } : {}) })),
    }));
    const localJson = JSON.stringify(services);
    if (localJson !== this.localEndpointsJson) {
      this.localEndpointsJson = localJson;
      this.localEndpoints = { version: this.localEndpoints.version + 1, cluster: this.cluster, services };
      this.emit('local-endpoints', this.localEndpoints);
    }
    // The gateway selects a `<subset>.` SNI's instances by the subset's labels, as this cluster's policies define it.
    const subsets = subsetsByService(this.policies.policies);
    const routes = services.filter((s) => exported.has(`${s.namespace}/${s.name}`)).map((s) => {
      const named = subsets.get(`${s.namespace}/${s.name}`);
      return named ? { ...s, subsets: named } : s;
    });
    const routesJson = JSON.stringify(routes);
    if (routesJson !== this.gatewayRoutesJson) {
      this.gatewayRoutesJson = routesJson;
      this.gatewayRoutes = { version: this.gatewayRoutes.version + 1, cluster: this.cluster, services: routes };
      this.emit('gateway-routes', this.gatewayRoutes);
    }
  }

  private async publish(): Promise<void> {
    const { config } = this.loaded;
    this.refreshLocalSnapshots();
    const desired = desiredRecords({
      cluster: config.cluster,
      trustDomain: config.trustDomain,
      zones: config.zones,
      services: this.services,
      exported: this.exportedServices(),
      isHealthy: (address) => this.health.isHealthy(address),
      // Only gateways that report in are published: a configured gateway that is not running
      // must not attract traffic from other clusters.
      gateways: [...this.gatewayRegistrations].map(([id, r]) => ({ id, address: r.address, zone: r.zone, admin: r.admin })),
    });
    const all = new Map<string, object>(desired);
    for (const records of this.telemetryRecords.values()) for (const [key, value] of records) all.set(key, value);
    const { puts, deletes } = await this.publisher.sync(all);
    if (puts + deletes > 0) this.log.debug({ puts, deletes }, 'published cluster records');
  }

  /**
   * A crash can happen between any two writes: records of a previous run of this cluster that
   * we no longer want are removed, instead of waiting for their old lease. Run after the first
   * publish, which has written every record we still want under our own lease: deleting first
   * would withdraw our exports from every other cluster until the publish, for nothing (a
   * federation restarted within its lease must look, to the others, as if it never stopped).
   */
  private async cleanUpOrphans(): Promise<void> {
    for (const prefix of [keys.exportsOf(this.cluster), keys.gatewaysOf(this.cluster), `${keys.probes}${this.cluster}/`]) {
      const { records } = await this.store.list(prefix);
      for (const record of records) {
        if (record.lease !== this.session?.id) await this.store.delete(record.key);
      }
    }
    for (const key of [keys.trafficOf(this.cluster), keys.eventsOf(this.cluster), keys.issuedOf(this.cluster)]) {
      const { records } = await this.store.list(key);
      for (const record of records) {
        if (record.key === key && record.lease !== this.session?.id) await this.store.delete(record.key);
      }
    }
  }

  /**
   * Gateways that reported to a previous run of this federation (its records under an older
   * lease) are taken as registered now: they report to us within the next interval, and one that
   * does not is withdrawn a gateway TTL later as any silent gateway is. Otherwise a restart would
   * publish our exports without a gateway until each gateway reported again, and other clusters
   * would have no way in.
   */
  private async adoptGateways(now = Date.now()): Promise<void> {
    const { records } = await this.store.list(keys.gatewaysOf(this.cluster));
    for (const record of records) {
      const id = record.key.slice(keys.gatewaysOf(this.cluster).length);
      if (record.lease === this.session?.id || this.gatewayRegistrations.has(id) || !isRecord(GatewayRecordSchema, record.value)) continue;
      const { address, port, zone, admin } = record.value;
      // No replica known yet: the first one to withdraw before any reports takes the record with it.
      this.gatewayRegistrations.set(id, { address: `${address}:${port}`, zone, admin, expiresAt: now + this.gatewayTtlMs, instances: new Map() });
      this.log.info({ gateway: id, address: `${address}:${port}` }, 'gateway of the previous run kept until it reports in');
    }
  }

  /** The platform's readiness where it has one, else our own TCP check. */
  private isHealthy(instance: LocalService['instances'][number]): boolean {
    return instance.ready ?? this.health.isHealthy(instance.address);
  }

  private aliveRecord(): AliveRecord {
    return {
      version: recordVersion, heartbeatAt: new Date().toISOString(), federationVersion, instance: this.instanceId,
      ...(this.dashboardAddress ? { dashboard: this.dashboardAddress } : {}),
    };
  }

  private requireSession(): LeaseSession {
    if (!this.session) throw new Error('federation not started');
    return this.session;
  }
}

/** The platform's services in `<namespace>/<name>` order. */
function byServiceKey(services: LocalService[]): LocalService[] {
  const keys = new Map(services.map((s) => [s, serviceKey(s)]));
  return [...services].sort((x, y) => compareText(keys.get(x)!, keys.get(y)!));
}
