import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import type { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parse, stringify } from 'yaml';
import { keys } from '../../src/core/keys.js';
import { isthmusBin, waitFor } from '../helpers/cli.js';
import { rawEtcd } from '../helpers/etcd.js';
import { TestMesh, freePort, type TestCluster } from '../helpers/mesh.js';

// One replica of a gateway Deployment, as base/gateway.yaml starts it: the downward API fills
// --admin-advertise with the pod IP and --zone with the pod's zone label (docs/kubernetes.md,
// "Gateway replicas"). Loopback 127.0.34.x stands for the pod's addresses.
let mesh: TestMesh;
let west: TestCluster;
let etcd: Etcd3;
const gateways: ChildProcess[] = [];

beforeAll(async () => {
  mesh = await TestMesh.create();
  const ca = await mesh.caInit('ca', 'mesh.test');
  west = await mesh.join('west', { index: 34, ca, region: 'us-west', zones: ['a', 'b'] });
  etcd = rawEtcd(mesh.etcd);
  await mesh.startFederation('west');
}, 120_000);

afterAll(async () => {
  for (const g of gateways) g.kill('SIGKILL');
  etcd?.close();
  await mesh?.close();
});

async function startReplica(flags: string[]): Promise<{ adminPort: number }> {
  const listenPort = await freePort('127.0.34.1');
  const adminPort = await freePort('127.0.34.1');
  const config = parse(readFileSync(west.config, 'utf8'));
  config.gateways = [{ id: 'gw-1', address: `127.0.34.1:${listenPort}`, admin: `127.0.34.1:${adminPort}` }];
  writeFileSync(west.config, stringify(config));
  const gateway = spawn(process.execPath, [isthmusBin, 'gateway', '--config', west.config, ...flags.map((f) => f.replace('ADMIN_PORT', String(adminPort)))], { stdio: 'ignore' });
  gateways.push(gateway);
  await waitFor(async () => (await fetch(`http://127.0.34.1:${adminPort}/readyz`).catch(() => undefined))?.status === 200, 30_000, 'the gateway ready');
  return { adminPort };
}

const record = async () => (await etcd.get(keys.gateway('west', 'gw-1')).json()) as { admin?: string; zone?: string } | null;

describe('a gateway replica publishes its own admin address and zone', () => {
  test('--admin-advertise (the pod IP) and --zone (the pod\'s zone label) are what its record says', async () => {
    const { adminPort } = await startReplica(['--admin-advertise', '127.0.34.7:ADMIN_PORT', '--zone', 'b']);
    await waitFor(async () => (await record())?.admin === `127.0.34.7:${adminPort}` && (await record()) !== null, 20_000, 'the gateway record with the advertised admin address');
    expect(await record()).toMatchObject({ admin: `127.0.34.7:${adminPort}`, zone: 'b' });
    gateways.pop()?.kill('SIGTERM');
  });

  test('empty values (a pod without the zone label) are ignored: the entry\'s admin address and the cluster\'s first zone', async () => {
    const { adminPort } = await startReplica(['--admin-advertise', '', '--zone', '']);
    await waitFor(async () => (await record())?.admin === `127.0.34.1:${adminPort}`, 20_000, 'the gateway record with the admin listen address');
    expect(await record()).toMatchObject({ admin: `127.0.34.1:${adminPort}`, zone: 'a' });
  });
});
