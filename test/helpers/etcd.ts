import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { operatorEtcdClient, startEtcdProcess, type EtcdProcess } from '../../src/dev/etcd-process.js';
import type { MeshFile } from '../../src/dev/dev-mesh.js';
import { grpcCredentials, loadEtcdTls } from '../../src/federation/etcd-tls.js';
import { ensureEtcdPki, issueEtcdClient, type EtcdClientFiles } from '../../src/trust/etcd-ca.js';
import { freePort } from './ports.js';

export interface TestEtcd extends EtcdProcess {
  /** The etcd CA and the operator's client certificate: what every client of this etcd passes. */
  tls: EtcdClientFiles;
  /** A client certificate for `name` from this etcd's own CA (etcd lets it in). */
  client(name: string): EtcdClientFiles;
  /** Stops it and removes the data dir and its CA. */
  destroy(): Promise<void>;
}

/**
 * A real etcd on free loopback ports with a temporary data dir, taking TLS clients with a client
 * certificate of its own CA only (`--client-cert-auth`), as `isthmus dev up` runs it. The
 * caller must `destroy()` it (tests do so in afterAll), which also removes the directory.
 * Tests reach it through etcdArgs, etcdEnv, storeOptions and rawEtcd below, never by its URL alone.
 */
export async function startEtcd(options: { host?: string } = {}): Promise<TestEtcd> {
  const dir = mkdtempSync(join(tmpdir(), 'isthmus-etcd-'));
  const pkiDir = join(dir, 'pki');
  const etcd = await startEtcdProcess({ dataDir: join(dir, 'data'), pkiDir, ...(options.host ? { host: options.host } : {}) });
  return {
    ...etcd,
    tls: etcd.tls!,
    client: (name) => issueEtcdClient(pkiDir, name),
    destroy: async () => {
      await etcd.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A test etcd, or the etcd of a dev mesh (its mesh.json), as a test reaches it. */
export type EtcdOf = Pick<TestEtcd, 'url' | 'tls'> | Pick<MeshFile, 'etcd' | 'etcdTls'>;

function access(of: EtcdOf): { url: string; tls: EtcdClientFiles | undefined } {
  return 'url' in of ? { url: of.url, tls: of.tls } : { url: of.etcd, tls: of.etcdTls as EtcdClientFiles | undefined };
}

/** `--etcd <url> --etcd-ca <file> --etcd-cert <file> --etcd-key <file>` for a CLI command. */
export function etcdArgs(of: EtcdOf): string[] {
  const { url, tls } = access(of);
  return ['--etcd', url, ...(tls ? ['--etcd-ca', tls.ca, '--etcd-cert', tls.cert, '--etcd-key', tls.key] : [])];
}

/** ISTHMUS_ETCD and its TLS variables, for a CLI command's environment. */
export function etcdEnv(of: EtcdOf): Record<string, string> {
  const { url, tls } = access(of);
  return { ISTHMUS_ETCD: url, ...(tls ? { ISTHMUS_ETCD_CA: tls.ca, ISTHMUS_ETCD_CERT: tls.cert, ISTHMUS_ETCD_KEY: tls.key } : {}) };
}

/** FederationStore.connect's endpoints and tls. */
export function storeOptions(of: EtcdOf): { endpoints: string; tls: EtcdClientFiles | undefined } {
  const { url, tls } = access(of);
  return { endpoints: url, tls };
}

/** A bare etcd3 client (for what our store will not do: raw keys, leases, foreign values), with the operator's certificate. */
export function rawEtcd(of: EtcdOf): Etcd3 {
  const { url, tls } = access(of);
  const loaded = loadEtcdTls([url], tls);
  return new Etcd3({ hosts: url, ...(loaded ? { credentials: grpcCredentials(loaded) } : {}) });
}

export interface TestEtcdMember {
  name: string;
  /** Client URL, https://host:port. */
  url: string;
  /** The running process's id; undefined once it was killed or stopped. */
  pid: number | undefined;
}

export interface TestEtcdCluster {
  members: TestEtcdMember[];
  /** Every member's client URL, comma-separated: what `--etcd` and ISTHMUS_ETCD take. */
  url: string;
  /** The etcd CA and the operator's client certificate (one CA signs servers, peers and clients). */
  tls: EtcdClientFiles;
  /** The member that leads now, asked of each live member's maintenance status. */
  leader(): Promise<TestEtcdMember>;
  /** Stops every member and removes the data dirs and the CA. */
  destroy(): Promise<void>;
}

/**
 * Three (or `size`) real etcd processes forming one cluster on `host`, with TLS between peers and
 * towards clients, each peer and client needing a certificate of the cluster's own CA
 * (`--peer-client-cert-auth`, `--client-cert-auth`), as a production cluster runs. Ports are free
 * ones of `host`; data dirs and the CA live in one temporary directory that destroy() removes.
 */
export async function startEtcdCluster(options: { host: string; size?: number }): Promise<TestEtcdCluster> {
  const { host } = options;
  const size = options.size ?? 3;
  const dir = mkdtempSync(join(tmpdir(), 'isthmus-etcd-cluster-'));
  const pki = ensureEtcdPki(join(dir, 'pki'), [host, 'localhost'], [operatorEtcdClient]);
  const tls = pki.clients[operatorEtcdClient]!;
  const ports: { client: number; peer: number }[] = [];
  for (let i = 0; i < size; i += 1) ports.push({ client: await freePort(host), peer: await freePort(host) });
  const names = ports.map((_, i) => `member-${i + 1}`);
  const initialCluster = names.map((name, i) => `${name}=https://${host}:${ports[i]!.peer}`).join(',');
  const children: ChildProcess[] = [];
  const members: TestEtcdMember[] = names.map((name, i) => {
    const url = `https://${host}:${ports[i]!.client}`;
    const peerUrl = `https://${host}:${ports[i]!.peer}`;
    const child = spawn('etcd', [
      '--name', name, '--data-dir', join(dir, name),
      '--listen-client-urls', url, '--advertise-client-urls', url,
      '--listen-peer-urls', peerUrl, '--initial-advertise-peer-urls', peerUrl,
      '--initial-cluster', initialCluster, '--initial-cluster-state', 'new', '--initial-cluster-token', basename(dir),
      '--cert-file', pki.server.cert, '--key-file', pki.server.key, '--trusted-ca-file', pki.server.ca, '--client-cert-auth',
      '--peer-cert-file', pki.server.cert, '--peer-key-file', pki.server.key, '--peer-trusted-ca-file', pki.server.ca, '--peer-client-cert-auth',
      '--log-level', 'error', '--logger', 'zap',
    ], { stdio: 'ignore' });
    children.push(child);
    return { name, url, pid: child.pid };
  });
  for (const [i, child] of children.entries()) child.once('exit', () => { members[i]!.pid = undefined; });

  const status = async (member: TestEtcdMember): Promise<{ memberId: string; leader: string }> => {
    const client = rawEtcd({ url: member.url, tls });
    try {
      const s = await client.maintenance.status();
      return { memberId: s.header.member_id, leader: s.leader };
    } finally {
      client.close();
    }
  };
  const destroy = async () => {
    await Promise.all(children.map((child) => new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    })));
    rmSync(dir, { recursive: true, force: true });
  };
  const cluster: TestEtcdCluster = {
    members, url: members.map((m) => m.url).join(','), tls, destroy,
    async leader() {
      const answers = await Promise.all(members.filter((m) => m.pid !== undefined).map(async (m) => ({ member: m, ...(await status(m)) })));
      const leader = answers.find((a) => a.memberId === a.leader && answers.every((b) => b.leader === a.leader));
      if (leader) return leader.member;
      throw new Error(`the members of ${cluster.url} do not agree on a leader`);
    },
  };
  try {
    // Healthy means every member answers and all name the same leader: a quorum has formed.
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        await cluster.leader();
        return cluster;
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`etcd cluster on ${host} did not elect a leader within 30 s: ${(err as Error).message}`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  } catch (err) {
    await destroy();
    throw err;
  }
}
