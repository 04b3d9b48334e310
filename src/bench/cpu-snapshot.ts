import { performance } from 'node:perf_hooks';
import type { BenchMesh } from './bench-mesh.js';
import { processCpuSeconds, systemCpu, type SystemCpu } from './proc-cpu.js';

/** CPU counters at one instant: the mesh, its etcd, the peer chain, this load generator, and the whole machine. */
export interface CpuSnapshot {
  atMs: number;
  mesh: number;
  etcd: number;
  /** The peer chain's nginx and HAProxy processes (not in the mesh's process tree). */
  peers: number;
  generator: number;
  system: SystemCpu;
}

/** CPU seconds spent between two snapshots, and by whom. */
export interface CpuSpent {
  seconds: number;
  mesh: number;
  etcd: number;
  peers: number;
  generator: number;
  /**
   * Everything else that ran on the machine meanwhile (other people's builds and tests on a shared
   * machine, the kernel's own work). Competes with the mesh for the same cores, so a point with a
   * lot of it has a worse tail than the mesh alone would.
   */
  other: number;
  steal: number;
}

const safe = (read: (() => number) | undefined) => {
  if (!read) return Number.NaN;
  try {
    return read();
  } catch {
    return Number.NaN; // the process is gone: the errors column says why
  }
};

export function cpuSnapshot(mesh: BenchMesh, peerPids: number[] = []): CpuSnapshot {
  const generator = process.cpuUsage();
  return {
    atMs: performance.now(),
    mesh: safe(() => mesh.cpuSeconds()),
    etcd: safe(mesh.etcdCpuSeconds),
    peers: peerPids.reduce((sum, pid) => sum + safe(() => processCpuSeconds(pid)), 0),
    generator: (generator.user + generator.system) / 1e6,
    system: systemCpu(),
  };
}

/** Which other figures the mesh's CPU figure already contains, so that none is subtracted twice. */
export interface InsideMesh {
  /** In-process: the load generator shares the mesh's process. */
  generator: boolean;
  /** Child mode: the mesh figure is dev up's whole process tree, etcd included. */
  etcd: boolean;
}

/** Pure. Whatever the mesh's figure already contains is not subtracted twice. */
export function cpuSpent(before: CpuSnapshot, after: CpuSnapshot, inside: InsideMesh): CpuSpent {
  const mesh = after.mesh - before.mesh;
  const etcd = after.etcd - before.etcd;
  const generator = after.generator - before.generator;
  const peers = after.peers - before.peers;
  const ours = mesh + (Number.isNaN(etcd) || inside.etcd ? 0 : etcd) + (inside.generator ? 0 : generator) + (Number.isNaN(peers) ? 0 : peers);
  return {
    seconds: (after.atMs - before.atMs) / 1000,
    mesh, etcd, peers, generator,
    other: Math.max(0, after.system.busy - before.system.busy - ours),
    steal: after.system.steal - before.system.steal,
  };
}
