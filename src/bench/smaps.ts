import { readFileSync, realpathSync } from 'node:fs';

/**
 * Where a process's resident memory is, from /proc/<pid>/smaps, in kB: the pages of the node
 * binary itself (file-backed, shared with every other node process on the host but counted in
 * each one's RSS), other files (shared libraries, ICU data), the main malloc arena (`[heap]`),
 * and the rest of the anonymous memory (V8's heap pages, the malloc arenas of other threads,
 * thread stacks). The sum is the process's RSS.
 */
export interface RssByMapping {
  nodeBinaryKb: number;
  otherFilesKb: number;
  mallocHeapKb: number;
  anonymousKb: number;
  /**
   * Pages no other process maps (`Private_Clean` + `Private_Dirty`, the USS): what stopping this
   * process would give back. On a host with many node processes (a node's sidecars) most of the
   * binary's pages are shared, so this is near what one more sidecar costs there.
   */
  privateKb: number;
  /** The proportional set size: each shared page divided among the processes that map it. */
  pssKb: number;
}

/**
 * Sums the `Rss:` of each mapping in the text of an smaps file by what the mapping is, and the
 * private pages and PSS of all of them.
 * `binary` is the node executable's real path, as the mapping lines name it.
 */
export function rssByMapping(smaps: string, binary: string): RssByMapping {
  const sums: RssByMapping = { nodeBinaryKb: 0, otherFilesKb: 0, mallocHeapKb: 0, anonymousKb: 0, privateKb: 0, pssKb: 0 };
  let bucket: 'nodeBinaryKb' | 'otherFilesKb' | 'mallocHeapKb' | 'anonymousKb' = 'anonymousKb';
  for (const line of smaps.split('\n')) {
    // A mapping's first line: address range, permissions, offset, device, inode, then the path if any.
    const mapping = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ (\d+)\s*(.*)$/.exec(line);
    if (mapping) {
      const [, inode, path] = mapping as unknown as [string, string, string];
      if (path === binary) bucket = 'nodeBinaryKb';
      else if (path === '[heap]') bucket = 'mallocHeapKb';
      else if (inode !== '0' && path.startsWith('/')) bucket = 'otherFilesKb';
      else bucket = 'anonymousKb';
      continue;
    }
    const field = /^(Rss|Pss|Private_Clean|Private_Dirty):\s+(\d+) kB/.exec(line);
    if (!field) continue;
    const kb = Number(field[2]);
    if (field[1] === 'Rss') sums[bucket] += kb;
    else if (field[1] === 'Pss') sums.pssKb += kb;
    else sums.privateKb += kb;
  }
  return sums;
}

/** rssByMapping of a live process; `binary` defaults to this node's executable. */
export function readRssByMapping(pid: number, binary = realpathSync(process.execPath)): RssByMapping {
  return rssByMapping(readFileSync(`/proc/${pid}/smaps`, 'utf8'), binary);
}
