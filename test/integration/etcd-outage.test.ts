import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startDevMesh, type DevMesh } from '../../src/dev/dev-mesh.js';
import { waitFor } from '../helpers/cli.js';
import { rawEtcd, startEtcd, type TestEtcd } from '../helpers/etcd.js';
import { longFaults, outage, printFigure, trafficFigure } from '../helpers/faults.js';
import { PolicyMarker } from '../helpers/policy-marker.js';
import { steadyTraffic } from '../helpers/proxy.js';

// Two clusters on 127.0.135.1 (east) and 127.0.136.1 (west); ledger runs only in west, so every
// request from east's client to it crosses clusters through west's gateway. etcd is ours, so
// that the test can stop it and start it again on the same ports and data.
let etcd: TestEtcd;
let mesh: DevMesh;
let stateDir: string;
const eastProxy = () => mesh.file.clusters.east!.client.proxy;
/** 20 s in CI; the 60 s with ISTHMUS_FAULT_LONG=1. */
const outageMs = longFaults ? 60_000 : 20_000;

let marker: PolicyMarker;

async function allKeys(): Promise<string[]> {
  const client = rawEtcd(etcd);
  try {
    return Object.keys(await client.getAll().strings()).sort();
  } finally {
    client.close();
  }
}

beforeAll(async () => {
  stateDir = mkdtempSync(join(tmpdir(), 'isthmus-etcd-outage-'));
  etcd = await startEtcd();
  mesh = await startDevMesh({ clusters: ['east', 'west'], stateDir, trustDomain: 'dev.test', hostBase: 135, etcd: etcd.url, etcdTls: etcd.tls, gateways: 1, progress: () => undefined });
  marker = new PolicyMarker({ etcd, dir: stateDir, proxy: eastProxy, service: 'ledger', namespace: 'demo' });
}, 120_000);

afterAll(async () => {
  await mesh?.stop();
  await etcd?.destroy();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

describe('etcd stopped under steady cross-cluster traffic', () => {
  let backAt = 0;

  test(`no request fails while etcd is down (${outageMs / 1000} s); after it returns every key written before is there and still applies`, async () => {
    await marker.apply('before');
    await waitFor(async () => marker.honoured('before'), 15_000, 'the marker written before the outage at east\'s client');
    const before = await allKeys();

    const traffic = steadyTraffic(eastProxy(), 'http://ledger.demo.mesh/');
    const stoppedAt = Date.now();
    await outage(outageMs, () => etcd.stop(), () => etcd.start());
    backAt = Date.now();
    await new Promise((r) => setTimeout(r, 3000));
    const results = await traffic.stop();

    printFigure(trafficFigure(`etcd stopped ${outageMs / 1000}s`, results, stoppedAt));
    expect(results.filter((r) => !r.ok).slice(0, 5)).toEqual([]);
    expect(results.filter((r) => r.at >= stoppedAt && r.at < backAt).length).toBeGreaterThan(0);
    expect(results.every((r) => r.cluster === 'west')).toBe(true);

    const after = new Set(await allKeys());
    expect(before.filter((k) => !after.has(k))).toEqual([]);
    expect(await marker.honoured('before')).toBe(true);
  }, 180_000);

  test('a policy written after etcd returns reaches east\'s client sidecar', async () => {
    expect(backAt).toBeGreaterThan(0);
    await marker.apply('after');
    const converged = await waitFor(async () => marker.honoured('after'), 30_000, 'a policy written after the outage at east\'s client').catch((err: Error) => {
      throw new Error(`${err.message}; the last answer: ${marker.lastAnswer}`);
    });
    printFigure({ scenario: `etcd stopped ${outageMs / 1000}s, convergence`, sent: 0, failed: 0, extra: { convergedAfterReturn: `${Date.now() - backAt}ms`, writeToSidecar: `${converged.ms}ms` } });
  }, 60_000);
});
