import type { AddressInfo } from 'node:net';
import { keys } from '../core/keys.js';
import { createDashboard } from '../dashboard/server.js';
import type { Logger } from '../core/log.js';
import { startTelemetryServer, type TelemetryServer } from '../telemetry/http.js';
import { createMetrics } from '../telemetry/metrics.js';
import { meshRoots, validateBundle, type TrustBundle } from '../trust/bundle.js';
import { issueCertificate } from '../trust/ca.js';
import { readClusterCa } from '../trust/ca-files.js';
import { clusterRoleId } from '../trust/spiffe.js';
import { certificateInfo } from '../trust/verify.js';
import { buildApi, type FederationApi } from './api.js';
import type { LoadedClusterConfig } from './config.js';
import { Federation } from './federation.js';
import { GatewayProber } from './gateway-prober.js';
import { liveTokens } from './registry-file.js';
import { FederationStore } from './store.js';
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
  const clusterCa = readClusterCa(loaded.caDir);
  const store = await FederationStore.connect({ endpoints: [...config.etcd.endpoints], logger });
  const federation = new Federation(loaded, store, logger.child({ component: 'federation' }));

  // Every root of every trust domain in the mesh, as etcd has them; our own root at least.
  const trustBundle = (): string[] => {
    const bundles: TrustBundle[] = [];
    for (const [key, value] of federation.mirror.entries(keys.bundles)) {
      try {
        bundles.push(validateBundle(value));
      } catch (err) {
        logger.warn({ key, err: (err as Error).message }, 'ignoring an invalid trust bundle record');
      }
    }
    return meshRoots([...bundles, { version: 1, trustDomain: config.trustDomain, roots: [clusterCa.rootCert] }]);
  };

  // The serving certificate names every address a client may dial: the listen host and the advertised one.
  const hosts = [config.federation.host, config.federation.advertise?.slice(0, config.federation.advertise.lastIndexOf(':'))]
    .filter((h): h is string => h !== undefined && h !== '0.0.0.0' && h !== '::');
  const servingIdentity = clusterRoleId(config.trustDomain, config.cluster, 'federation');
  const serving = issueCertificate({
    identity: servingIdentity,
    issuer: clusterCa.ca,
    ttlSeconds: 30 * 24 * 3600,
    dnsNames: [...new Set(['localhost', ...hosts.filter((h) => !isIp(h))])],
    ipAddresses: [...new Set(hosts.filter(isIp))],
  });
  const servingNotAfter = certificateInfo(serving.certPem).notAfter;
  const prober = new GatewayProber({
    cluster: config.cluster,
    intervalMs: loaded.probeIntervalMs,
    catalog: () => federation.catalog,
    trustBundle,
    publish: (records) => federation.setProbeRecords(records),
    logger: logger.child({ component: 'gateway-prober' }),
  });
  // A federation that leaves the mesh stops itself; its prober must not outlive it.
  federation.once('left', () => void prober.stop());
  const metrics = createMetrics('federation', { cluster: config.cluster }, {
    clusterSyncs: () => federation.mirror.clusterSyncs(),
    catalog: () => federation.catalog,
    certificates: () => [{ identity: servingIdentity, notAfter: servingNotAfter }],
    probes: () => prober.records(),
  });
  const signer = new WorkloadSigner({
    issuer: clusterCa.ca,
    issuerChain: [clusterCa.ca.certPem],
    trustDomain: config.trustDomain,
    ttlSeconds: loaded.workloadTtlSeconds,
    tokens: () => {
      federation.refreshRegistry();
      return liveTokens(federation.registry.tokens, new Date());
    },
    trustBundle,
  });
  const api = buildApi({
    federation,
    signer,
    trustBundle,
    tls: { certPem: serving.certPem, keyPem: serving.keyPem, chainPem: [clusterCa.ca.certPem] },
    logger,
    metrics,
  });

  const dashboard = createDashboard(federation);
  let telemetry: TelemetryServer | undefined;
  try {
    await federation.start();
    await api.listen({ host: config.federation.host, port: config.federation.apiPort });
    prober.start();
    // Metrics are not worth failing the federation for: a taken port is logged, /metrics stays on the API.
    telemetry = await startTelemetryServer({
      host: config.federation.host, port: config.federation.dashboardPort, metrics,
      healthz: () => ({ status: 'ok', cluster: config.cluster }),
      extra: (req, res) => dashboard.handle(req, res),
    }).catch((err: unknown) => {
      logger.error({ err: (err as Error).message, port: config.federation.dashboardPort }, 'could not listen for /metrics on the dashboard port; /metrics is still served on the API port');
      return undefined;
    });
  } catch (err) {
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

function isIp(host: string): boolean {
  return /^[0-9.]+$/.test(host) || host.includes(':');
}
