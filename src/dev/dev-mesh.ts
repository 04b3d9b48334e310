import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { keys, recordVersion } from '../core/keys.js';
import { createLogger } from '../core/log.js';
import { checkName } from '../core/names.js';
import { loadClusterConfig } from '../federation/config.js';
import { updateRegistry } from '../federation/registry-file.js';
import type { RunningFederation } from '../federation/server.js';
import { withStore } from '../cli/common.js';
import { createRootCa } from '../trust/ca.js';
import { writeRootCa } from '../trust/ca-files.js';
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
    const file: MeshFile = { etcd: etcdUrl, trustDomain: opts.trustDomain, ca: caDir, clusters: {} };
    const federations: RunningFederation[] = [];
    for (const [index, name] of opts.clusters.entries()) {
      const host = clusterHost(index);
      const dir = join(opts.stateDir, 'clusters', name);
      const zones = [`${name}-a`, `${name}-b`];
      const config = join(dir, 'cluster.yaml');
      await step(opts, `cluster ${name} joined`, async () => {
        if (existsSync(config)) return { url: `${dir} (kept from an earlier run)` };
        await joinCluster(name, {
          region: name, zone: zones, etcd: etcdUrl, ca: caDir, out: dir, federationHost: host, apiPort: 15010,
          dashboardPort: 15014, gateway: [], leaseTtl: '15s', output: 'table',
        });
        return { url: dir };
      });
      const instances: SampleInstance[] = [];
      await step(opts, `cluster ${name} sample services`, async () => {
        let port = 18080;
        for (const sample of samples(name)) {
          for (let i = 0; i < sample.instances; i += 1) {
            const zone = zones[i % zones.length] ?? zones[0]!;
            const instance = await startSampleInstance({ service: sample.name, cluster: name, zone, instance: `${sample.name}-${name}-${i + 1}`, host, port: port++ });
            stoppers.push(() => instance.close());
            instances.push(instance);
          }
        }
        updateRegistry(dir, (registry) => ({
          ...registry,
          instances: instances.map((i) => ({ namespace: 'demo', service: i.service, serviceAccount: i.service, address: i.address, zone: i.zone, registeredAt: new Date().toISOString() })),
        }));
        return { url: instances.map((i) => `${i.service}@${i.address}`).join(' ') };
      });
      const logger = createLogger({ name: `federation-${name}`, format: 'json', level: 'info', file: join(opts.stateDir, 'logs', `federation-${name}.log`) });
      const federation = await step(opts, `cluster ${name} federation`, async () => {
        const running = await runFederation(loadClusterConfig(config), logger);
        return Object.assign(running, { url: `https://${running.apiAddress}` });
      });
      stoppers.push(() => federation.stop());
      federations.push(federation);
      file.clusters[name] = {
        host, region: name, zones, federation: federation.apiAddress, config, gateways: [],
        services: samples(name).map((s) => ({ name: s.name, namespace: s.namespace, instances: instances.filter((i) => i.service === s.name).map((i) => i.address) })),
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
      return { url: opts.clusters.map((c) => `${c}: ${samples(c).map((s) => s.name).join(', ')}`).join('; ') };
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
