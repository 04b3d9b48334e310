import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { etcdArgs, startEtcd, type TestEtcd } from './etcd.js';
import { isthmusOk, startFederation, type FederationProcess } from './cli.js';
import { freePort } from './ports.js';

export interface TestCluster {
  name: string;
  host: string;
  dir: string;
  config: string;
  rootCert: string;
  apiAddress: string;
  federation?: FederationProcess;
}

/**
 * A mesh built the way a user builds one: `isthmus ca init`, `isthmus join` per cluster (each on
 * its own loopback address), `isthmus federation` per cluster. `close()` stops everything.
 */
export class TestMesh {
  readonly clusters = new Map<string, TestCluster>();
  private readonly servers: Server[] = [];

  private constructor(readonly etcd: TestEtcd, readonly dir: string) {}

  static async create(): Promise<TestMesh> {
    const etcd = await startEtcd();
    return new TestMesh(etcd, mkdtempSync(join(tmpdir(), 'isthmus-mesh-')));
  }

  async caInit(name: string, trustDomain: string): Promise<string> {
    const out = join(this.dir, name);
    await isthmusOk(['ca', 'init', '--trust-domain', trustDomain, '--out', out]);
    return out;
  }

  async join(name: string, opts: { index: number; ca: string; region?: string; zones?: string[]; leaseTtl?: string; gateways?: string[]; federationEtcd?: { cert: string; key: string } }): Promise<TestCluster> {
    const host = `127.0.${opts.index}.1`;
    const port = await freePort(host);
    const metricsPort = await freePort(host);
    const dir = join(this.dir, name);
    await isthmusOk([
      'join', name, '--region', opts.region ?? 'us', '--zone', (opts.zones ?? ['a']).join(','), ...etcdArgs(this.etcd),
      '--ca', opts.ca, '--out', dir, '--federation-host', host, '--api-port', String(port), '--dashboard-port', String(metricsPort), '--lease-ttl', opts.leaseTtl ?? '3s',
      ...(opts.gateways ?? []).flatMap((address) => ['--gateway', address]),
      ...(opts.federationEtcd ? ['--federation-etcd-cert', opts.federationEtcd.cert, '--federation-etcd-key', opts.federationEtcd.key] : []),
    ]);
    const cluster = { name, host, dir, config: join(dir, 'cluster.yaml'), rootCert: join(dir, 'root-cert.pem'), apiAddress: `${host}:${port}` };
    this.clusters.set(name, cluster);
    return cluster;
  }

  async startFederation(name: string): Promise<FederationProcess> {
    const cluster = this.cluster(name);
    cluster.federation = await startFederation(cluster.config, cluster.apiAddress, cluster.rootCert);
    return cluster.federation;
  }

  /** A real HTTP server on the cluster's loopback address that answers with its cluster name. */
  async workload(name: string): Promise<string> {
    const cluster = this.cluster(name);
    const server = createServer((_req, res) => res.end(JSON.stringify({ cluster: name })));
    await new Promise<void>((resolve) => server.listen(0, cluster.host, resolve));
    this.servers.push(server);
    const address = server.address();
    return `${cluster.host}:${typeof address === 'object' && address ? address.port : 0}`;
  }

  cluster(name: string): TestCluster {
    const cluster = this.clusters.get(name);
    if (!cluster) throw new Error(`no test cluster ${name}`);
    return cluster;
  }

  async close(): Promise<void> {
    for (const cluster of this.clusters.values()) await cluster.federation?.stop('SIGKILL');
    for (const server of this.servers) server.close();
    await this.etcd.destroy();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export { freePort };
