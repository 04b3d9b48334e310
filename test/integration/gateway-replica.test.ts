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
  // A long lease: a record that goes within seconds was withdrawn, not left to expire.
  west = await mesh.join('west', { index: 34, ca, region: 'us-west', zones: ['a', 'b'], leaseTtl: '30s' });
  etcd = rawEtcd(mesh.etcd);
  await mesh.startFederation('west');
}, 120_000);

afterAll(async () => {
  for (const g of gateways) g.kill('SIGKILL');
  etcd?.close();
  await mesh?.close();
});

async function startReplica(flags: string[], logs?: string[], id = 'gw-1'): Promise<{ adminPort: number; gateway: ChildProcess }> {
  const listenPort = await freePort('127.0.34.1');
  const adminPort = await freePort('127.0.34.1');
  const config = parse(readFileSync(west.config, 'utf8'));
  config.gateways = [{ id, address: `127.0.34.1:${listenPort}`, admin: `127.0.34.1:${adminPort}` }];
  writeFileSync(west.config, stringify(config));
  const gateway = spawn(process.execPath, [isthmusBin, 'gateway', '--config', west.config, ...flags.map((f) => f.replace('ADMIN_PORT', String(adminPort)))], { stdio: ['ignore', 'ignore', logs ? 'pipe' : 'ignore'] });
  // Its log: JSON lines on stderr.
  gateway.stderr?.on('data', (c: Buffer) => logs?.push(c.toString()));
  gateways.push(gateway);
  await waitFor(async () => (await fetch(`http://127.0.34.1:${adminPort}/readyz`).catch(() => undefined))?.status === 200, 30_000, 'the gateway ready');
  return { adminPort, gateway };
}

const record = async (id = 'gw-1') => (await etcd.get(keys.gateway('west', id)).json()) as { admin?: string; zone?: string } | null;

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

  test('SIGTERM: the replica withdraws its record at once (the lease is 30 s), drains and exits 0', async () => {
    // An id of its own: the replicas above reported gw-1 within its TTL, and the record stays for them.
    const logs: string[] = [];
    const { adminPort, gateway } = await startReplica(['--admin-advertise', '', '--zone', ''], logs, 'gw-2');
    await waitFor(async () => (await record('gw-2'))?.admin === `127.0.34.1:${adminPort}`, 20_000, 'the replica\'s record');
    const exited = new Promise<number | null>((resolve) => gateway.once('exit', (code) => resolve(code)));
    gateway.kill('SIGTERM');
    expect(await exited).toBe(0);
    await waitFor(async () => (await record('gw-2')) === null, 5_000, 'the record withdrawn, long before its lease would end');
    const lines = logs.join('').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { msg: string });
    expect(lines.map((l) => l.msg)).toEqual(expect.arrayContaining([
      expect.stringContaining('record withdrawn'),
      expect.stringContaining('drained: every connection through the gateway ended'),
    ]));
  });
});
