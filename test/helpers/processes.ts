// Which process serves what, read from /proc: for tests of components that run as processes of their own.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/** The pid whose socket listens on host:port, from /proc/net/tcp (proc(5)) and every process's fds. */
export function listeningPid(address: string): number | undefined {
  const [host, port] = address.split(':') as [string, string];
  const hexHost = host.split('.').map((b) => Number(b).toString(16).padStart(2, '0')).reverse().join('').toUpperCase();
  const local = `${hexHost}:${Number(port).toString(16).toUpperCase().padStart(4, '0')}`;
  const row = readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1).map((l) => l.trim().split(/\s+/)).find((f) => f[1] === local && f[3] === '0A');
  const inode = row?.[9];
  if (!inode) return undefined;
  const link = (path: string) => {
    try {
      return readlinkSync(path);
    } catch {
      return undefined; // an fd closed since the listing: a busy process (this one) does that all the time
    }
  };
  for (const pid of pids()) {
    try {
      if (readdirSync(`/proc/${pid}/fd`).some((fd) => link(`/proc/${pid}/fd/${fd}`) === `socket:[${inode}]`)) return pid;
    } catch {
      // gone, or another user's
    }
  }
  return undefined;
}

export function processesMentioning(text: string): number[] {
  return pids().filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(text);
    } catch {
      return false;
    }
  });
}

export const pids = () => readdirSync('/proc').filter((d) => /^[0-9]+$/.test(d)).map(Number);

export { isAlive } from '../../src/bench/proc-cpu.js';
