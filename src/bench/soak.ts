import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { formatTable } from '../cli/output.js';
import { startDevMesh, type DevMesh } from '../dev/dev-mesh.js';
import { TrafficGenerator, type TrafficTarget } from '../dev/traffic-generator.js';
import { parseProcStatus } from './loaded-modules.js';
import { processTree } from './proc-cpu.js';

/**
 * The soak (docs/reliability.md): a two-cluster mesh with every sidecar and gateway in a process
 * of its own, under steady traffic for a long time, and for each process its resident memory and
 * open file descriptors at the start and at the end. A leak shows as growth: a descriptor per
 * request is thousands after a minute, a buffer per request megabytes.
 */
export interface SoakOptions {
  seconds: number;
  stateDir: string;
  /** Clusters on 127.0.<hostBase>.1 and 127.0.<hostBase + 1>.1. */
  hostBase: number;
  /** Requests a second from each cluster's client (GETs to hello and ledger in turn, every fifth an echo POST to ledger). */
  rps: number;
  /** Traffic before the first reading, so that start-up allocation is not counted as growth. */
  warmUpSeconds: number;
  progress: (line: string) => void;
}

export interface ProcessReading { rssKb: number; fds: number }

export interface SoakRow {
  pid: number;
  name: string;
  start: ProcessReading;
  /** Absent when the process was gone at the end: an error of its own. */
  end?: ProcessReading;
  /** Lines logged at error level or above during the soak (its log file; 0 where it has none). */
  errors: number;
}

export interface SoakResult {
  seconds: number;
  sent: number;
  /** Requests answered 5xx or not at all. */
  failed: number;
  rows: SoakRow[];
}

