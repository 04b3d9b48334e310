import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/**
 * utime + stime of a process in clock ticks, from the text of /proc/<pid>/stat (proc(5): fields
 * 14 and 15). The command name (field 2) is in parentheses and may itself contain spaces or
 * parentheses, so fields are counted after the LAST ')'.
 */
export function parseProcStatTicks(stat: string): number {
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state), so field n is rest[n - 3].
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) throw new Error(`unexpected /proc/<pid>/stat format: ${stat.slice(0, 120)}`);
  return utime + stime;
}

let ticksPerSecond: number | undefined;

/** USER_HZ: 100 on every Linux we run on, but ask rather than assume. */
export function clockTicksPerSecond(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

/** CPU seconds (user + system, all threads) a live process has used so far. Resolution 1/USER_HZ. */
export function processCpuSeconds(pid: number): number {
  return parseProcStatTicks(readFileSync(`/proc/${pid}/stat`, 'utf8')) / clockTicksPerSecond();
}

/** Direct children of a process (every thread's /proc/<pid>/task/<tid>/children). */
export function childPids(pid: number): number[] {
  const found = new Set<number>();
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const text = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim();
      for (const child of text.split(/\s+/).filter(Boolean)) found.add(Number(child));
    }
  } catch {
    // the process is gone, or this kernel lacks the file (CONFIG_PROC_CHILDREN): no children known
  }
  return [...found];
}

/** The process and all its descendants, parents before children (a snapshot: processes come and go). */
export function processTree(root: number): number[] {
  const tree = [root];
  for (let i = 0; i < tree.length; i += 1) tree.push(...childPids(tree[i] as number));
  return tree;
}

/**
 * CPU seconds of a whole process tree so far: the root and every descendant alive right now.
 * A descendant that exits between two readings takes its CPU out of the later sum (its parent's
 * cutime only gets it when reaped), so a point during which a proxy restarts is not comparable;
 * the bench restarts nothing while it measures. Throws only when the root itself is gone.
 */
export function processTreeCpuSeconds(root: number): number {
  let total = processCpuSeconds(root);
  for (const pid of processTree(root).slice(1)) {
    try {
      total += processCpuSeconds(pid);
    } catch {
      // exited between the listing and the read
    }
  }
  return total;
}

export function processName(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Machine-wide CPU from the first line of /proc/stat (proc(5)), in seconds summed over all cores. */
export interface SystemCpu {
  /**
   * user + nice + system: time processes ran. irq and softirq are left out: with IRQ time
   * accounting the kernel charges loopback packet processing (our own traffic) there and to no
   * process, so counting it would make our own load look like someone else's.
   */
  busy: number;
  /** Time the hypervisor gave our virtual CPUs to someone else. */
  steal: number;
}

export function parseProcStatSystem(text: string, ticks: number): SystemCpu {
  const line = text.split('\n').find((l) => l.startsWith('cpu '));
  if (!line) throw new Error('no "cpu " line in /proc/stat');
  const [user = 0, nice = 0, system = 0, , , , , steal = 0] = line.trim().split(/\s+/).slice(1).map(Number);
  return { busy: (user + nice + system) / ticks, steal: steal / ticks };
}

export function systemCpu(): SystemCpu {
  return parseProcStatSystem(readFileSync('/proc/stat', 'utf8'), clockTicksPerSecond());
}
