import type { AddressInfo } from 'node:net';
import { keys, recordVersion } from '../core/keys.js';
import { createDashboard } from '../dashboard/server.js';
import { sloPolicies } from '../dashboard/overview.js';
import { SloAlerter } from './slo-alerter.js';
import type { SloView } from '../dashboard/overview.js';
import { RolloutDriver } from './rollouts.js';
import type { Logger } from '../core/log.js';
import { startTelemetryServer, type TelemetryServer } from '../telemetry/http.js';
import { loadListenerTls } from '../core/tls-files.js';
import { createMetrics } from '../telemetry/metrics.js';
import { meshRootsOfRecords } from '../trust/bundle.js';
import { clusterRoleId } from '../trust/spiffe.js';
import { buildApi, type FederationApi } from './api.js';
import type { LoadedClusterConfig } from './config.js';
import { ClusterIssuer } from './cluster-issuer.js';
import { Federation } from './federation.js';
import { IssuedLedger } from './issued-ledger.js';
import { GatewayProber } from './gateway-prober.js';
import { TrafficLedger } from './traffic-ledger.js';
import { TrustFeed } from './trust-feed.js';
import { Reachability } from './reachability.js';
import type { Catalog } from '../model/catalog.js';
import { liveTokens } from './registry-file.js';
import { LocalPlatform } from './local-platform.js';
import type { Platform } from './platform.js';
import { FederationStore } from './store.js';
import { resolveWebhookUrl } from './webhook-url.js';
import { WorkloadSigner } from './workload-signer.js';

export interface RunningFederation {
  federation: Federation;
  api: FederationApi;
  /** host:port the API listens on. */
  apiAddress: string;
  /** host:port of plain-HTTP /metrics, /healthz and the dashboard (federation.dashboardPort); undefined if it could not listen. */
  metricsAddress: string | undefined;
  stop(): Promise<void>;
}

/**
 * Starts one cluster's federation service: store connection, lease, watches, local platform,
 * and the API. Used by `isthmus federation` and by tests, which call `stop()`.
 */
