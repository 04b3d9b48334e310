import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { RelayKind } from '../core/native-relay.js';
import type { MeshFile } from '../dev/dev-mesh.js';
import { childPids, isAlive, processCpuSeconds, processName, processTree, processTreeCpuSeconds } from './proc-cpu.js';

export type MeshMode = 'child' | 'in-process';

export interface BenchMeshOptions {
  mode: MeshMode;
  stateDir: string;
  hostBase: number;
  clusters: string[];
  trustDomain: string;
  gateways: number;
  /** Child mode: `dev up --processes`, every sidecar and gateway in a process of its own. */
  processes: boolean;
  /** Child mode: write a V8 CPU profile of the mesh process here when it stops (`--cpu-prof`). */
  cpuProfileDir?: string | undefined;
  /** Every sidecar writes an access log (`dev up --access-log`: JSON lines, a file per sidecar). */
  accessLog?: boolean;
  /** Every sidecar sends HTTP/1.1 requests to other sidecars as HTTP/2 streams (`dev up --upgrade-to-http2`). */
  upgradeToHttp2?: boolean;
  /** `dev up --gateway-relay node`: our gateways copy bytes in JavaScript. */
  gatewayRelay?: RelayKind;
  /** Child mode: the `isthmus` command to run, when not this checkout's (`bench:pair` runs another build). */
  binPath?: string;
  /** Progress for a person watching (stderr). */
  say: (line: string) => void;
}

/** The mesh under test, however it runs, and how to read the CPU it spends. */
export interface BenchMesh {
  file: MeshFile;
  mode: MeshMode;
  /** dev up's process (child mode), or this one (in-process). */
  pid: number;
  /** Every sidecar and gateway in a process of its own (`dev up --processes`). */
  processes: boolean;
  /** Which processes `cpuSeconds` covers, in words for the report. */
  cpuCovers: string;
  cpuSeconds(): number;
  /** The control plane's store, when it runs as a process of its own; shown apart. */
  etcdCpuSeconds?: () => number;
  /** Whether `cpuSeconds` already includes etcd's (child mode: the whole tree). */
  etcdInsideMesh: boolean;
  stop(): Promise<void>;
}

const startTimeoutMs = 90_000;
const stopTimeoutMs = 20_000;
const binPath = fileURLToPath(new URL('../../bin/isthmus.js', import.meta.url));

export async function startBenchMesh(opts: BenchMeshOptions): Promise<BenchMesh> {
  return opts.mode === 'child' ? startChild(opts) : startInProcess(opts);
}

/**
 * `isthmus dev up` in a process of its own, so the load generator does not share an event loop
 * with the proxies. dev up prints mesh.json's content on stdout (-o json) once everything listens.
 */
