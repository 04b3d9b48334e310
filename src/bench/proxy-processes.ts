import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { processCpuSeconds, processTree } from './proc-cpu.js';
import type { Destination, Side } from './targets.js';

/**
 * A process whose CPU and memory count as a proxy's: one of our sidecars or gateways, or one of
 * the peer chain's nginx/HAProxy processes. `carries` says which destinations' requests pass
 * through it, so that a chain's figure sums exactly the proxies on that chain (the issue's "CPU
 * of the three proxies"), and an idle sidecar elsewhere in the mesh counts for neither.
 */
export interface ProxyProcess {
  side: Exclude<Side, 'origin'>;
  name: string;
  pid: number;
  carries: Destination[];
  /**
   * The process also serves the origin apps (our single-process mesh): its CPU per request is
   * then counted as the chain's minus the baseline's at the same rate.
   */
  includesOrigin: boolean;
  /**
   * host:port of its admin port (plain HTTP), where what it carried is counted: a sample's
   * sidecar's inbound requests, a gateway's bytes (`carried` says which).
   */
  admin?: string;
  carried?: 'inbound-requests' | 'gateway-bytes';
}

/** Which of our components a process is, from its command line (`isthmus sidecar --config ...`). */
export type OurRole =
  | { kind: 'sidecar'; cluster: string; instance: string }
  | { kind: 'gateway'; cluster: string; id: string };

/**
 * Pure. Reads what `isthmus dev up --processes` starts: `sidecar --config
 * <state>/sidecars/<cluster>/<instance>/sidecar.yaml` and `gateway --config
 * <state>/clusters/<cluster>/cluster.yaml --id <id>`. Anything else (etcd, a shell) is undefined.
 */
export function ourRole(args: string[]): OurRole | undefined {
  const verb = args.findIndex((a) => a === 'sidecar' || a === 'gateway');
  if (verb < 0) return undefined;
  const option = (name: string) => {
    const i = args.indexOf(name, verb);
    return i < 0 ? undefined : args[i + 1];
  };
  const config = option('--config') ?? '';
  if (args[verb] === 'sidecar') {
    const m = /\/sidecars\/([^/]+)\/([^/]+)\/sidecar\.yaml$/.exec(config);
    return m ? { kind: 'sidecar', cluster: m[1] as string, instance: m[2] as string } : undefined;
  }
  const m = /\/clusters\/([^/]+)\/cluster\.yaml$/.exec(config);
  const id = option('--id');
  return m && id ? { kind: 'gateway', cluster: m[1] as string, id } : undefined;
}

/**
 * Pure. The destinations one of our proxies carries requests for, given where the requests start:
 * the client's sidecar carries all of them; a destination's gateway carries those from another
 * cluster; a sample's sidecar (instance `<service>-<cluster>-<n>`) those for its service there.
 */
export function ourCarries(role: OurRole, destinations: Destination[], fromCluster: string): Destination[] {
  if (role.kind === 'gateway') return destinations.filter((d) => d.cluster === role.cluster && d.cluster !== fromCluster);
  if (role.instance === 'client') return role.cluster === fromCluster ? destinations : [];
  return destinations.filter((d) => d.cluster === role.cluster && role.instance.startsWith(`${d.service}-${d.cluster}-`));
}

const roleName = (role: OurRole) => (role.kind === 'sidecar' ? `sidecar ${role.cluster}/${role.instance}` : `gateway ${role.cluster}/${role.id}`);

/**
 * Our proxy processes on the chains, from dev up's process tree. With every proxy in dev up's one
 * process, that process is the proxy (and the apps: `includesOrigin`).
 */
