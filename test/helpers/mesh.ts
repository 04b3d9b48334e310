import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { etcdArgs, startEtcd, type TestEtcd } from './etcd.js';
import { isthmusOk, startFederation, type FederationProcess } from './cli.js';
import { freePort } from './ports.js';
import { mintOperatorToken } from '../../src/trust/operator.js';
import { parseCertificates } from '../../src/trust/verify.js';

/** An operator credential as `isthmus operator issue` writes it, and the ways clients present it. */
export interface TestOperator {
  dir: string;
  /** For the CLI: ISTHMUS_OPERATOR_DIR. */
  env: Record<string, string>;
  /** As a TLS client certificate (apiClient's second argument). */
  tls: { cert: string; key: string };
  /** `Authorization: Bearer <a fresh token>`. */
  headers(): Record<string, string>;
}

/** Reads the credential `isthmus operator issue` wrote into `dir`. */
export function testOperator(dir: string): TestOperator {
  const cert = readFileSync(join(dir, 'operator-cert.pem'), 'utf8');
  const key = readFileSync(join(dir, 'operator-key.pem'), 'utf8');
  const [leaf, ...chain] = parseCertificates(cert).map((c) => c.toString());
  return {
    dir, env: { ISTHMUS_OPERATOR_DIR: dir }, tls: { cert, key },
    headers: () => ({ authorization: `Bearer ${mintOperatorToken({ certPem: leaf!, chainPem: chain, keyPem: key, ttlSeconds: 300 }).token}` }),
  };
}

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
  private operators = 0;

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

  /** `index` n puts the cluster on 127.0.n.1; `host` names the address instead. */
  async join(name: string, opts: { index: number; host?: string; ca: string; region?: string; zones?: string[]; leaseTtl?: string; gateways?: string[]; federationEtcd?: { cert: string; key: string } }): Promise<TestCluster> {
    const host = opts.host ?? `127.0.${opts.index}.1`;
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

  /** `isthmus operator issue --name <name> --ca-dir <caDir>`: a person's credential, from the root or a cluster directory. */
  async operator(caDir: string, name = 'tester'): Promise<TestOperator> {
    const out = join(this.dir, `operator-${name}-${this.operators++}`);
    await isthmusOk(['operator', 'issue', '--name', name, '--ca-dir', caDir, '--out', out]);
    return testOperator(out);
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