export async function runFederation(loaded: LoadedClusterConfig, logger: Logger): Promise<RunningFederation> {
  const { config } = loaded;
  // The serving certificate names every address a client may dial: the listen host and the advertised one.
  const hosts = [config.federation.host, config.federation.advertise?.slice(0, config.federation.advertise.lastIndexOf(':'))]
    .filter((h): h is string => h !== undefined && h !== '0.0.0.0' && h !== '::');
  const issuer = new ClusterIssuer({
    caDir: loaded.caDir, trustDomain: config.trustDomain, cluster: config.cluster,
    dnsNames: [...new Set(['localhost', ...hosts.filter((h) => !isIp(h))])], ipAddresses: [...new Set(hosts.filter(isIp))],
    logger: logger.child({ component: 'issuer' }),
  });
  // Read before anything connects: a bad file is an error naming it, not a port that fails later.
  const dashboardTls = config.federation.dashboardTls ? loadListenerTls(config.federation.dashboardTls, `federation.dashboardTls in ${loaded.path}`, { baseDir: loaded.dir }) : undefined;
  const platform = await makePlatform(loaded, logger.child({ component: 'platform' }));
  const store = await FederationStore.connect({ endpoints: [...config.etcd.endpoints], tls: loaded.etcdTls, logger });
  const federation = new Federation(loaded, store, logger.child({ component: 'federation' }), platform);
  void sweepSpentTokens(store, new Date()).catch((err: unknown) => logger.warn({ err: (err as Error).message }, 'could not sweep expired spent-token records; they are retried at the next start'));

  // Every root of every trust domain in the mesh, as etcd has them; the root of our intermediate at least.
  const readTrustBundle = (): string[] => meshRootsOfRecords(
    federation.mirror.entries(keys.bundles),
    [{ version: 1, trustDomain: config.trustDomain, roots: [issuer.current.rootCert] }],
    (key, err) => logger.warn({ key, err: err.message }, 'ignoring an invalid trust bundle record'),
  );

  // GET /v1/trust, numbered and long-polled: read again when the bundle records or our intermediate
  // change, which are all it depends on. Everything else here that needs the roots takes them
  // from it, instead of parsing every root again at each gateway probe and each new caller.
  const trust = new TrustFeed(() => ({ roots: readTrustBundle(), issuer: issuer.current.fingerprint256 }));
  federation.on('bundles', () => trust.refresh());
  const trustBundle = (): string[] => trust.current.roots;

  const servingIdentity = clusterRoleId(config.trustDomain, config.cluster, 'federation');
  const reachability = new Reachability(config.cluster);
  const prober = new GatewayProber({
    cluster: config.cluster,
    intervalMs: loaded.probeIntervalMs,
    catalog: () => federation.catalog,
    trustBundle,
    publish: (records) => {
      federation.setProbeRecords(records);
      for (const event of reachability.round([...records.values()])) ledger.addEvent(event);
    },
    logger: logger.child({ component: 'gateway-prober' }),
  });
  // A federation that leaves the mesh stops itself; its prober must not outlive it.
  federation.once('left', () => void prober.stop());
  federation.on('catalog', () => void prober.forgetGone());
  const metrics = createMetrics('federation', { cluster: config.cluster }, {
    clusterSyncs: () => federation.mirror.clusterSyncs(),
    catalog: () => federation.catalog,
    certificates: () => [{ identity: servingIdentity, notAfter: issuer.current.servingNotAfter }],
    probes: () => prober.records(),
    // The dashboard is made below; a scrape comes only once the federation is serving.
    slos: () => dashboard.overview().slos,
    ...(platform.skippedEndpoints ? { skippedEndpoints: () => platform.skippedEndpoints?.() ?? {} } : {}),
  });
  const issued = new IssuedLedger(config.cluster);
  const signer = new WorkloadSigner({
    issuer: issuer.current.ca,
    issuerChain: [issuer.current.ca.certPem],
    onSigned: (leaf, replaces) => issued.signed(leaf.serial, { root: issuer.current.rootFingerprint256, notAfter: leaf.notAfter.getTime() }, replaces),
    trustDomain: config.trustDomain,
    cluster: config.cluster,
    ttlSeconds: loaded.workloadTtlSeconds,
    tokens: () => {
      if (!(platform instanceof LocalPlatform)) return [];
      platform.refresh();
      return liveTokens(platform.registry.tokens, new Date());
    },
    reviewToken: platform.reviewToken,
    gatewayServiceAccount: config.platform === 'kubernetes' ? config.kubernetes.gatewayServiceAccount : undefined,
    trustBundle,
    // One etcd transaction, so two federations (or two requests) cannot both accept the token.
    spendToken: (token, now) => store.transact({
      ifAbsent: [keys.usedToken(token.hash)],
      puts: [{ key: keys.usedToken(token.hash), value: { version: recordVersion, identity: token.identity, usedAt: now.toISOString(), expiresAt: token.expiresAt } }],
    }),
  });
  const ledger = new TrafficLedger(config.cluster);
  const api = buildApi({
    federation,
    signer,
    trustBundle,
    tls: { certPem: issuer.current.serving.certPem, keyPem: issuer.current.serving.keyPem, chainPem: [issuer.current.ca.certPem] },
    logger,
    metrics,
    ledger,
    clusterCas: () => issuer.intermediates(),
    trust,
    onGatewayCertificate: (id, leaf) => issued.presented(`gateway:${id}`, leaf),
  });
  // A new intermediate: signed with from the next request on, served from the next handshake on.
  issuer.onChange((state) => {
    signer.setIssuer(state.ca, [state.ca.certPem]);
    api.server.setSecureContext({ cert: [state.serving.certPem, state.ca.certPem].join('\n'), key: state.serving.keyPem, minVersion: 'TLSv1.2' });
    trust.refresh();
  });
  federation.on('intermediate', (published: string) => issuer.reconcile(published));
  // The serving certificate lasts 30 days: renewed at half life, looked at every hour.
  const renewServing = setInterval(() => issuer.renewServingIfDue(), 3_600_000);
  renewServing.unref();
  // Counters change with every request: publish at most every 2 s, and only when something moved.
  // The same for the roots issued certificates chain to, whose counts also fall as leaves expire.
  let publishedGeneration = -1;
  let publishedIssued = '';
  const publishTraffic = setInterval(() => {
    const issuedRecord = issued.record(Date.now());
    const issuedJson = JSON.stringify(issuedRecord.roots);
    if (issuedJson !== publishedIssued) {
      publishedIssued = issuedJson;
      federation.setTelemetryRecords('certificates', new Map([[keys.issuedOf(config.cluster), issuedRecord]]));
    }
    if (ledger.generation === publishedGeneration) return;
    publishedGeneration = ledger.generation;
    federation.setTelemetryRecords('traffic', ledger.records());
  }, 2000);
  publishTraffic.unref();
  const watchLiveness = clusterLivenessEvents(ledger);
  federation.on('catalog', watchLiveness);

  const dashboard = createDashboard({
    get cluster() { return federation.cluster; },
    get catalog() { return federation.catalog; },
    mirror: federation.mirror,
    on: (event, listener) => federation.on(event, listener),
    sidecars: () => ledger.reportingSidecars(),
    store,
  }, { access: { reads: config.federation.dashboardReads, rootsPem: trustBundle, trustDomain: config.trustDomain } });
  let telemetry: TelemetryServer | undefined;
  const alerter: SloAlerter = new SloAlerter({
    cluster: config.cluster,
    store,
    // An objective gating a rollout is paged by the rollout driver when it rolls back.
    views: (): SloView[] => dashboard.overview().slos.filter((v) => !rollouts.gates(v.namespace, v.name)),
    webhookOf: (ns, name) => {
      const reference = sloPolicies(federation.mirror).find((p) => p.namespace === ns && p.name === name)?.webhook;
      if (!reference) return undefined;
      try {
        return resolveWebhookUrl(reference);
      } catch (err) {
        logger.warn({ slo: `${ns}/${name}`, err: (err as Error).message }, 'SLO webhook not sent');
        return undefined;
      }
    },
    ledger,
    logger: logger.child({ component: 'slo-alerter' }),
    dashboard: () => (telemetry ? `${dashboardTls ? 'https' : 'http'}://${advertised(telemetry.address, config.federation.advertise)}/` : undefined),
  });
  const rollouts: RolloutDriver = new RolloutDriver({
    cluster: config.cluster,
    store,
    views: () => dashboard.overview().slos,
    ledger,
    page: (view, rollout): Promise<void> => alerter.record(view, rollout),
    logger: logger.child({ component: 'rollout-driver' }),
    leaseTtlSeconds: loaded.leaseTtlSeconds,
  });
  try {
    await federation.start();
    await api.listen({ host: config.federation.host, port: config.federation.apiPort });
    prober.start();
    // Metrics are not worth failing the federation for: a taken port is logged, /metrics stays on the API.
    telemetry = await startTelemetryServer({
      host: config.federation.host, port: config.federation.dashboardPort, metrics,
      healthz: () => ({ status: 'ok', cluster: config.cluster }),
      extra: (req, res) => dashboard.handle(req, res), tls: dashboardTls,
    }).catch((err: unknown) => {
      logger.error({ err: (err as Error).message, port: config.federation.dashboardPort }, 'could not listen for /metrics on the dashboard port; /metrics is still served on the API port');
      return undefined;
    });
    federation.setDashboardAddress(telemetry ? advertised(telemetry.address, config.federation.advertise) : undefined);
    alerter.start();
    await rollouts.start();
  } catch (err) {
    clearInterval(publishTraffic);
    clearInterval(renewServing);
    await alerter.stop();
    metrics.close();
    await prober.stop();
    await federation.stop().catch(() => undefined);
    await api.close().catch(() => undefined);
    await store.close().catch(() => undefined);
    throw err;
  }
  const address = api.server.address() as AddressInfo;
  let stopping: Promise<void> | undefined;
  return {
    federation,
    api,
    apiAddress: `${config.federation.host}:${address.port}`,
    metricsAddress: telemetry?.address,
    stop: () => {
      stopping ??= (async () => {
        clearInterval(publishTraffic);
    clearInterval(renewServing);
        federation.off('catalog', watchLiveness);
        await rollouts.stop().catch((err: unknown) => logger.warn({ err: (err as Error).message }, 'could not revoke the rollout driver\'s lease; another federation takes over when it expires'));
        await alerter.stop();
        dashboard.close();
        await telemetry?.close();
        metrics.close();
        await prober.stop();
        await api.close();
        await federation.stop();
        await store.close();
      })();
      return stopping;
    },
  };
}

