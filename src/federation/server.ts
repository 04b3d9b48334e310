import type { AddressInfo } from 'node:net';
import { keys } from '../core/keys.js';
import type { Logger } from '../core/log.js';
import { meshRoots, validateBundle, type TrustBundle } from '../trust/bundle.js';
import { issueCertificate } from '../trust/ca.js';
import { readClusterCa } from '../trust/ca-files.js';
import { clusterRoleId } from '../trust/spiffe.js';
import { buildApi, type FederationApi } from './api.js';
import type { LoadedClusterConfig } from './config.js';
import { Federation } from './federation.js';
import { liveTokens } from './registry-file.js';
import { FederationStore } from './store.js';
import { WorkloadSigner } from './workload-signer.js';

export interface RunningFederation {
  federation: Federation;
  api: FederationApi;
  /** host:port the API listens on. */
  apiAddress: string;
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
  const serving = issueCertificate({
    identity: clusterRoleId(config.trustDomain, config.cluster, 'federation'),
    issuer: clusterCa.ca,
    ttlSeconds: 30 * 24 * 3600,
    dnsNames: [...new Set(['localhost', ...hosts.filter((h) => !isIp(h))])],
    ipAddresses: [...new Set(hosts.filter(isIp))],
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
  });

  try {
    await federation.start();
    await api.listen({ host: config.federation.host, port: config.federation.apiPort });
  } catch (err) {
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
    stop: () => {
      stopping ??= (async () => {
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
