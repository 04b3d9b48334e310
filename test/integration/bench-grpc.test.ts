import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { expect, test } from 'vitest';
import { isPortListening } from '../helpers/ports.js';

/**
 * `npm run bench:grpc`'s own script, end to end, in its shortest form: it starts a
 * `dev up --processes` mesh and the peer chain carrying gRPC (nginx grpc_pass → HAProxy → nginx
 * grpc_pass), sends unary calls to west's grpc-echo straight, through ours and through the
 * peer's, and stops everything. What a user relies on: it exits 0 with the three rows, every
 * call answered OK on each, each chain's three proxies counted. No figure is asserted.
 */
const execFileAsync = promisify(execFile);
const bench = new URL('../../dist/bench/grpc.js', import.meta.url).pathname;

test('bench:grpc: unary calls straight, through ours and through the peer chain, all answered, and everything stopped', async () => {
  // Host base 58: east 127.0.58.x, west 127.0.59.x, used by no other test.
  const { stdout } = await execFileAsync(process.execPath, [bench, '--rate', '50', '--seconds', '1', '--warmup', '0', '--rounds', '1', '--host-base', '58', '-o', 'json'], { timeout: 150_000, maxBuffer: 16 * 1024 * 1024 });
  const report = JSON.parse(stdout) as { rows: { side: string; errors: number; calls: number; cpuSecondsPer1000: number | null }[]; targets: { side: string; route: string }[] };
  expect(report.rows.map((r) => r.side)).toEqual(['origin', 'isthmus', 'peer']);
  for (const row of report.rows) {
    expect(row.errors, row.side).toBe(0);
    expect(row.calls, row.side).toBe(50);
  }
  // Each chain's proxies were found and read (a NaN would be null in JSON).
  expect(report.rows[1]!.cpuSecondsPer1000).toBeGreaterThan(0);
  expect(report.rows[2]!.cpuSecondsPer1000).toBeGreaterThan(0);
  expect(report.targets[1]!.route).toContain('127.0.58.1:15102');
  expect(await isPortListening('127.0.58.1', 15001)).toBe(false);
  expect(await isPortListening('127.0.59.1', 15443)).toBe(false);
  const left = execFileSync('ps', ['-eo', 'pid,args'], { encoding: 'utf8' }).split('\n').filter((l) => l.includes('--host-base 58') || l.includes('isthmus-bench-grpc'));
  expect(left).toEqual([]);
}, 180_000);