async function startChild(opts: BenchMeshOptions): Promise<BenchMesh> {
  const args = [opts.binPath ?? binPath, 'dev', 'up', '--clusters', opts.clusters.join(','), '--host-base', String(opts.hostBase), '--state-dir', opts.stateDir,
    // No sample traffic: the only requests are the bench's own. No hello-v1/hello-v2: the
    // mesh measured stays the one earlier runs measured (docs/benchmarks.md).
    '--trust-domain', opts.trustDomain, '--gateways', String(opts.gateways), '--traffic', '0', '--no-versions', '-o', 'json', ...(opts.processes ? ['--processes'] : []), ...(opts.accessLog ? ['--access-log', 'json'] : []),
    ...(opts.upgradeToHttp2 ? ['--upgrade-to-http2'] : []), ...(opts.gatewayRelay === 'node' ? ['--gateway-relay', 'node'] : [])];
  const profile = opts.cpuProfileDir ? ['--cpu-prof', `--cpu-prof-dir=${opts.cpuProfileDir}`] : [];
  // With --processes the proxies are dev up's children; Node refuses --cpu-prof in NODE_OPTIONS,
  // so dev up passes it to each child it starts (src/dev/mesh-process.ts), one file each.
  const env = opts.cpuProfileDir && opts.processes
    ? { ...process.env, ISTHMUS_CPU_PROF_DIR: opts.cpuProfileDir }
    : process.env;
  const child = spawn(process.execPath, [...profile, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  let stdout = '';
  let stderr = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.stderr.setEncoding('utf8');
  child.stdout.setEncoding('utf8');
  // Drained for the child's whole life: a full pipe would block its writes.
  child.stderr.on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-8000);
    for (const line of chunk.split('\n')) if (line.trim()) opts.say(`  mesh: ${line.trim()}`);
  });

  const file = await new Promise<MeshFile>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`isthmus dev up did not report the mesh within ${startTimeoutMs / 1000} s; its last output:\n${stderr}`)), startTimeoutMs);
    child.stdout.on('data', (chunk: string) => {
      stdout += chunk;
      try {
        const parsed = JSON.parse(stdout) as MeshFile;
        clearTimeout(timer);
        resolve(parsed);
      } catch {
        // not the whole document yet
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`isthmus dev up exited (code ${code}) before the mesh was up; its last output:\n${stderr}`));
    });
  }).catch(async (err: unknown) => {
    await stopChild(child.pid, exited);
    throw err;
  });

  const pid = child.pid as number;
  const etcdPid = childPids(pid).find((p) => processName(p) === 'etcd');
  const proxies = processTree(pid).length - 1 - (etcdPid === undefined ? 0 : 1);
  return {
    file,
    mode: 'child',
    pid,
    processes: opts.processes,
    cpuCovers: opts.processes
      ? `the whole process tree of isthmus dev up --processes, read from /proc at each reading: dev up itself (pid ${pid}), its ${proxies} sidecar and gateway processes, the federation and sample app processes, and etcd; the load generator not counted`
      : `the whole process tree of isthmus dev up, read from /proc at each reading: dev up itself (pid ${pid}: federation, gateways, sidecars AND the sample apps, one Node event loop) and etcd; the load generator not counted`,
    cpuSeconds: () => processTreeCpuSeconds(pid),
    ...(etcdPid === undefined ? {} : { etcdCpuSeconds: () => (isAlive(etcdPid) ? processCpuSeconds(etcdPid) : Number.NaN) }),
    etcdInsideMesh: true,
    stop: async () => {
      await stopChild(pid, exited);
      // dev up stops its etcd on SIGTERM; only if it was killed could etcd outlive it.
      if (etcdPid !== undefined && processName(etcdPid) === 'etcd') signal(etcdPid, 'SIGTERM');
    },
  };
}

async function stopChild(pid: number | undefined, exited: Promise<number | null>): Promise<void> {
  if (pid === undefined || !signal(pid, 'SIGTERM')) return;
  const done = await Promise.race([exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), stopTimeoutMs).unref())]);
  if (!done && signal(pid, 'SIGKILL')) await exited;
}

/** False when the process is already gone (it may exit between any check and the kill). */
function signal(pid: number, name: NodeJS.Signals): boolean {
  try {
    process.kill(pid, name);
    return true;
  } catch {
    return false;
  }
}

/** The fallback: everything in this process. CPU then includes the load generator's own. */
async function startInProcess(opts: BenchMeshOptions): Promise<BenchMesh> {
  const { startDevMesh } = await import('../dev/dev-mesh.js');
  const mesh = await startDevMesh({
    clusters: opts.clusters, hostBase: opts.hostBase, gateways: opts.gateways, stateDir: opts.stateDir,
    trustDomain: opts.trustDomain, progress: () => undefined, ...(opts.accessLog ? { accessLog: 'json' as const } : {}),
    ...(opts.upgradeToHttp2 ? { upgradeToHttp2: true } : {}),
    ...(opts.gatewayRelay ? { gatewayRelay: opts.gatewayRelay } : {}),
  });
  const etcdPid = childPids(process.pid).find((p) => processName(p) === 'etcd');
  return {
    file: mesh.file,
    mode: 'in-process',
    pid: process.pid,
    processes: false,
    etcdInsideMesh: false,
    cpuCovers: 'the bench process: mesh AND load generator share one event loop and its CPU (numbers are upper bounds; prefer --mesh child)',
    cpuSeconds: () => {
      const usage = process.cpuUsage();
      return (usage.user + usage.system) / 1e6;
    },
    ...(etcdPid === undefined ? {} : { etcdCpuSeconds: () => (isAlive(etcdPid) ? processCpuSeconds(etcdPid) : Number.NaN) }),
    stop: () => mesh.stop(),
  };
}