export function ourProxyProcesses(mesh: { pid: number; processes: boolean; mode: 'child' | 'in-process' }, destinations: Destination[], fromCluster: string): ProxyProcess[] {
  if (mesh.mode === 'in-process') return [{ side: 'isthmus', name: `this bench process (every proxy, the sample apps AND the load generator, pid ${mesh.pid})`, pid: mesh.pid, carries: destinations, includesOrigin: true }];
  if (!mesh.processes) return [{ side: 'isthmus', name: `dev up (every proxy and the sample apps, pid ${mesh.pid})`, pid: mesh.pid, carries: destinations, includesOrigin: true }];
  const found: ProxyProcess[] = [];
  for (const pid of processTree(mesh.pid).slice(1)) {
    const args = commandLine(pid);
    const role = ourRole(args);
    if (!role) continue;
    const carries = ourCarries(role, destinations, fromCluster);
    if (carries.length === 0) continue;
    const config = args[args.indexOf('--config') + 1] ?? '';
    const admin = role.kind === 'gateway' ? gatewayAdmin(config, role.id) : role.instance !== 'client' ? sidecarAdmin(config) : undefined;
    const carried = role.kind === 'gateway' ? 'gateway-bytes' as const : 'inbound-requests' as const;
    found.push({ side: 'isthmus', name: roleName(role), pid, carries, includesOrigin: false, ...(admin ? { admin, carried } : {}) });
  }
  return found;
}

/** The plain-HTTP admin address of gateway `id` in its cluster.yaml; undefined when it names none or serves it over TLS. */
function gatewayAdmin(configPath: string, id: string): string | undefined {
  try {
    const config = parse(readFileSync(configPath, 'utf8')) as { gateways?: { id?: unknown; admin?: unknown; adminTls?: unknown }[] };
    const gateway = config.gateways?.find((g) => g.id === id);
    return typeof gateway?.admin === 'string' && gateway.adminTls === undefined ? gateway.admin : undefined;
  } catch {
    return undefined;
  }
}

/** The plain-HTTP admin address in a sidecar's config file; undefined when it has none or serves it over TLS. */
function sidecarAdmin(configPath: string): string | undefined {
  try {
    const config = parse(readFileSync(configPath, 'utf8')) as { admin?: { listen?: unknown; tls?: unknown } };
    return typeof config.admin?.listen === 'string' && config.admin.tls === undefined ? config.admin.listen : undefined;
  } catch {
    return undefined;
  }
}

function commandLine(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return [];
  }
}

/** Below this share of the busiest of our processes' CPU, a process counts as having carried none of a chain. */
export const idleCarrierShare = 0.1;

/**
 * Requests each sample sidecar's inbound had answered (by pid), read from its admin port before
 * and after the priming run (cold-start.ts inboundRequests); a pid missing from either has no count.
 */
export interface InboundCounts { before: Map<number, number>; after: Map<number, number> }

/** Why a process was found idle: its inbound answered no request, or it used too little CPU. */
export interface IdleCarrier { process: ProxyProcess; cpuSeconds: number; busiestCpuSeconds: number; by: 'requests' | 'cpu' }

/**
 * Pure. Our processes named as carrying `destination` that carried none of it while it was sent
 * between `before` and `after` (the priming run). The naming (`ourCarries`) counts every instance
 * of the service in its cluster, but the client's sidecar keeps traffic in its own zone while
 * that zone has a healthy instance, so the other zone's sidecar sits idle; counting it would add
 * an idle process's CPU and all of its memory to the chain.
 *
 * A sample's sidecar whose inbound counts are known (`inbound`) is idle when its inbound answered
 * no request in that window, whatever CPU it used (a collection or a catalog update in a short
 * window can cost an idle sidecar more than a tenth of a busy one's CPU); a gateway whose byte
 * count is known, when it carried no byte (its native relay costs so little CPU per request that
 * a short window's clock ticks can put a busy gateway under the share below). Any other process is
 * idle when it used less than `share` of the CPU of the busiest of ours in that window: an idle
 * sidecar uses about 1–2% of a carrying one at 1000 requests/s; a gateway that shares a
 * cluster's traffic with a second one still uses about a fifth of the client sidecar's CPU.
 */
