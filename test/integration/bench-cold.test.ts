import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { expect, test } from 'vitest';
import { isPortListening } from '../helpers/ports.js';

/**
 * `npm run bench`'s own script, end to end, in its shortest form (`--cold-only`): it starts a
 * `dev up --processes` mesh and the nginx → HAProxy → nginx peer chain, measures both chains'
 * first second of traffic, probes ours afterwards, and stops everything. What a user relies on:
 * it exits 0 with both rows, ours answered every request, and before the point our chain had
 * carried only `dev up`'s own readiness request (a probe of the bench's own before the cold
 * start would make the point milder than a mesh just started, and the count 2). No figure is
 * asserted: the machine is shared.
 */
const execFileAsync = promisify(execFile);
const bench = new URL('../../dist/bench/run.js', import.meta.url).pathname;

test('bench --cold-only: both chains measured from their first request, ours with only dev up\'s readiness request before it, and everything stopped', async () => {
  // Host base 69: east 127.0.69.x, west 127.0.70.x, used by no other test.
  const { stdout, stderr } = await execFileAsync(process.execPath, [bench, '--cold-only', '--cold-rate', '100', '--cold-seconds', '1', '--host-base', '69', '-o', 'json'], { timeout: 150_000, maxBuffer: 16 * 1024 * 1024 });
  // The generator warms up against the app both cold chains end at, which warms that app too:
  // ours, measured first, must not meet a colder app than the peer's does after it.
  expect(stderr).toContain('warming the load generator up: 100 rps for 2 s straight to the ledger app');
  const report = JSON.parse(stdout) as { coldStart: { label: string; side: string; errors: number; rate: number; carriedBefore?: number }[] };
  expect(report.coldStart.map((r) => [r.label, r.side])).toEqual([['isthmus cross-cluster', 'isthmus'], ['peer cross-cluster', 'peer']]);
  const ours = report.coldStart[0]!;
  expect(ours.errors).toBe(0);
  expect(ours.rate).toBe(100);
  expect(ours.carriedBefore).toBe(1);
  expect(report.coldStart[1]!.carriedBefore).toBeUndefined();
  // Stopped: the east client sidecar's proxy and the west gateway no longer listen, and no process
  // of that mesh (dev up and its children carry --host-base 69 or its state dir) is left.
  expect(await isPortListening('127.0.69.1', 15001)).toBe(false);
  expect(await isPortListening('127.0.70.1', 15443)).toBe(false);
  const left = execFileSync('ps', ['-eo', 'pid,args'], { encoding: 'utf8' }).split('\n').filter((l) => l.includes('--host-base 69'));
  expect(left).toEqual([]);
}, 180_000);
