import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeError } from '../core/errors.js';
import type { RelayKind } from '../core/native-relay.js';
import { startBenchMesh, type BenchMesh } from './bench-mesh.js';
import type { MeshFile } from '../dev/dev-mesh.js';
import { startPeerChain, type PeerChain } from './peer-chain.js';
import { ourProxyProcesses, proxiesSpent, readProcesses, type ProxyProcess } from './proxy-processes.js';
import type { Destination } from './targets.js';

/**
 * What `npm run bench:grpc` and `npm run bench:bulk` share: a `dev up --processes` mesh and the
 * peer chain reaching one of its services in west from east, the proxies of both chains that
 * carry it, and one cleanup for everything (also on SIGINT and SIGTERM).
 */
export interface SideBySide {
  mesh: BenchMesh;
  peers: PeerChain;
  /** east's cluster in the mesh file (its client sidecar's proxy port and listeners). */
  east: MeshFile['clusters'][string];
  /** host:port of the destination's app. */
  origin: string;
  proxies: ProxyProcess[];
  cleanup: () => Promise<void>;
}

export interface SideBySideOptions {
  /** Names the temporary directories (`isthmus-bench-<name>-…`). */
  name: string;
  hostBase: number;
  destination: Destination;
  /** The peer chain carries the destination as gRPC (h2c at both ends). */
  grpc?: boolean;
  /** The peer chain's nginx processes stream bodies of any size. */
  streamBodies?: boolean;
  /** `--gateway-relay node`: our gateway copies bytes in JavaScript (docs/gateway.md, "The relay"). */
  gatewayRelay?: RelayKind;
  say: (line: string) => void;
}

/** Starts both chains; on failure says why, cleans up, and returns undefined. */
export async function startSideBySide(opts: SideBySideOptions): Promise<SideBySide | undefined> {
  const { say, destination } = opts;
  const stateDir = mkdtempSync(join(tmpdir(), `isthmus-bench-${opts.name}-`));
  const peerDir = mkdtempSync(join(tmpdir(), `isthmus-bench-${opts.name}-peers-`));
  let mesh: BenchMesh | undefined;
  let peers: PeerChain | undefined;
  const cleanup = async () => {
    await peers?.stop().catch((err: unknown) => say(`could not stop the peer chain cleanly: ${describeError(err)}`));
    await mesh?.stop().catch((err: unknown) => say(`could not stop the mesh cleanly: ${describeError(err)}`));
    rmSync(stateDir, { recursive: true, force: true });
    rmSync(peerDir, { recursive: true, force: true });
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => void cleanup().finally(() => process.exit(130)));
  try {
    say(`starting the dev mesh (isthmus dev up --processes) on 127.0.${opts.hostBase}.1 and 127.0.${opts.hostBase + 1}.1`);
    mesh = await startBenchMesh({ mode: 'child', processes: true, stateDir, hostBase: opts.hostBase, clusters: ['east', 'west'], trustDomain: 'bench.isthmus', gateways: 1, ...(opts.gatewayRelay ? { gatewayRelay: opts.gatewayRelay } : {}), say });
    const east = mesh.file.clusters.east;
    const origin = mesh.file.clusters[destination.cluster]?.services.find((s) => s.name === destination.service)?.instances[0];
    if (!east || !origin) throw new Error(`the dev mesh has no ${destination.service} sample in ${destination.cluster}, or no east cluster`);
    say(`starting the peer chain (nginx → HAProxy → nginx${opts.grpc ? ', gRPC proxy' : ''}${opts.streamBodies ? ', bodies streamed' : ''})`);
    peers = await startPeerChain({
      dir: peerDir, trustDomain: 'bench.isthmus', namespace: 'demo', clientCluster: 'east', keepalive: 64, ...(opts.streamBodies ? { streamBodies: true } : {}),
      hosts: { east: `127.0.${opts.hostBase}.2`, west: `127.0.${opts.hostBase + 1}.2` },
      services: [{ name: destination.service, cluster: destination.cluster, origin, ...(opts.grpc ? { grpc: true } : {}) }],
    });
    const proxies = [
      ...ourProxyProcesses({ pid: mesh.pid, processes: true, mode: 'child' }, [destination], 'east'),
      ...peers.processes.map((p): ProxyProcess => ({ side: 'peer', name: p.name, pid: p.pid, carries: [destination], includesOrigin: false })),
    ];
    return { mesh, peers, east, origin, proxies, cleanup };
  } catch (err) {
    say(`setup failed: ${describeError(err)}`);
    await cleanup();
    return undefined;
  }
}

/** What the chain of `side` spent while `work` ran: its proxies' CPU, the sum of their peak RSS, and each one's CPU. */
export interface ChainSpent { cpuSeconds: number; peakRssBytes: number; processes: { name: string; cpuSeconds: number }[] }

/**
 * Runs `work` and reads what the proxies of `side` that carry `destination` spent meanwhile; the
 * app asked straight (`origin`) has no proxies, and reads NaN and none.
 */
export async function measured<T>(proxies: ProxyProcess[], side: ProxyProcess['side'] | 'origin', destination: Destination, work: () => Promise<T>): Promise<{ result: T } & ChainSpent> {
  const pids = proxies.map((p) => p.pid);
  const before = readProcesses(pids);
  const result = await work();
  if (side === 'origin') return { result, cpuSeconds: Number.NaN, peakRssBytes: Number.NaN, processes: [] };
  const spent = proxiesSpent(proxies, side, destination, before, readProcesses(pids));
  return { result, cpuSeconds: spent.cpuSeconds, peakRssBytes: spent.peakRssBytes, processes: spent.processes.map((p) => ({ name: p.name, cpuSeconds: p.cpuSeconds })) };
}

/** The middle value, the lower of the two middles for an even count; NaN values are left out (NaN when none is left). */
export function median(values: number[]): number {
  const sorted = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  return sorted.length === 0 ? Number.NaN : sorted[Math.floor((sorted.length - 1) / 2)] as number;
}

/** Rows of cells as aligned columns: the first left-aligned, the others right-aligned. */
export function columns(lines: string[][]): string {
  const widths = (lines[0] ?? []).map((_, i) => Math.max(...lines.map((l) => (l[i] ?? '').length)));
  return lines.map((l) => l.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] as number) : cell.padStart(widths[i] as number))).join('  ')).join('\n');
}
