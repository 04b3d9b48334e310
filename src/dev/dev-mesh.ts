import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import { parse, stringify } from 'yaml';
import { withStore, type EtcdFlags } from '../cli/common.js';
import { keys, recordVersion } from '../core/keys.js';
import { createLogger, type Logger } from '../core/log.js';
import type { RelayKind } from '../core/native-relay.js';
import { checkName } from '../core/names.js';
import { ensureDirectory } from '../core/user-paths.js';
import { loadClusterConfig } from '../federation/config.js';
import type { EtcdTlsFiles } from '../federation/etcd-tls.js';
import { liveTokens, updateRegistry } from '../federation/registry-file.js';
import { createRootCa, issueOperatorCertificate } from '../trust/ca.js';
import { readRootCa, writeRootCa } from '../trust/ca-files.js';
import { ensureEtcdPki } from '../trust/etcd-ca.js';
import { writeOperatorCredential } from '../trust/operator-files.js';
import { workloadId } from '../trust/spiffe.js';
import { issueToken } from '../trust/tokens.js';
import { startDevSidecar, type SidecarRunner } from './dev-sidecar.js';
import { startEtcdProcess } from './etcd-process.js';
import { MeshProcess } from './mesh-process.js';
import { hasRedisServer, redisInstallHint, redisPing } from './redis-sample.js';
import { routeHasHealthyEndpoint, TrafficGenerator, waitUntilServing } from './traffic-generator.js';
import { SampleWorkload, sidecarStateDir } from './sample-workload.js';

export interface DevMeshOptions {
  clusters: string[];
  stateDir: string;
  /** Use this etcd instead of starting one. */
  etcd?: string | undefined;
  /** With `etcd`: its CA and a client certificate, which every cluster and the CLI then use. */
  etcdTls?: EtcdTlsFiles | undefined;
  trustDomain: string;
  /** East-west gateways per cluster (active-active). */
  gateways?: number;
  /** Cluster n gets 127.0.<hostBase+n>.1; tests move it so meshes do not collide. */
  hostBase?: number;
  /** federation.probeInterval of every cluster (e.g. `1s` in tests); the default otherwise. */
  probeInterval?: string;
  /** certificates.workloadTtl of every cluster (e.g. `20s` to see renewals in a test); the default otherwise. */
  workloadTtl?: string;
  /** Sample requests a second from each cluster's client sidecar (to hello and, where it exists, ledger); 0 or absent: none. */
  traffic?: number;
  /** How often sidecars send their traffic counts to the federation (ms; default 5000; whole seconds with `processes`). */
  reportIntervalMs?: number;
  /**
   * Run every sidecar (the samples' and the client's) and every gateway as its own process
   * through the CLI (`isthmus sidecar`, `isthmus gateway`), one event loop per proxy as deployed,
   * and every HTTP and gRPC sample app in one of its own (sample-app-process.ts), as an app's
   * container beside its sidecar. The federation services stay in this process unless
   * `federationProcesses` (`isthmus dev up --processes` sets both).
   */
  processes?: boolean;
  /** Every sidecar writes an access log in this format to `logs/<sidecar>.access.log` (`isthmus dev up --access-log`). */
  accessLog?: 'json' | 'text';
  /** Every sidecar sends HTTP/1.1 requests to other sidecars as HTTP/2 streams (`isthmus dev up --upgrade-to-http2`). */
  upgradeToHttp2?: boolean;
  /** What copies bytes in the gateways (`isthmus dev up --gateway-relay`; gateways[].relay): native unless set. */
  gatewayRelay?: RelayKind;
  /**
   * Run each cluster's federation service as its own `isthmus federation --config` process too,
   * as deployed, so that it can crash alone (the reliability scenarios SIGKILL it).
   */
  federationProcesses?: boolean;
  /**
   * Also run the gRPC echo sample, `grpc-echo`, in west (`isthmus dev up` does; it is off by
   * default so that meshes built by tests for other things keep their set of services).
   */
  grpcEcho?: boolean;
  /**
   * Also run `hello-v1` and `hello-v2` (one instance each) in every cluster, the services a
   * traffic split's backendRefs name, and label hello's instances version=v1 and version=v2
   * (docs/traffic-policy.md); every answer of hello then names its `version`. `isthmus dev up`
   * does by default; off here so that meshes built by tests for other things keep their set of
   * services.
   */
  versions?: boolean;
  /** One line per step, for a person watching. */
  progress: (line: string) => void;
}

