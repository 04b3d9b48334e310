import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { isthmusOk } from '../helpers/cli.js';
import { etcdArgs, startEtcd, type TestEtcd } from '../helpers/etcd.js';
import { freePort } from '../helpers/ports.js';

// etcd on 127.0.47.1; a second etcd URL on 127.0.47.1 where nothing listens.
let etcd: TestEtcd;
let dir: string;

beforeAll(async () => {
  etcd = await startEtcd({ host: '127.0.47.1' });
  dir = mkdtempSync(join(tmpdir(), 'isthmus-join-clock-'));
  await isthmusOk(['ca', 'init', '--trust-domain', 'mesh.test', '--out', join(dir, 'ca')]);
}, 60_000);

afterAll(async () => {
  await etcd?.destroy();
  rmSync(dir, { recursive: true, force: true });
});

test('join asks every etcd URL for its clock: a first URL that is down is named in a warning, and the member that answers is checked', async () => {
  const down = `https://127.0.47.1:${await freePort('127.0.47.1')}`;
  const args = etcdArgs(etcd);
  args[1] = `${down},${etcd.url}`;
  const joined = await isthmusOk(['join', 'east', '--region', 'r', '--zone', 'a', ...args, '--ca', join(dir, 'ca'), '--out', join(dir, 'east'), '--federation-host', '127.0.47.2', '--api-port', '0', '--dashboard-port', '0', '-o', 'json']);
  const checks = (JSON.parse(joined.stdout) as { checks: { name: string; status: string; detail: string }[] }).checks;
  const clock = checks.find((c) => c.name === 'clock skew');
  expect(clock).toMatchObject({ status: 'warn' });
  expect(clock!.detail).toMatch(/^-?\d+\.\d s from etcd's clock; /);
  expect(clock!.detail).toContain(`${down} did not answer`);
  expect(clock!.detail).not.toContain(etcd.url);
}, 60_000);
