import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { expect, test } from 'vitest';
import { isPortListening } from '../helpers/ports.js';

/**
 * `npm run bench:bulk`'s own script, end to end, in its shortest form: it starts a
 * `dev up --processes` mesh and the peer chain with bodies streamed, moves a download and an upload,
 * each with a length and chunked, of 16 MB to west's ledger straight, through ours and through the peer's, and stops everything.
 * What a user relies on: it exits 0 with the twelve rows, every transfer whole on each, each chain's
 * three proxies counted. No figure is asserted.
 */
const execFileAsync = promisify(execFile);
const bench = new URL('../../dist/bench/bulk.js', import.meta.url).pathname;

test('bench:bulk: downloads and uploads, with a length and chunked, straight, through ours and through the peer chain, all whole, and everything stopped', async () => {
  // Host base 37: east 127.0.37.x, west 127.0.38.x, used by no other test.
  const { stdout } = await execFileAsync(process.execPath, [bench, '--megabytes', '16', '--rounds', '1', '--host-base', '37', '-o', 'json'], { timeout: 150_000, maxBuffer: 16 * 1024 * 1024 });
  const report = JSON.parse(stdout) as { rows: { side: string; kind: string; failed: number; transfers: number; cpuSecondsPerGb: number | null; megabytesPerSecond: number | null }[]; targets: { side: string; route: string }[] };
  expect(report.rows.map((r) => `${r.kind} ${r.side}`)).toEqual(['download origin', 'download isthmus', 'download peer', 'chunked download origin', 'chunked download isthmus', 'chunked download peer', 'upload origin', 'upload isthmus', 'upload peer', 'chunked upload origin', 'chunked upload isthmus', 'chunked upload peer']);
  for (const row of report.rows) {
    expect(row.failed, `${row.kind} ${row.side}`).toBe(0);
    expect(row.megabytesPerSecond, `${row.kind} ${row.side}`).toBeGreaterThan(0);
  }
  // Each chain's proxies were found and read (a NaN would be null in JSON).
  for (const row of report.rows.filter((r) => r.side !== 'origin')) expect(row.cpuSecondsPerGb, `${row.kind} ${row.side}`).toBeGreaterThan(0);
  expect(report.targets[1]!.route).toContain('127.0.37.1:15001');
  expect(await isPortListening('127.0.37.1', 15001)).toBe(false);
  expect(await isPortListening('127.0.38.1', 15443)).toBe(false);
  const left = execFileSync('ps', ['-eo', 'pid,args'], { encoding: 'utf8' }).split('\n').filter((l) => l.includes('--host-base 37') || l.includes('isthmus-bench-bulk'));
  expect(left).toEqual([]);
}, 180_000);
