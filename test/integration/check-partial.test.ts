import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { isthmus, isthmusOk, waitFor } from '../helpers/cli.js';
import { TestMesh, type TestOperator } from '../helpers/mesh.js';
import { etcdEnv } from '../helpers/etcd.js';

// east on 127.0.245.1, west on 127.0.246.1.
let mesh: TestMesh;
let operator: TestOperator;

beforeAll(async () => {
  mesh = await TestMesh.create();
  const ca = await mesh.caInit('ca', 'mesh.test');
  // The objectives are evaluated by the dashboards, whose data is for operators.
  operator = await mesh.operator(ca);
  await mesh.join('east', { index: 245, ca });
  await mesh.join('west', { index: 246, ca });
  await mesh.startFederation('east');
  await mesh.startFederation('west');
}, 60_000);

afterAll(async () => {
  await mesh?.close();
});

type Checked = { name: string; status: string; detail: string; hint?: string };
const checks = async (): Promise<Checked[]> => JSON.parse((await isthmus(['check', '--output', 'json'], env())).stdout).checks;
const env = () => ({ ...etcdEnv(mesh.etcd), ...operator.env });

test('with one cluster down, `isthmus check` still checks the others and the objectives, and an objective whose service left the mesh says so there and in `policy list`', async () => {
  const west = mesh.cluster('west');
  await isthmusOk(['register', 'ledger', '-n', 'demo', '-c', west.config, '--address', await mesh.workload('west')]);
  await isthmusOk(['export', 'ledger', '-n', 'demo', '--cluster', 'west'], env());
  const slo = join(mesh.dir, 'slo.yaml');
  writeFileSync(slo, 'apiVersion: isthmus.dev/v1alpha1\nkind: ServiceLevelObjective\nmetadata: { name: ledger-fast, namespace: demo }\nspec:\n  service: ledger\n  success: 99.9\n  window: 1h\n');
  await isthmusOk(['policy', 'apply', '-f', slo], env());
  await waitFor(async () => (await isthmusOk(['services'], env())).stdout.includes('published') && !(await isthmusOk(['services'], env())).stdout.includes('not published'), 15_000, 'ledger published by west');

  const before = await checks();
  expect(before.find((c) => c.name === 'service level objectives')?.detail).not.toMatch(/service gone/);
  expect(before.find((c) => c.name === 'cluster liveness')?.status).toBe('ok');

  // west's federation stops: its records go at once.
  await west.federation!.stop('SIGTERM');
  const after = await waitFor(async () => {
    const results = await checks();
    return results.find((c) => c.name === 'cluster liveness')?.status === 'failed' ? results : undefined;
  }, 15_000, 'west reported down');
  const by = (name: string) => after.value.find((c) => c.name === name);
  expect(by('cluster liveness')?.detail).toMatch(/not alive: west \(alive: east\)/);
  // Nothing is skipped because west is down: each check looked at what is there.
  expect(after.value.filter((c) => c.status === 'skipped')).toEqual([]);
  expect(by('dashboards')).toMatchObject({ status: 'ok', detail: '1 dashboard(s) answer (not asked: west, not alive)' });
  expect(by('records readable')?.status).toBe('ok');
  expect(by('service level objectives')).toMatchObject({
    status: 'warn',
    detail: expect.stringMatching(/service gone from the mesh: demo\/ledger-fast \(service demo\/ledger is published by no alive cluster\)/),
    hint: expect.stringMatching(/export the service again/),
  });

  const listed = await isthmusOk(['policy', 'list'], env());
  expect(listed.stdout).toMatch(/demo\/ledger-fast .*\(service demo\/ledger left the mesh\)/);
  const json = JSON.parse((await isthmusOk(['policy', 'list', '--output', 'json'], env())).stdout);
  expect(json.policies.find((p: { name: string }) => p.name === 'ledger-fast')).toMatchObject({ serviceInMesh: false });
});
