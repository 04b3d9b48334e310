import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { startEtcdProcess, type EtcdProcess } from '../../src/dev/etcd-process.js';
import type { MeshFile } from '../../src/dev/dev-mesh.js';
import { grpcCredentials, loadEtcdTls } from '../../src/federation/etcd-tls.js';
import { issueEtcdClient, type EtcdClientFiles } from '../../src/trust/etcd-ca.js';

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
