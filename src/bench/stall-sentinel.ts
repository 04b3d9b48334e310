import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { raisePriority } from './priority.js';

/**
 * Stalls of the machine itself, told apart from the chains' own contention. Timing a 10 ms
 * interval inside every sidecar and gateway of a bench run shows all of them, idle ones
 * included, late by 10–45 ms at the same moments, and one such moment in a 5 s window at 1000
 * requests/s can decide that window's p99. Either the host stopped the whole virtual machine,
 * or both cores were busy (on 2026-12-04 they were: `dev up`'s own process, which then served
 * the sample apps behind both chains beside the federation services, and the kernel's kdamond
 * thread ran in those moments; the apps have had processes of their own since).
 *
 * The sentinel is a process of its own that does nothing but arm a timer every `sentinelTickMs`
 * and report how late it fired, at nice -20 with its scheduling group where allowed (root), so
 * that busy processes at normal priority do not delay it. A late tick therefore means the
 * machine stood still, not that the cores were busy: a window's tail with no such stall was set
 * by contention, in which each chain's own CPU use takes part.
 */
export interface Stall {
  /** Epoch ms when the late tick fired. */
  at: number;
  /** How late it fired, ms. */
  lateMs: number;
}

export interface StallSummary {
  count: number;
  maxMs: number;
  totalMs: number;
}

/** Lateness below this is ordinary timer jitter and not recorded. */
export const stallThresholdMs = 5;
export const sentinelTickMs = 5;

const sentinelScript = `
let last = performance.now();
setInterval(() => {
  const now = performance.now();
  const late = now - last - ${sentinelTickMs};
  last = now;
  if (late >= ${stallThresholdMs}) process.stdout.write(Date.now() + ' ' + late.toFixed(1) + '\\n');
}, ${sentinelTickMs});
process.stdin.on('end', () => process.exit(0)).resume();
`;

/** Pure: the stalls that ended inside [from, to] (epoch ms), counted, the longest and their sum. */
export function stallsBetween(stalls: readonly Stall[], from: number, to: number): StallSummary {
  const inside = stalls.filter((s) => s.at >= from && s.at <= to);
  return {
    count: inside.length,
    maxMs: inside.reduce((max, s) => Math.max(max, s.lateMs), 0),
    totalMs: inside.reduce((sum, s) => sum + s.lateMs, 0),
  };
}

export class StallSentinel {
  readonly stalls: Stall[] = [];

  private constructor(private readonly child: ChildProcess, readonly priorityRaised: boolean) {
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      const [at, late] = line.split(' ').map(Number);
      if (Number.isFinite(at) && Number.isFinite(late)) this.stalls.push({ at: at as number, lateMs: late as number });
    });
  }

  /** Starts the sentinel; it runs until stop() or until this process exits (its stdin closes). */
  static async start(nice = -20): Promise<StallSentinel> {
    // A session of its own (detached): Linux schedules by session (autogroups, sched(7)), and
    // raisePriority sets the nice value of the sentinel's whole group. In the caller's session that
    // would raise the caller and everything it started undetached too (the bench's load
    // generator, or a test runner and its workers, which then starved the detached sidecars of
    // other tests). It still ends when this process does: its stdin closes.
    const child = spawn(process.execPath, ['-e', sentinelScript], { stdio: ['pipe', 'pipe', 'ignore'], detached: true });
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', reject);
    });
    const failed = process.getuid?.() === 0 ? raisePriority([child.pid as number], nice) : ['not root'];
    return new StallSentinel(child, failed.length === 0);
  }

  get pid(): number {
    return this.child.pid as number;
  }

  between(from: number, to: number): StallSummary {
    return stallsBetween(this.stalls, from, to);
  }

  stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      this.child.once('exit', () => resolve());
      this.child.stdin?.end();
      setTimeout(() => this.child.kill('SIGKILL'), 2000).unref();
    });
  }
}