export function idleCarriers(processes: ProxyProcess[], destination: Destination, before: ProcessReadings, after: ProcessReadings, share = idleCarrierShare, inbound?: InboundCounts): IdleCarrier[] {
  const ours = processes.filter((p) => p.side === 'isthmus' && !p.includesOrigin && p.carries.some((d) => d.service === destination.service && d.cluster === destination.cluster));
  const spent = ours.map((p) => ({ process: p, cpuSeconds: (after.get(p.pid)?.cpuSeconds ?? Number.NaN) - (before.get(p.pid)?.cpuSeconds ?? Number.NaN) }));
  if (spent.some((s) => Number.isNaN(s.cpuSeconds))) return []; // a process gone: leave the naming as it is
  const busiestCpuSeconds = Math.max(0, ...spent.map((s) => s.cpuSeconds));
  if (busiestCpuSeconds <= 0) return [];
  const idle: IdleCarrier[] = [];
  for (const s of spent) {
    const [from, to] = [inbound?.before.get(s.process.pid), inbound?.after.get(s.process.pid)];
    if (from !== undefined && to !== undefined) {
      if (to === from) idle.push({ ...s, busiestCpuSeconds, by: 'requests' });
    } else if (s.cpuSeconds < share * busiestCpuSeconds) idle.push({ ...s, busiestCpuSeconds, by: 'cpu' });
  }
  return idle;
}

/** Pure. `processes` with `destination` taken out of the carries of `idle` (and those left carrying nothing dropped). */
export function withoutCarriers(processes: ProxyProcess[], idle: ProxyProcess[], destination: Destination): ProxyProcess[] {
  return processes
    .map((p) => (idle.includes(p) ? { ...p, carries: p.carries.filter((d) => !(d.service === destination.service && d.cluster === destination.cluster)) } : p))
    .filter((p) => p.carries.length > 0);
}

/** Pure. The peak resident set (VmHWM) in bytes from the text of /proc/<pid>/status (proc(5)). */
export function parsePeakRss(status: string): number {
  const m = /^VmHWM:\s+(\d+)\s+kB$/m.exec(status);
  if (!m) throw new Error('no VmHWM line in /proc/<pid>/status');
  return Number(m[1]) * 1024;
}

/** CPU seconds and peak RSS of each process at one instant, by pid (NaN for one that is gone). */
export type ProcessReadings = Map<number, { cpuSeconds: number; peakRssBytes: number }>;

export function readProcesses(pids: number[]): ProcessReadings {
  const readings: ProcessReadings = new Map();
  for (const pid of pids) {
    try {
      readings.set(pid, { cpuSeconds: processCpuSeconds(pid), peakRssBytes: parsePeakRss(readFileSync(`/proc/${pid}/status`, 'utf8')) });
    } catch {
      readings.set(pid, { cpuSeconds: Number.NaN, peakRssBytes: Number.NaN });
    }
  }
  return readings;
}

/** What one point cost a side's proxies on one chain: CPU during the point, peak RSS by its end. */
export interface ProxiesSpent {
  cpuSeconds: number;
  peakRssBytes: number;
  processes: { name: string; cpuSeconds: number; peakRssBytes: number }[];
}

/** Pure. Sums the processes of `side` that carry `destination`, between two readings. */
export function proxiesSpent(processes: ProxyProcess[], side: ProxyProcess['side'], destination: Destination, before: ProcessReadings, after: ProcessReadings): ProxiesSpent {
  const on = processes.filter((p) => p.side === side && p.carries.some((d) => d.service === destination.service && d.cluster === destination.cluster));
  const each = on.map((p) => ({
    name: p.name,
    cpuSeconds: (after.get(p.pid)?.cpuSeconds ?? Number.NaN) - (before.get(p.pid)?.cpuSeconds ?? Number.NaN),
    peakRssBytes: after.get(p.pid)?.peakRssBytes ?? Number.NaN,
  }));
  return {
    cpuSeconds: each.length === 0 ? Number.NaN : each.reduce((sum, p) => sum + p.cpuSeconds, 0),
    peakRssBytes: each.length === 0 ? Number.NaN : each.reduce((sum, p) => sum + p.peakRssBytes, 0),
    processes: each,
  };
}