export function readProcess(pid: number): ProcessReading | undefined {
  try {
    const { rssKb } = parseProcStatus(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return { rssKb, fds: readdirSync(`/proc/${pid}/fd`).length };
  } catch {
    return undefined;
  }
}

/** What a person recognises: `etcd`, `sidecar east client`, `gateway west gw-1`, `app west ledger-west-1`, or the command line. */
export function processLabel(pid: number, stateDir: string): string {
  let args: string[];
  try {
    args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return `pid ${pid}`;
  }
  if (pid === process.pid) return 'this process (etcd client, federations)';
  const app = args.findIndex((a) => a.endsWith('/sample-app-main.js'));
  if (app >= 0) {
    // The app's spec is the JSON after the script (dev/sample-app-process.ts).
    try {
      const spec = JSON.parse(args[app + 1] ?? '') as { cluster?: string; instance?: string };
      return `app ${spec.cluster ?? '?'} ${spec.instance ?? '?'}`;
    } catch {
      return 'app';
    }
  }
  const verb = args.findIndex((a) => a === 'sidecar' || a === 'gateway');
  const config = args[args.indexOf('--config') + 1] ?? '';
  const id = args[args.indexOf('--id') + 1];
  if (verb >= 0) return `${args[verb]} ${config.replace(`${stateDir}/`, '').replace(/\/[^/]+\.yaml$/, '')}${args[verb] === 'gateway' && id ? ` ${id}` : ''}`;
  return (args[0] ?? '').endsWith('etcd') ? 'etcd' : args.join(' ').slice(0, 80);
}

/** Lines logged at error level or above in the mesh's log files, by the pid that wrote them. */
function errorLines(stateDir: string): Map<number, number> {
  const counts = new Map<number, number>();
  const dir = join(stateDir, 'logs');
  for (const file of readdirSync(dir)) {
    for (const line of readFileSync(join(dir, file), 'utf8').split('\n')) {
      if (!/"level":(50|60)/.test(line)) continue;
      const pid = Number(/"pid":(\d+)/.exec(line)?.[1] ?? 0);
      counts.set(pid, (counts.get(pid) ?? 0) + 1);
    }
  }
  return counts;
}

/** The echo POSTs' body sizes, in turn: on both sides of the 16 KiB and 64 KiB buffers a body passes through. */
export const soakEchoSizes = [1024, 16_385, 20_000, 65_537, 300_000] as const;

/** Runs the soak; the mesh is stopped before it returns, whatever happens. */
export async function runSoak(opts: SoakOptions): Promise<SoakResult> {
  let mesh: DevMesh | undefined;
  const generator: { current?: TrafficGenerator } = {};
  try {
    mesh = await startDevMesh({ clusters: ['east', 'west'], stateDir: opts.stateDir, trustDomain: 'soak.test', hostBase: opts.hostBase, gateways: 1, processes: true, grpcEcho: true, progress: opts.progress });
    // Every fifth request an echo POST to ledger of 1 KiB to 300 kB (on kept connections): each
    // answer must come back as long as its body. Every seventh a gRPC call to grpc-echo in west
    // through the client's fixed listener (h2c, one kept connection). Of the GETs, every fourth
    // on a connection of its own, closed after its answer: setup and teardown under load.
    const echo = { url: 'http://ledger.demo.mesh/echo', sizes: soakEchoSizes, every: 5 };
    const targets: TrafficTarget[] = Object.values(mesh.file.clusters).map((c) => ({
      proxy: c.client.proxy, urls: ['http://hello.demo.mesh/', 'http://ledger.demo.mesh/'], echo, fresh: { every: 4 },
      ...(c.client.listeners['demo/grpc-echo'] ? { grpc: { listener: c.client.listeners['demo/grpc-echo'], every: 7 } } : {}),
    }));
    generator.current = new TrafficGenerator(targets, opts.rps);
    generator.current.start();
    await new Promise((r) => setTimeout(r, opts.warmUpSeconds * 1000));
    const pids = processTree(process.pid);
    const start = new Map(pids.map((pid) => [pid, readProcess(pid)]));
    const errorsBefore = errorLines(opts.stateDir);
    const sentBefore = generator.current.sent;
    const failedBefore = generator.current.failed;
    opts.progress(`  … soaking ${opts.seconds} s at ${opts.rps} requests/s from each client; ${pids.length} processes watched`);
    for (let left = opts.seconds; left > 0; left -= 60) {
      await new Promise((r) => setTimeout(r, Math.min(left, 60) * 1000));
      if (left > 60) opts.progress(`  … ${opts.seconds - left + 60} s, ${generator.current.sent - sentBefore} requests, ${generator.current.failed - failedBefore} failed`);
    }
    const errorsAfter = errorLines(opts.stateDir);
    const rows: SoakRow[] = [];
    for (const pid of pids) {
      const first = start.get(pid);
      if (!first) continue;
      const name = processLabel(pid, opts.stateDir);
      const end = readProcess(pid);
      rows.push({ pid, name, start: first, ...(end ? { end } : {}), errors: (errorsAfter.get(pid) ?? 0) - (errorsBefore.get(pid) ?? 0) });
    }
    return { seconds: opts.seconds, sent: generator.current.sent - sentBefore, failed: generator.current.failed - failedBefore, rows };
  } finally {
    generator.current?.stop();
    await mesh?.stop();
  }
}

const mb = (kb: number) => (kb / 1024).toFixed(1);

export function formatSoak(result: SoakResult): string {
  const rows = result.rows.map((r) => [
    r.name, String(r.pid), mb(r.start.rssKb), r.end ? mb(r.end.rssKb) : 'gone', r.end ? `${r.end.rssKb >= r.start.rssKb ? '+' : ''}${mb(r.end.rssKb - r.start.rssKb)}` : '-',
    String(r.start.fds), r.end ? String(r.end.fds) : 'gone', r.end ? `${r.end.fds >= r.start.fds ? '+' : ''}${r.end.fds - r.start.fds}` : '-', String(r.errors),
  ]);
  return `${formatTable(['process', 'pid', 'rss MiB start', 'end', 'growth', 'fds start', 'end', 'growth', 'errors'], rows)}
${result.seconds} s: ${result.sent} requests, ${result.failed} failed`;
}
