import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IsthmusError } from '../core/errors.js';
import { ensureDirectory } from '../core/user-paths.js';
import type { SampleInstance } from './sample-service.js';

export const redisInstallHint = 'apt-get install -y redis-server redis-tools';

/** True when Debian's `redis-server` (or any on PATH) runs. */
export function hasRedisServer(): boolean {
  return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0;
}

/** util-linux's setpriv (Essential on Debian): with it, redis-server gets SIGTERM when this process dies, even by SIGKILL. */
const setpriv = spawnSync('setpriv', ['--help'], { stdio: 'ignore' }).status === 0;

/**
 * The dev mesh's TCP sample: a `redis-server` child on host:port, with a fresh temporary
 * directory (under `tempRoot`, default the system's) as its working dir, nothing saved to disk,
 * and no daemonising, so that close() (SIGTERM, SIGKILL after 5 s) leaves no process and no
 * file behind. Its parent-death signal is SIGTERM where setpriv exists, so it also goes when
 * the process that started it is killed without a chance to stop it.
 */
export async function startRedisInstance(opts: { service: string; cluster: string; zone: string; instance: string; host: string; port: number; tempRoot?: string | undefined }): Promise<SampleInstance> {
  if (!hasRedisServer()) throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `redis-server is not installed; the TCP sample needs it (${redisInstallHint})`);
  const root = opts.tempRoot ?? tmpdir();
  ensureDirectory(root, 'the redis sample\'s directory');
  const dir = mkdtempSync(join(root, `${opts.instance}-`));
  const args = [
    'redis-server', '--bind', opts.host, '--port', String(opts.port), '--dir', dir, '--save', '', '--appendonly', 'no',
    '--daemonize', 'no', '--protected-mode', 'no', '--logfile', '', '--loglevel', 'warning',
  ];
  const [command, ...rest] = setpriv ? ['setpriv', '--pdeathsig', 'TERM', ...args] : args;
  const child = spawn(command as string, rest, { stdio: ['ignore', 'ignore', 'pipe'] });
  let output = '';
  child.stderr?.on('data', (chunk: Buffer) => { output = (output + chunk.toString()).slice(-2000); });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.once('error', () => undefined); // reported through the exit code below
  const close = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 10_000;
  while (!(await redisPing(`${opts.host}:${opts.port}`))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      await close();
      throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `redis-server on ${opts.host}:${opts.port} did not answer PING: ${output.trim() || `exit code ${child.exitCode ?? 'none yet'}`}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const { service, cluster, zone, instance, host } = opts;
  return { service, cluster, zone, instance, address: `${host}:${opts.port}`, close };
}

/** One `PING` in the Redis protocol (RESP); true on `+PONG`. Used on the app and through a sidecar's TCP listener. */
export async function redisPing(address: string, timeoutMs = 2_000): Promise<boolean> {
  const split = address.lastIndexOf(':');
  return await new Promise((resolve) => {
    const socket = connect({ host: address.slice(0, split), port: Number(address.slice(split + 1)) });
    let answer = '';
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.on('error', () => done(false));
    socket.on('close', () => done(answer.startsWith('+PONG')));
    socket.on('data', (chunk: Buffer) => {
      answer += chunk.toString('latin1');
      if (answer.includes('\r\n')) done(answer.startsWith('+PONG'));
    });
    socket.once('connect', () => socket.write('PING\r\n'));
  });
}
