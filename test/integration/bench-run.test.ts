import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { expect, test } from 'vitest';
import { isPortListening } from '../helpers/ports.js';

/**
 * `npm run bench`'s own script, end to end, with the shortest points it accepts: a `dev up
 * --processes` mesh and the nginx → HAProxy → nginx peer chain, each chain measured after a
 * baseline of the app it ends at, and everything stopped after. What a user relies on: every
 * point answered every request, each chain's "added" figures subtract its own app's baseline,
 * each chain counts exactly the proxies that carry it (the ones its per-proxy table lists), and
 * both chains are compared. No figure is asserted: the machine is shared.
 */
const execFileAsync = promisify(execFile);
const bench = new URL('../../dist/bench/run.js', import.meta.url).pathname;

interface ReportRow {
  label: string;
  rate: number;
  expect: { service: string; cluster: string };
  p50Ms: number;
  addedP50Ms?: number;
  errors: number;
  answered: number;
  proxies: { name: string; cpuSeconds: number }[];
}

test('bench: each chain after its own app\'s baseline, every request answered, each chain\'s own proxies counted, and everything stopped', async () => {
  // Host base 79: east 127.0.79.x, west 127.0.80.x, used by no other test.
  const { stdout } = await execFileAsync(process.execPath, [bench, '--rates', '300', '--seconds', '1', '--warmup', '1', '--cold-rate', '0', '--host-base', '79', '-o', 'json'], { timeout: 170_000, maxBuffer: 16 * 1024 * 1024 });
  const report = JSON.parse(stdout) as { rows: ReportRow[]; comparisons: { chain: string; figure: string }[] };
  const rows = report.rows;
  expect(rows.map((r) => [r.label, r.rate, `${r.expect.service}@${r.expect.cluster}`])).toEqual([
    ['baseline hello', 300, 'hello@east'],
    ['isthmus same-cluster', 300, 'hello@east'],
    ['peer same-cluster', 300, 'hello@east'],
    ['baseline ledger', 300, 'ledger@west'],
    ['isthmus cross-cluster', 300, 'ledger@west'],
    ['peer cross-cluster', 300, 'ledger@west'],
  ]);
  for (const row of rows) {
    expect(row.errors, row.label).toBe(0);
    expect(row.answered, row.label).toBeGreaterThanOrEqual(290);
  }
  // Added = the chain's p50 minus the baseline of its own app, never the other one's.
  const byLabel = new Map(rows.map((r) => [r.label, r]));
  for (const [chain, base] of [['isthmus same-cluster', 'baseline hello'], ['peer same-cluster', 'baseline hello'], ['isthmus cross-cluster', 'baseline ledger'], ['peer cross-cluster', 'baseline ledger']] as const) {
    expect(byLabel.get(chain)!.addedP50Ms, chain).toBeCloseTo(byLabel.get(chain)!.p50Ms - byLabel.get(base)!.p50Ms, 6);
  }
  expect(byLabel.get('baseline hello')!.addedP50Ms).toBeUndefined();
  // Each chain's proxies, one by one, each of which used CPU for it.
  const names = (label: string) => byLabel.get(label)!.proxies.map((p) => p.name).sort();
  expect(names('isthmus same-cluster')).toEqual(['sidecar east/client', expect.stringMatching(/^sidecar east\/hello-east-\d$/)]);
  expect(names('isthmus cross-cluster')).toEqual(['gateway west/gw-1', 'sidecar east/client', 'sidecar west/ledger-west-1']);
  expect(names('peer same-cluster')).toEqual(['nginx inbound-hello-east', 'nginx outbound-east']);
  expect(names('peer cross-cluster')).toEqual(['haproxy gateway-west', 'nginx inbound-ledger-west', 'nginx outbound-east']);
  for (const row of rows.filter((r) => !r.label.startsWith('baseline'))) {
    for (const p of row.proxies) expect(p.cpuSeconds, `${row.label}: ${p.name}`).toBeGreaterThan(0);
  }
  expect(new Set(report.comparisons.map((c) => c.chain))).toEqual(new Set(['same-cluster', 'cross-cluster']));
  // Stopped: the east client sidecar's proxy and the west gateway no longer listen, and no process
  // of that mesh (dev up and its children carry --host-base 79 or its state dir) is left.
  expect(await isPortListening('127.0.79.1', 15001)).toBe(false);
  expect(await isPortListening('127.0.80.1', 15443)).toBe(false);
  const left = execFileSync('ps', ['-eo', 'pid,args'], { encoding: 'utf8' }).split('\n').filter((l) => l.includes('--host-base 79'));
  expect(left).toEqual([]);
}, 180_000);