/**
 * Events for clusters that stop or start heartbeating, as this federation's mirror sees them.
 * Every federation notes the same change; the dashboard shows equal events once.
 */
function clusterLivenessEvents(ledger: TrafficLedger): (catalog: Catalog) => void {
  let alive = new Map<string, boolean>();
  // Only a cluster we saw go down comes back: one that is simply starting is not news.
  const wentDown = new Set<string>();
  return (catalog) => {
    const now = new Map(catalog.clusters.map((c) => [c.name, c.alive]));
    for (const [name, isAlive] of now) {
      const was = alive.get(name);
      if (was === true && !isAlive) {
        wentDown.add(name);
        ledger.addEvent({ at: new Date().toISOString(), kind: 'cluster-down', summary: `cluster ${name} stopped heartbeating (its lease expired or it left); its exports were withdrawn` });
      }
      if (isAlive && wentDown.delete(name)) ledger.addEvent({ at: new Date().toISOString(), kind: 'cluster-up', summary: `cluster ${name} is heartbeating again` });
    }
    alive = now;
  };
}

/** The dashboard's address as other hosts dial it: the advertised host when the listen host is a wildcard. */
function advertised(listening: string, advertise: string | undefined): string {
  const split = listening.lastIndexOf(':');
  const host = listening.slice(0, split);
  if ((host === '0.0.0.0' || host === '::') && advertise) return `${advertise.slice(0, advertise.lastIndexOf(':'))}:${listening.slice(split + 1)}`;
  return listening;
}

/**
 * The platform cluster.yaml names. The Kubernetes adapter (and @kubernetes/client-node with it)
 * is imported only when asked for, so a federation on the local platform never loads it.
 */
async function makePlatform(loaded: LoadedClusterConfig, logger: Logger): Promise<Platform> {
  if (loaded.config.platform === 'local') return new LocalPlatform(loaded, logger);
  const { KubernetesPlatform } = await import('./kubernetes/kube-platform.js');
  return new KubernetesPlatform(loaded, logger);
}

function isIp(host: string): boolean {
  return /^[0-9.]+$/.test(host) || host.includes(':');
}

/**
 * A spent token's record only matters until the token would have expired anyway; those past it
 * are deleted at start (a crash can leave them behind whenever it happens).
 */
async function sweepSpentTokens(store: FederationStore, now: Date): Promise<void> {
  const { records } = await store.list(keys.usedTokens);
  const expired = records.filter((r) => {
    const at = Date.parse(String((r.value as { expiresAt?: unknown }).expiresAt));
    return Number.isNaN(at) || at <= now.getTime();
  }).map((r) => r.key);
  if (expired.length > 0) await store.transact({ deletes: expired });
}
