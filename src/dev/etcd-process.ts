import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { IsthmusError } from '../core/errors.js';
import { etcdHttpGet, loadEtcdTls, type EtcdTls } from '../federation/etcd-tls.js';
import { ensureEtcdPki, type EtcdClientFiles, type EtcdServerFiles } from '../trust/etcd-ca.js';
import { freePort } from './ports.js';

export interface EtcdProcess {
  /** Client URL, e.g. https://127.0.0.1:23791 (http:// when started without `pkiDir`). */
  url: string;
  dataDir: string;
  /** The CA and a client certificate that etcd accepts (`operator`); absent without TLS. */
  tls?: EtcdClientFiles;
  /** The etcd CA directory: more client certificates come from it (`issueEtcdClient`). */
  pkiDir?: string;
  /** Stops the server, keeping its data dir. */
  stop(): Promise<void>;
  /** Starts it again on the same ports and data dir. */
  start(): Promise<void>;
}

/** The client certificate `isthmus dev up` and the tests hand to operators' commands. */
export const operatorEtcdClient = 'operator';

/**
 * Runs a single-member etcd on loopback for `isthmus dev up` and the tests: free ports unless
 * given, the caller's data dir (kept across restarts, so a restart loses nothing). With
 * `pkiDir` (the default for both) clients must speak TLS and present a certificate of the etcd
 * CA kept there (`--client-cert-auth`), made on first use, as a locked-down production etcd
 * does; the peer URL stays plain text on loopback, since this etcd has no peers.
 */
export async function startEtcdProcess(opts: EtcdProcessOptions): Promise<EtcdProcess> {
  if (spawnSync('etcd', ['--version'], { stdio: 'ignore' }).status !== 0) {
    throw new IsthmusError('ISTHMUS_ERR_ETCD_UNREACHABLE', 'etcd is not installed: install it (Debian/Ubuntu: apt-get install -y etcd-server) or pass --etcd with the URL of a running one');
  }
  // Ports picked here are free when picked, but another process (a test running beside this
  // one, another dev mesh) can bind one before etcd does: then etcd exits with "address already
  // in use", and, with a data dir this call made, new ports are tried.
  const picksPorts = opts.clientPort === undefined && opts.peerPort === undefined;
  const freshDataDir = !existsSync(opts.dataDir);
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await startOnFreePorts(opts);
    } catch (err) {
      if (!picksPorts || !freshDataDir || attempt >= 3 || !/address already in use/.test((err as Error).message)) throw err;
      rmSync(opts.dataDir, { recursive: true, force: true });
    }
  }
}

interface EtcdProcessOptions {
  dataDir: string;
  pkiDir?: string;
  host?: string;
  clientPort?: number;
  peerPort?: number;
  /** How a port is picked when none is given (a test hands out a taken one to see the retry). */
  pickPort?: (host: string) => Promise<number>;
}

async function startOnFreePorts(opts: EtcdProcessOptions): Promise<EtcdProcess> {
  const host = opts.host ?? '127.0.0.1';
  const pick = opts.pickPort ?? freePort;
  const clientPort = opts.clientPort ?? (await pick(host));
  const peerPort = opts.peerPort ?? (await pick(host));
  const pki = opts.pkiDir === undefined ? undefined : ensureEtcdPki(opts.pkiDir, [host, 'localhost'], [operatorEtcdClient]);
  const url = `${pki ? 'https' : 'http'}://${host}:${clientPort}`;
  const clientFiles = pki?.clients[operatorEtcdClient];
  const clientTls: EtcdTls | undefined = clientFiles ? loadEtcdTls([url], clientFiles) : undefined;
  const tlsFlags = (server: EtcdServerFiles | undefined) => (server
    ? ['--cert-file', server.cert, '--key-file', server.key, '--trusted-ca-file', server.ca, '--client-cert-auth']
    : []);
  let child: ChildProcess | undefined;

  const start = async (): Promise<void> => {
    const proc = spawn('etcd', [
      '--name', 'isthmus-dev',
      '--data-dir', opts.dataDir,
      '--listen-client-urls', url,
      '--advertise-client-urls', url,
      '--listen-peer-urls', `http://${host}:${peerPort}`,
      '--initial-advertise-peer-urls', `http://${host}:${peerPort}`,
      '--initial-cluster', `isthmus-dev=http://${host}:${peerPort}`,
      ...tlsFlags(pki?.server),
      '--log-level', 'error',
      '--logger', 'zap',
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    child = proc;
    let stderr = '';
    proc.stderr?.on('data', (chunk: Buffer) => { stderr = (stderr + chunk.toString()).slice(-4000); });
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null) throw new IsthmusError('ISTHMUS_ERR_ETCD_UNREACHABLE', `etcd exited with code ${proc.exitCode}: ${stderr.trim() || 'no output'}`);
      try {
        const res = await etcdHttpGet(url, '/health', clientTls, 1000);
        if (res.status === 200 && (JSON.parse(res.body) as { health?: string }).health === 'true') return;
      } catch {
        // not up yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    proc.kill('SIGKILL');
    throw new IsthmusError('ISTHMUS_ERR_ETCD_UNREACHABLE', `etcd did not become healthy within 15 s: ${stderr.trim() || 'no output'}`);
  };

  const stop = async (): Promise<void> => {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      proc.once('exit', () => resolve());
      proc.kill('SIGTERM');
      setTimeout(() => proc.kill('SIGKILL'), 5_000).unref();
    });
  };

  await start();
  return { url, dataDir: opts.dataDir, ...(clientFiles ? { tls: clientFiles, pkiDir: opts.pkiDir } : {}), stop, start };
}
