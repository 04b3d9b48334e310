import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { keys, recordVersion } from '../core/keys.js';
import { createLogger } from '../core/log.js';
import { checkName } from '../core/names.js';
import { loadClusterConfig } from '../federation/config.js';
import { liveTokens, updateRegistry } from '../federation/registry-file.js';
import { withStore } from '../cli/common.js';
import { createRootCa } from '../trust/ca.js';
import { writeRootCa } from '../trust/ca-files.js';
import { workloadId } from '../trust/spiffe.js';
import { issueToken, type TokenRecord } from '../trust/tokens.js';
import { startEtcdProcess, type EtcdProcess } from './etcd-process.js';
import { startSampleInstance, type SampleInstance } from './sample-service.js';

export interface DevMeshOptions {
  clusters: string[];
  stateDir: string;
  /** Use this etcd instead of starting one. */
  etcd?: string | undefined;
  trustDomain: string;
  /** One line per step, for a person watching. */
  progress: (line: string) => void;
}

export interface DevMeshCluster {
  name: string;
  host: string;
  region: string;
  zones: string[];
  federation: string;
  config: string;
  gateways: string[];
  client: { proxy: string; admin: string };
  services: { name: string; namespace: string; instances: string[] }[];
}

export interface MeshFile {
  etcd: string;
  trustDomain: string;
  ca: string;
  clusters: Record<string, Omit<DevMeshCluster, 'name'>>;
}

export interface DevMesh {
  file: MeshFile;
  stop(): Promise<void>;
}

/** Cluster n (1-based) owns the loopback address 127.0.n.1, so every cluster can use the default ports. */
export const clusterHost = (index: number) => `127.0.${index + 1}.1`;

const samples = (cluster: string) => [
  { name: 'hello', namespace: 'demo', instances: 2 },
  ...(cluster === 'west' ? [{ name: 'ledger', namespace: 'demo', instances: 1 }] : []),
];

/**
 * A whole mesh on one machine: etcd, a root CA, and per cluster an intermediate, a federation
 * service and sample services, all exported. Built through the same functions the CLI verbs use.
 */
