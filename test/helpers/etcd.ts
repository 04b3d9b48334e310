import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.js';

export interface TestEtcd {
  /** Client URL, e.g. http://127.0.0.1:23791 */
  url: string;
  dataDir: string;
  /** Stops the server, keeping its data dir (for restart tests). */
  stop(): Promise<void>;
  /** Starts it again on the same ports and data dir. */
  start(): Promise<void>;
  /** Stops it and removes the data dir. */
  destroy(): Promise<void>;
}

/**
 * Starts a real etcd on free loopback ports with a temporary data dir. The caller must
 * `destroy()` it (tests do so in afterAll), which also removes the directory.
 */
export async function startEtcd(options: { host?: string } = {}): Promise<TestEtcd> {
  const host = options.host ?? '127.0.0.1';
  const clientPort = await freePort(host);
  const peerPort = await freePort(host);
  const dataDir = mkdtempSync(join(tmpdir(), 'isthmus-etcd-'));
  const url = `http://${host}:${clientPort}`;
  let child: ChildProcess | undefined;

  const start = async (): Promise<void> => {
    const proc = spawn('etcd', [
      '--name', 'test',
      '--data-dir', dataDir,
      '--listen-client-urls', url,
      '--advertise-client-urls', url,
      '--listen-peer-urls', `http://${host}:${peerPort}`,
      '--initial-advertise-peer-urls', `http://${host}:${peerPort}`,
      '--initial-cluster', `test=http://${host}:${peerPort}`,
      '--log-level', 'error',
      '--logger', 'zap',
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    child = proc;
    let stderr = '';
    proc.stderr?.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null) throw new Error(`etcd exited with ${proc.exitCode}: ${stderr}`);
      try {
        const res = await fetch(`${url}/health`);
        if (res.ok && ((await res.json()) as { health?: string }).health === 'true') return;
      } catch {
        // not up yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    proc.kill('SIGKILL');
    throw new Error(`etcd did not become healthy within 15 s: ${stderr}`);
  };

  const stop = async (): Promise<void> => {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      proc.once('exit', () => resolve());
      proc.kill('SIGTERM');
      setTimeout(() => proc.kill('SIGKILL'), 5_000).unref();
    });
  };

  await start();
  return {
    url,
    dataDir,
    stop,
    start,
    destroy: async () => {
      await stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