export interface MeshFileCluster {
  host: string;
  region: string;
  zones: string[];
  federation: string;
  /** host:port of the federation's plain-HTTP /metrics (port 15014); absent if it could not listen. */
  metrics?: string;
  config: string;
  gateways: string[];
  client: { proxy: string; admin: string; listeners: Record<string, string> };
  services: { name: string; namespace: string; instances: string[] }[];
}

export interface MeshFile {
  etcd: string;
  /**
   * The CA of etcd and the operator's client certificate for it (ISTHMUS_ETCD_CA, _CERT, _KEY);
   * absent for a plain-text etcd given with --etcd.
   */
  etcdTls?: EtcdTlsFiles;
  trustDomain: string;
  ca: string;
  /** The dashboard of the first cluster's federation (`http://<its metrics address>/`); absent if that port could not listen. */
  dashboard?: string;
  /** The local user's operator credential (operator-cert.pem, operator-key.pem), for ISTHMUS_OPERATOR_DIR. */
  operator: string;
  clusters: Record<string, MeshFileCluster>;
}

export interface DevMesh {
  file: MeshFile;
  workloads: SampleWorkload[];
  /** `drain` only for gateways in this process (a gateway process drains on the SIGTERM its stop sends). */
  gateways: { cluster: string; id: string; address: string; stop(): Promise<void>; drain?: () => Promise<number> }[];
  /** Each cluster's federation process, with `federationProcesses` (restartable after a crash with start()). */
  federationProcesses: { cluster: string; process: MeshProcess }[];
  stop(): Promise<void>;
}

/** The CLI's flags for an etcd at `url` with these TLS files, as a user would pass them. */
export function etcdFlags(url: string, tls: EtcdTlsFiles | undefined): EtcdFlags {
  return { etcd: url, etcdCa: tls?.ca, etcdCert: tls?.cert, etcdKey: tls?.key };
}

export const clusterHost = (index: number, hostBase = 1) => `127.0.${index + hostBase}.1`;

/**
 * `hello` in every cluster (one instance per zone), `ledger` only in `west`, and in `west` too
 * `redis`, the TCP sample (`redis-server`), when it is installed, and with `grpcEcho` the gRPC
 * sample `grpc-echo`.
 */
const samples = (cluster: string, withRedis: boolean, grpcEcho = false, versions = false): { name: string; instances: number; kind: 'http' | 'grpc'; app?: 'redis' }[] => [
  { name: 'hello', instances: 2, kind: 'http' },
  ...(versions ? [{ name: 'hello-v1', instances: 1, kind: 'http' as const }, { name: 'hello-v2', instances: 1, kind: 'http' as const }] : []),
  ...(cluster === 'west' ? [{ name: 'ledger', instances: 1, kind: 'http' as const }] : []),
  ...(cluster === 'west' && withRedis ? [{ name: 'redis', instances: 1, kind: 'http' as const, app: 'redis' as const }] : []),
  ...(cluster === 'west' && grpcEcho ? [{ name: 'grpc-echo', instances: 1, kind: 'grpc' as const }] : []),
];
const namespace = 'demo';
/** The client sidecar's fixed TCP listener for demo/redis, in every cluster but west. */
export const redisListenerPort = 16379;

/**
 * A whole mesh on one machine: etcd, a root CA, and per cluster an intermediate, a federation
 * service, gateways, sample services with sidecars, and a client sidecar; the samples exported.
 * Built with the same functions the CLI verbs use. Ports repeat per cluster (docs/architecture.md, "Contracts"): each
 * cluster has its own loopback address.
 */
