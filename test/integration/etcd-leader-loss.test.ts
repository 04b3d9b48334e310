import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parse } from 'yaml';
import { keys } from '../../src/core/keys.js';
import { startDevMesh, type DevMesh } from '../../src/dev/dev-mesh.js';
import { waitFor } from '../helpers/cli.js';
import { rawEtcd, startEtcdCluster, type TestEtcdCluster } from '../helpers/etcd.js';
import { killProcess, printFigure, trafficFigure } from '../helpers/faults.js';
import { PolicyMarker } from '../helpers/policy-marker.js';
import { steadyTraffic } from '../helpers/proxy.js';

// Two clusters on 127.0.174.1 (east) and 127.0.175.1 (west); ledger runs only in west, so every
// request from east's client crosses clusters. etcd is a cluster of three members on
// 127.0.179.1, and every federation and command is given all three client URLs.
let etcd: TestEtcdCluster;
let mesh: DevMesh;
let stateDir: string;
let marker: PolicyMarker;
const eastProxy = () => mesh.file.clusters.east!.client.proxy;

beforeAll(async () => {
  stateDir = mkdtempSync(join(tmpdir(), 'isthmus-etcd-leader-'));
  etcd = await startEtcdCluster({ host: '127.0.179.1' });
  mesh = await startDevMesh({ clusters: ['east', 'west'], stateDir, trustDomain: 'dev.test', hostBase: 174, etcd: etcd.url, etcdTls: etcd.tls, gateways: 1, progress: () => undefined });
  marker = new PolicyMarker({ etcd, dir: stateDir, proxy: eastProxy, service: 'ledger', namespace: 'demo' });
}, 180_000);

afterAll(async () => {
  await mesh?.stop();
  await etcd?.destroy();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

/** east's heartbeat as etcd holds it now, read from `member`. */
async function eastHeartbeat(url: string): Promise<number> {
  const client = rawEtcd({ url, tls: etcd.tls });
  try {
    const alive = await client.get(keys.alive('east')).json() as { heartbeatAt: string } | null;
    return alive ? Date.parse(alive.heartbeatAt) : 0;
  } finally {
    client.close();
  }
}

describe('a 3-member etcd loses its leader under steady cross-cluster traffic', () => {
  test('every cluster is configured with all three members', () => {
    for (const cluster of Object.values(mesh.file.clusters)) {
      const config = parse(readFileSync(cluster.config, 'utf8')) as { etcd: { endpoints: string[] } };
      expect(config.etcd.endpoints).toEqual(etcd.members.map((m) => m.url));
    }
  });

  test('the leader is SIGKILLed: no request fails, a policy apply succeeds again and reaches east\'s client, the federations keep writing', async () => {
    await marker.apply('before');
    await waitFor(async () => marker.honoured('before'), 15_000, 'the marker written before the leader was killed at east\'s client');

    const traffic = steadyTraffic(eastProxy(), 'http://ledger.demo.mesh/');
    await new Promise((r) => setTimeout(r, 2000));
    const leader = await etcd.leader();
    const killedAt = Date.now();
    await killProcess(leader.pid!);

    // The same command a user runs, with all three URLs, until it succeeds.
    let attempts = 0;
    await waitFor(async () => {
      attempts += 1;
      await marker.apply('after');
      return true;
    }, 30_000, 'a policy apply after the leader was killed');
    const writeResumedMs = Date.now() - killedAt;
    const converged = await waitFor(async () => marker.honoured('after'), 30_000, 'the policy written after the leader was killed at east\'s client').catch((err: Error) => {
      throw new Error(`${err.message}; the last answer: ${marker.lastAnswer}`);
    });
    const newLeader = await etcd.leader();
    // The federation's heartbeat (a write under its lease every 5 s) goes on after the kill.
    const survivor = etcd.members.find((m) => m.pid !== undefined)!;
    await waitFor(async () => ((await eastHeartbeat(survivor.url)) > killedAt + 1000 ? true : undefined), 20_000, 'east\'s federation heartbeat written after the kill');
    await new Promise((r) => setTimeout(r, 2000));
    const results = await traffic.stop();

    printFigure(trafficFigure('etcd leader killed (3 members)', results, killedAt, {
      writeResumed: `${writeResumedMs}ms`, applyAttempts: attempts, policyAtClient: `${converged.ms}ms`,
    }));
    expect(newLeader.name).not.toBe(leader.name);
    expect(results.filter((r) => !r.ok).slice(0, 5)).toEqual([]);
    expect(results.filter((r) => r.at >= killedAt).length).toBeGreaterThan(10);
    expect(results.every((r) => r.cluster === 'west')).toBe(true);
    expect(await marker.honoured('before')).toBe(false);
  }, 180_000);
});