export async function startDevMesh(opts: DevMeshOptions): Promise<DevMesh> {
  for (const name of opts.clusters) checkName('cluster', name);
  mkdirSync(join(opts.stateDir, 'logs'), { recursive: true });
  const stoppers: (() => Promise<void>)[] = [];
  const stop = async () => {
    for (const s of stoppers.reverse()) await s().catch(() => undefined);
  };
  try {
    let etcd: EtcdProcess | undefined;
    let etcdUrl = opts.etcd;
    if (!etcdUrl) {
      etcd = await step(opts, 'etcd', async () => startEtcdProcess({ dataDir: join(opts.stateDir, 'etcd') }));
      stoppers.push(() => etcd!.stop());
      etcdUrl = etcd.url;
    }
    const caDir = join(opts.stateDir, 'ca');
    await step(opts, 'root CA', async () => {
      if (!existsSync(join(caDir, 'root-cert.pem'))) writeRootCa(caDir, createRootCa({ trustDomain: opts.trustDomain }));
      return { url: caDir };
    });

    const { joinCluster } = await import('../cli/join.js');
    const { runFederation } = await import('../federation/server.js');
    const { runGateway } = await import('../gateway/run.js');
    const { loadGatewayConfig } = await import('../gateway/config.js');
    const { runSidecar } = await import('../sidecar/sidecar.js');
    const file: MeshFile = { etcd: etcdUrl, trustDomain: opts.trustDomain, ca: caDir, clusters: {} };
    const log = (name: string) => createLogger({ name, format: 'json', level: 'info', file: join(opts.stateDir, 'logs', `${name}.log`) });

    for (const [index, name] of opts.clusters.entries()) {
      const host = clusterHost(index);
      const dir = join(opts.stateDir, 'clusters', name);
      const zones = [`${name}-a`, `${name}-b`];
      const config = join(dir, 'cluster.yaml');
      await step(opts, `cluster ${name} joined`, async () => {
        if (existsSync(config)) return { url: `${dir} (kept from an earlier run)` };
        await joinCluster(name, {
          region: name, zone: zones, etcd: etcdUrl, ca: caDir, out: dir, federationHost: host, apiPort: 15010,
          dashboardPort: 15014, gateway: [`${host}:15443`], leaseTtl: '15s', output: 'table',
        });
        return { url: dir };
      });

      // Each sample instance: the app on 18080+i, its sidecar's inbound mTLS listener on 19080+i
      // (the address other clusters' traffic reaches through the gateway).
      const instances: (SampleInstance & { inbound: string; token: string; record: TokenRecord })[] = [];
      const client = issueToken({ identity: workloadId(opts.trustDomain, 'demo', 'client'), ttlSeconds: 3600 });
      await step(opts, `cluster ${name} sample services`, async () => {
        let i = 0;
        for (const sample of samples(name)) {
          for (let n = 0; n < sample.instances; n += 1, i += 1) {
            const zone = zones[n % zones.length] ?? zones[0]!;
            const app = await startSampleInstance({ service: sample.name, cluster: name, zone, instance: `${sample.name}-${name}-${n + 1}`, host, port: 18080 + i });
            stoppers.push(() => app.close());
            const { token, record } = issueToken({ identity: workloadId(opts.trustDomain, 'demo', sample.name), ttlSeconds: 3600 });
            instances.push(Object.assign(app, { inbound: `${host}:${19080 + i}`, token, record }));
          }
        }
        const now = new Date();
        updateRegistry(dir, (registry) => ({
          version: 1,
          instances: instances.map((x) => ({ namespace: 'demo', service: x.service, serviceAccount: x.service, address: x.inbound, zone: x.zone, registeredAt: now.toISOString() })),
          tokens: [...liveTokens(registry.tokens, now), ...instances.map((x) => x.record), client.record],
        }));
        return { url: instances.map((x) => `${x.service}@${x.address}`).join(' ') };
      });

      const federation = await step(opts, `cluster ${name} federation`, async () => {
        const running = await runFederation(loadClusterConfig(config), log(`federation-${name}`));
        return Object.assign(running, { url: `https://${running.apiAddress}` });
      });
      stoppers.push(() => federation.stop());

      const gateway = await step(opts, `cluster ${name} gateway`, async () => {
        const running = await runGateway(loadGatewayConfig(config, 'gw-1'), log(`gateway-${name}`));
        return Object.assign(running, { url: running.address });
      });
      stoppers.push(() => gateway.stop());

      const rootCert = join(dir, 'root-cert.pem');
      const sidecarConfig = (workload: string, ports: { outbound: number; admin: number }, inbound?: { listen: string; app: string }) => ({
        cluster: name, zone: zones[0]!, namespace: 'demo', service: workload,
        federation: { url: `https://${federation.apiAddress}`, rootCert },
        stateDir: join(opts.stateDir, 'sidecars', name, `${workload}-${ports.outbound}`),
        outbound: { listen: `${host}:${ports.outbound}` },
        admin: { listen: `${host}:${ports.admin}` },
        ...(inbound ? { inbound } : {}),
      });
      await step(opts, `cluster ${name} sidecars`, async () => {
        for (const [i, x] of instances.entries()) {
          const sidecar = await runSidecar(
            { ...sidecarConfig(x.service, { outbound: 19180 + i, admin: 19280 + i }, { listen: x.inbound, app: x.address }), zone: x.zone, rootCertPem: readFileSync(rootCert, 'utf8'), bootstrapToken: x.token, stateDirPath: join(opts.stateDir, 'sidecars', name, x.instance) },
            log(`sidecar-${name}-${x.instance}`),
          );
          stoppers.push(() => sidecar.stop());
        }
        return { url: `${instances.length} sample sidecars` };
      });
      const clientSidecar = await step(opts, `cluster ${name} client sidecar`, async () => {
        const running = await runSidecar(
          { ...sidecarConfig('client', { outbound: 15001, admin: 15020 }), rootCertPem: readFileSync(rootCert, 'utf8'), bootstrapToken: client.token, stateDirPath: join(opts.stateDir, 'sidecars', name, 'client') },
          log(`sidecar-${name}-client`),
        );
        return Object.assign(running, { url: `proxy http://${running.outbound}, admin http://${running.admin}` });
      });
      stoppers.push(() => clientSidecar.stop());

      file.clusters[name] = {
        host, region: name, zones, federation: federation.apiAddress, config, gateways: [gateway.address],
        client: { proxy: clientSidecar.outbound, admin: clientSidecar.admin },
        services: samples(name).map((s) => ({ name: s.name, namespace: s.namespace, instances: instances.filter((x) => x.service === s.name).map((x) => x.address) })),
      };
    }

    await step(opts, 'samples exported', async () => {
      await withStore(etcdUrl, async (store) => {
        for (const name of opts.clusters) {
          for (const sample of samples(name)) {
            await store.put(keys.serviceExport(name, sample.namespace, sample.name), { version: recordVersion, exportedAt: new Date().toISOString() });
          }
        }
      });
      return { url: opts.clusters.map((c) => `${c}: ${samples(c).map((x) => x.name).join(', ')}`).join('; ') };
    });
    writeFileSync(join(opts.stateDir, 'mesh.json'), `${JSON.stringify(file, null, 2)}\n`);
    return { file, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

async function step<T extends { url: string }>(opts: DevMeshOptions, what: string, work: () => Promise<T>): Promise<T> {
  const started = Date.now();
  const result = await work();
  opts.progress(`  ✓ ${what}: ${result.url} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  return result;
}

