import { readdirSync, writeFileSync } from 'node:fs';
import { setPriority } from 'node:os';
import { processTree } from './proc-cpu.js';

/**
 * Raises (negative `nice`) the scheduling priority of the processes the bench measures: ours, the
 * peers', etcd and the load generator, all alike, so that other work on a shared machine takes
 * less from either chain. Linux groups processes by session for scheduling (autogroups,
 * sched(7)): every detached proxy is a session of its own and competes with every other session
 * at equal weight whatever its nice value, so the group's nice is set too, through
 * /proc/<pid>/autogroup. Every thread gets the nice value (the libuv and V8 worker threads
 * included). Needs root (CAP_SYS_NICE) for a negative value; returns what it could not change.
 */
export function raisePriority(roots: readonly number[], nice: number): string[] {
  const failed: string[] = [];
  const pids = new Set(roots.flatMap((root) => {
    try {
      return processTree(root);
    } catch {
      return [root];
    }
  }));
  for (const pid of pids) {
    try {
      writeFileSync(`/proc/${pid}/autogroup`, String(nice));
    } catch (err) {
      // No autogroups on this kernel (the file is absent): the nice values below are all there is.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') failed.push(`autogroup of ${pid}: ${(err as Error).message}`);
    }
    let threads: string[];
    try {
      threads = readdirSync(`/proc/${pid}/task`);
    } catch {
      continue; // exited meanwhile
    }
    for (const tid of threads) {
      try {
        setPriority(Number(tid), nice);
      } catch (err) {
        failed.push(`nice of ${pid}/${tid}: ${(err as Error).message}`);
      }
    }
  }
  return failed;
}