export async function startDevMesh(opts: DevMeshOptions): Promise<DevMesh> {
  for (const name of opts.clusters) checkName('cluster', name);
  ensureDirectory(join(opts.stateDir, 'logs'), 'the dev mesh\'s log directory');
  const stoppers: (() => Promise<void>)[] = [];
  const stop = async () => {
    for (const s of stoppers.reverse()) await s().catch(() => undefined);
    stoppers.length = 0;
  };
  const logFile = (name: string) => join(opts.stateDir, 'logs', `${name}.log`);
  const log = (name: string): Logger => createLogger({ name, format: 'json', level: 'info', file: logFile(name) });
  // A crashed child stays down (as a pod without a restart policy): said once, in the progress and its log.
  const onUnexpectedExit = (line: string) => opts.progress(`  ✗ ${line}`);
  const sidecarRunner = (name: string): SidecarRunner => ({
    ...(opts.processes ? { kind: 'process', name, logFile: logFile(name), onUnexpectedExit } as const : { kind: 'in-process', logger: log(name) } as const),
    ...(opts.accessLog ? { accessLog: { file: resolve(opts.stateDir, 'logs', `${name}.access.log`), format: opts.accessLog } } : {}),
    ...(opts.upgradeToHttp2 ? { upgradeToHttp2: true } : {}),
  });
  try {
    // Our own etcd takes TLS clients with certificates of its own CA only, as a production one
    // should (docs/security.md, "etcd"); each cluster's federation gets a client certificate.
    let etcdUrl = opts.etcd;
    let etcdTls = opts.etcdTls;
    let etcdPki: string | undefined;
    if (!etcdUrl) {
      const pkiDir = join(opts.stateDir, 'etcd-pki');
      const etcd = await step(opts, 'etcd', async () => startEtcdProcess({ dataDir: join(opts.stateDir, 'etcd'), pkiDir }));
      stoppers.push(() => etcd.stop());
      etcdUrl = etcd.url;
      etcdTls = etcd.tls;
      etcdPki = pkiDir;
    }
    const operatorEtcd = etcdFlags(etcdUrl, etcdTls);
    const caDir = join(opts.stateDir, 'ca');
    await step(opts, 'root CA', async () => {
      if (!existsSync(join(caDir, 'root-cert.pem'))) writeRootCa(caDir, createRootCa({ trustDomain: opts.trustDomain }));
      return { url: caDir };
    });

    const { joinCluster } = await import('../cli/join.js');
    const { runFederation } = await import('../federation/server.js');
    const { runGateway } = await import('../gateway/run.js');
    const { loadGatewayConfig } = await import('../gateway/config.js');
    // The local user is this mesh's operator: trace, the gateways' /debug/connections and the
    // dashboard's /api/sidecars ask for it. Re-issued at every start (it lives 8 hours).
    const operatorDir = join(opts.stateDir, 'operator');
    await step(opts, 'operator credential', async () => {
      const issued = issueOperatorCertificate({ name: operatorName(), issuer: readRootCa(caDir), ttlSeconds: 8 * 3600 });
      writeOperatorCredential(operatorDir, issued);
      return { url: `${operatorDir} (${issued.identity})` };
    });
    const file: MeshFile = { etcd: etcdUrl, ...(etcdTls ? { etcdTls } : {}), trustDomain: opts.trustDomain, ca: caDir, operator: operatorDir, clusters: {} };
    const mesh: DevMesh = { file, workloads: [], gateways: [], federationProcesses: [], stop };
    const gatewayCount = opts.gateways ?? 1;
    const withRedis = opts.clusters.includes('west') && hasRedisServer();
    if (opts.clusters.includes('west') && !withRedis) opts.progress(`  ✗ TCP sample demo/redis left out: redis-server is not installed (${redisInstallHint})`);

    for (const [index, name] of opts.clusters.entries()) {
      const host = clusterHost(index, opts.hostBase);
      const dir = join(opts.stateDir, 'clusters', name);
      const zones = [`${name}-a`, `${name}-b`];
      const config = join(dir, 'cluster.yaml');
      const rootCertFile = join(dir, 'root-cert.pem');
      const clusterTls = etcdPki === undefined ? etcdTls : ensureEtcdPki(etcdPki, [], [`federation-${name}`]).clients[`federation-${name}`];
      await step(opts, `cluster ${name} joined`, async () => {
        if (existsSync(config)) {
          // Kept from an earlier run; our own etcd may have a new port this time.
          const kept = parse(readFileSync(config, 'utf8')) as { etcd: { endpoints: string[] }; federation?: Record<string, unknown>; gateways?: { relay?: string }[] };
          kept.etcd = { endpoints: etcdUrl.split(','), ...clusterTls };
          for (const g of kept.gateways ?? []) {
            if (opts.gatewayRelay) g.relay = opts.gatewayRelay;
            else delete g.relay;
          }
          // A state dir from before dashboardReads existed: keep its dashboard open, as it was.
          kept.federation = { dashboardReads: 'public', ...kept.federation };
          writeFileSync(config, stringify(kept));
          return { url: `${dir} (kept from an earlier run)` };
        }
        await joinCluster(name, {
          region: name, zone: zones, ...operatorEtcd, federationEtcdCert: clusterTls?.cert, federationEtcdKey: clusterTls?.key, ca: caDir, out: dir, federationHost: host, apiPort: 15010, dashboardPort: 15014,
          gateway: Array.from({ length: gatewayCount }, (_, g) => `${host}:${15443 + g}`), leaseTtl: '15s', output: 'table',
        });
        // Each gateway's admin port beside its TLS port: 15021, 15022, ...
        const yaml = parse(readFileSync(config, 'utf8')) as { gateways: { admin?: string; relay?: string }[]; federation?: Record<string, unknown>; certificates?: Record<string, unknown> };
        yaml.gateways.forEach((g, i) => {
          g.admin = `${host}:${15021 + i}`;
          if (opts.gatewayRelay) g.relay = opts.gatewayRelay;
        });
        // Dashboard data for anyone who reaches 127.0.x.1: a dev mesh is one person's, on loopback,
        // and a browser opens it without a token. /api/sidecars still needs the operator.
        yaml.federation = { ...yaml.federation, dashboardReads: 'public' };
        if (opts.probeInterval) yaml.federation = { ...yaml.federation, probeInterval: opts.probeInterval };
        if (opts.workloadTtl) yaml.certificates = { ...yaml.certificates, workloadTtl: opts.workloadTtl };
        writeFileSync(config, stringify(yaml));
        return { url: dir };
      });

      await step(opts, `cluster ${name} exports`, async () => {
        await withStore(operatorEtcd, async (store) => {
          for (const sample of samples(name, withRedis, opts.grpcEcho, opts.versions)) {
            await store.put(keys.serviceExport(name, namespace, sample.name), { version: recordVersion, exportedAt: new Date().toISOString() });
          }
        });
        return { url: samples(name, withRedis, opts.grpcEcho, opts.versions).map((x) => `${namespace}/${x.name}`).join(', ') };
      });

      // Instance i: app on 18080+i, sidecar inbound (the registered address) 19080+i, outbound 19180+i, admin 19280+i.
      const workloads: SampleWorkload[] = [];
      const client = issueToken({ identity: workloadId(opts.trustDomain, namespace, 'client'), ttlSeconds: 24 * 3600 });
      const records = [client.record];
      for (const sample of samples(name, withRedis, opts.grpcEcho, opts.versions)) {
        for (let n = 0; n < sample.instances; n += 1) {
          const i = workloads.length;
          const instance = `${sample.name}-${name}-${n + 1}`;
          const token = issueToken({ identity: workloadId(opts.trustDomain, namespace, sample.name), ttlSeconds: 24 * 3600 });
          records.push(token.record);
          workloads.push(new SampleWorkload({
            cluster: name, zone: zones[n % zones.length] ?? name, namespace, service: sample.name, instance, host,
            ...(sample.app ? { app: sample.app, appTempRoot: join(opts.stateDir, 'apps') } : {}), appPort: 18080 + i, inboundPort: 19080 + i, outboundPort: 19180 + i, adminPort: 19280 + i,
            federationUrl: `https://${host}:15010`, rootCertFile, bootstrapToken: token.token,
            stateDir: sidecarStateDir(opts.stateDir, name, instance), sidecar: sidecarRunner(`sidecar-${name}-${instance}`),
            reportIntervalMs: opts.reportIntervalMs, kind: sample.kind,
            ...(opts.processes && sample.app !== 'redis' ? { appProcess: { logFile: logFile(`app-${name}-${instance}`), onUnexpectedExit } } : {}),
            ...(opts.versions ? { version: versionLabels(sample.name, instance).labels?.version } : {}),
          }));
        }
      }
      const now = new Date();
      updateRegistry(dir, (registry) => ({
        version: 1,
        instances: workloads.map((w) => ({
          namespace, service: w.spec.service, serviceAccount: w.spec.service, address: w.inbound, zone: w.spec.zone, registeredAt: now.toISOString(),
          // As `isthmus register --protocol tcp` writes it: the export record tells every cluster.
          ...(w.spec.app === 'redis' ? { ports: [{ port: w.spec.inboundPort, protocol: 'tcp' }] } : {}),
          ...(opts.versions ? versionLabels(w.spec.service, w.spec.instance) : {}),
        })),
        tokens: [...liveTokens(registry.tokens, now), ...records],
      }));

      const federation = await step(opts, `cluster ${name} federation`, async () => {
        if (opts.federationProcesses) {
          const { federation: listen } = loadClusterConfig(config).config;
          const metricsAddress = `${listen.host}:${listen.dashboardPort}`;
          const child = new MeshProcess({
            name: `federation-${name}`, args: ['federation', '--config', config], logFile: logFile(`federation-${name}`),
            readyUrl: `http://${metricsAddress}/healthz`, onUnexpectedExit,
          });
          stoppers.push(() => child.stop()); // before it is ready: a failed start leaves nothing behind
          await child.start();
          mesh.federationProcesses.push({ cluster: name, process: child });
          const apiAddress = `${listen.host}:${listen.apiPort}`;
          return { apiAddress, metricsAddress, stop: () => child.stop(), url: `https://${apiAddress} (pid ${child.pid})` };
        }
        const running = await runFederation(loadClusterConfig(config), log(`federation-${name}`));
        stoppers.push(() => running.stop());
        return Object.assign(running, { url: `https://${running.apiAddress}` });
      });

      const gateways: string[] = [];
      for (let g = 1; g <= gatewayCount; g += 1) {
        const gatewayName = `gateway-${name}-gw-${g}`;
        const gateway = await step(opts, `cluster ${name} gateway gw-${g}`, async () => {
          if (opts.processes) {
            // The same entry of the same cluster.yaml, read by the CLI in a process of its own.
            const { listen, admin } = loadGatewayConfig(config, `gw-${g}`);
            const child = new MeshProcess({
              name: gatewayName, args: ['gateway', '--config', config, '--id', `gw-${g}`], logFile: logFile(gatewayName),
              readyUrl: `http://${admin.host}:${admin.port}/readyz`, onUnexpectedExit,
            });
            stoppers.push(() => child.stop()); // before it is ready: a failed start leaves nothing behind
            await child.start();
            const address = `${listen.host}:${listen.port}`;
            return { address, stop: () => child.stop(), url: `${address} (admin http://${admin.host}:${admin.port}, pid ${child.pid})` };
          }
          const running = await runGateway(loadGatewayConfig(config, `gw-${g}`), log(gatewayName));
          return Object.assign(running, { url: `${running.address} (admin http://${running.admin})` });
        });
        let stopped = false;
        const stopGateway = async () => {
          if (!stopped) await gateway.stop();
          stopped = true;
        };
        stoppers.push(stopGateway);
        gateways.push(gateway.address);
        mesh.gateways.push({ cluster: name, id: `gw-${g}`, address: gateway.address, stop: stopGateway, ...('drain' in gateway ? { drain: () => gateway.drain() } : {}) });
      }

      await step(opts, `cluster ${name} samples with sidecars`, async () => {
        if (opts.processes) {
          // Node start-up dominates here, so the sidecar processes start side by side. allSettled,
          // not all: a stop() must not race a start() that is still running.
          for (const workload of workloads) stoppers.push(() => workload.stop());
          const failed = (await Promise.allSettled(workloads.map((w) => w.start()))).find((r) => r.status === 'rejected');
          if (failed) throw failed.reason;
        } else {
          for (const workload of workloads) {
            await workload.start();
            stoppers.push(() => workload.stop());
          }
        }
        return { url: workloads.map((w) => `${w.spec.service}@${w.inbound}`).join(' ') };
      });
      mesh.workloads.push(...workloads);

      const clientSidecar = await step(opts, `cluster ${name} client sidecar`, async () => {
        const running = await startDevSidecar({
          cluster: name, zone: zones[0] ?? name, namespace, service: 'client',
          federation: { url: `https://${host}:15010`, rootCert: rootCertFile },
          stateDir: sidecarStateDir(opts.stateDir, name, 'client'),
          outbound: { listen: `${host}:15001` }, admin: { listen: `${host}:15020` },
          // For apps that cannot use a proxy: plain http://<host>:15101/ reaches ledger, a gRPC
          // client (h2c) pointed at <host>:15102 reaches grpc-echo, and an app speaking the Redis
          // protocol (redis-cli -h <host> -p 16379) reaches redis in west.
          listeners: [
            ...(opts.clusters.includes('west') ? [{ service: 'ledger', namespace, listen: `${host}:15101` }] : []),
            ...(opts.clusters.includes('west') && opts.grpcEcho ? [{ service: 'grpc-echo', namespace, listen: `${host}:15102` }] : []),
            ...(withRedis && name !== 'west' ? [{ service: 'redis', namespace, listen: `${host}:${redisListenerPort}`, protocol: 'tcp' as const }] : []),
          ],
        }, { bootstrapToken: client.token, reportIntervalMs: opts.reportIntervalMs }, sidecarRunner(`sidecar-${name}-client`));
        return Object.assign(running, { url: `proxy http://${running.outbound}, admin http://${running.admin}${opts.processes ? `, pid ${running.pid}` : ''}` });
      });
      stoppers.push(() => clientSidecar.stop());

      file.clusters[name] = {
        host, region: name, zones, federation: federation.apiAddress, ...(federation.metricsAddress ? { metrics: federation.metricsAddress } : {}), config, gateways,
        client: { proxy: clientSidecar.outbound, admin: clientSidecar.admin, listeners: clientSidecar.listeners },
        services: samples(name, withRedis, opts.grpcEcho, opts.versions).map((s) => ({ name: s.name, namespace, instances: workloads.filter((w) => w.spec.service === s.name).map((w) => w.appAddress) })),
      };
    }

    // With the gRPC sample, every fifth request of a client that has its listener is a gRPC call,
    // so the dashboard shows a gRPC service too (counted by the status each call ended with).
    const targets = opts.clusters.map((name) => {
      const client = (file.clusters[name] as MeshFileCluster).client;
      const grpcListener = client.listeners[`${namespace}/grpc-echo`];
      const redisListener = client.listeners[`${namespace}/redis`];
      return {
        proxy: client.proxy, admin: client.admin,
        urls: [`http://hello.${namespace}.mesh/`, ...(opts.clusters.includes('west') ? [`http://ledger.${namespace}.mesh/`] : [])],
        ...(grpcListener ? { grpc: { listener: grpcListener, every: 5 } } : {}),
        ...(redisListener ? { redis: { listener: redisListener, every: 7 } } : {}),
      };
    });
    await step(opts, 'every client reaches every sample service', async () => {
      const failing = await waitUntilServing(targets, 20_000);
      const redisClients = opts.clusters.map((name) => file.clusters[name]?.client).filter((c) => c?.listeners[`${namespace}/redis`] !== undefined);
      failing.push(...await waitUntilRedisAnswers(redisClients.map((c) => ({ admin: c?.admin ?? '', listener: c?.listeners[`${namespace}/redis`] ?? '' })), 20_000));
      return { url: failing.length === 0 ? 'ok' : `still failing after 20 s: ${failing.join(', ')} (see the logs)` };
    });
    if (opts.traffic && opts.traffic > 0) {
      const generator = new TrafficGenerator(targets, opts.traffic);
      generator.start();
      stoppers.push(async () => generator.stop());
      const grpcFrom = targets.some((t) => t.grpc) ? ', gRPC calls to grpc-echo' : '';
      const redisFrom = targets.some((t) => t.redis) ? ', redis PINGs through the fixed TCP listeners' : '';
      opts.progress(`  ✓ sample traffic: ${opts.traffic} requests/s from each cluster's client to hello${opts.clusters.includes('west') ? ' and ledger' : ''}${grpcFrom}${redisFrom}`);
    }

    const firstMetrics = file.clusters[opts.clusters[0] ?? '']?.metrics;
    if (firstMetrics) file.dashboard = `http://${firstMetrics}/`;
    writeFileSync(join(opts.stateDir, 'mesh.json'), `${JSON.stringify(file, null, 2)}\n`);
    return mesh;
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * PING through each TCP listener until +PONG; the listeners still failing after `timeoutMs`.
 * As for HTTP, the route is asked first, so no connection is tried (and no failure counted
 * against a gateway) before the sidecar has a healthy endpoint.
 */
async function waitUntilRedisAnswers(clients: { admin: string; listener: string }[], timeoutMs: number): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  let failing = clients;
  while (failing.length > 0 && Date.now() < deadline) {
    const answers = await Promise.all(failing.map(async (c) => ((await routeHasHealthyEndpoint(c.admin, `tcp://redis.${namespace}.mesh/`)) && (await redisPing(c.listener)) ? undefined : c)));
    failing = answers.filter((c): c is { admin: string; listener: string } => c !== undefined);
    if (failing.length > 0) await new Promise((r) => setTimeout(r, 200));
  }
  return failing.map((c) => `redis PING via ${c.listener}`);
}

/** As `isthmus register --label version=...`: hello-<cluster>-1 is v1, hello-<cluster>-2 v2, hello-vN is vN. */
function versionLabels(service: string, instance: string): { labels?: Record<string, string> } {
  if (service === 'hello-v1' || service === 'hello-v2') return { labels: { version: service.slice('hello-'.length) } };
  if (service === 'hello') return { labels: { version: instance.endsWith('-1') ? 'v1' : 'v2' } };
  return {};
}

async function step<T extends { url: string }>(opts: DevMeshOptions, what: string, work: () => Promise<T>): Promise<T> {
  const started = Date.now();
  const result = await work();
  opts.progress(`  ✓ ${what}: ${result.url} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  return result;
}

/** The local user's name as an operator name (a DNS label), `dev` when it is not one. */
function operatorName(): string {
  let name = 'dev';
  try {
    name = userInfo().username.toLowerCase().replace(/[^a-z0-9-]/g, '-').replace(/^-+|-+$/g, '').slice(0, 63) || 'dev';
  } catch {
    // no passwd entry for this uid (a container): keep `dev`
  }
  return name;
}
