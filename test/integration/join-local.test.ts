import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { isthmusOk } from '../helpers/cli.js';
import { etcdArgs, startEtcd, type TestEtcd } from '../helpers/etcd.js';

let etcd: TestEtcd;
let dir: string;

beforeAll(async () => {
  etcd = await startEtcd();
  dir = mkdtempSync(join(tmpdir(), 'isthmus-join-local-'));
  await isthmusOk(['ca', 'init', '--trust-domain', 'mesh.test', '--out', join(dir, 'ca')]);
}, 60_000);

afterAll(async () => {
  await etcd?.destroy();
  rmSync(dir, { recursive: true, force: true });
});

test('join without --federation-host gives each cluster the next loopback address no other cluster uses, so the second join passes preflight', async () => {
  // Ports 0: nothing is bound while picking, so this test takes no address from another.
  const joinLocal = (name: string) => isthmusOk(['join', name, '--region', 'r', '--zone', 'a', ...etcdArgs(etcd), '--ca', join(dir, 'ca'), '--out', join(dir, name), '--api-port', '0', '--dashboard-port', '0']);
  const east = await joinLocal('east');
  expect(east.stdout).toMatch(/addresses free.*127\.0\.1\.1:0 \(federation host picked/);
  const west = await joinLocal('west');
  expect(west.stdout).toMatch(/addresses free.*127\.0\.2\.1:0/);
  const hosts = ['east', 'west'].map((c) => parse(readFileSync(join(dir, c, 'cluster.yaml'), 'utf8')).federation.host);
  expect(hosts).toEqual(['127.0.1.1', '127.0.2.1']);
  const clusters = JSON.parse((await isthmusOk(['clusters', '-o', 'json', ...etcdArgs(etcd)])).stdout).clusters;
  expect(clusters.map((c: { federation: string }) => c.federation).sort()).toEqual(['127.0.1.1:0', '127.0.2.1:0']);
});
