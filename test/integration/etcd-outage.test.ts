import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startDevMesh, type DevMesh } from '../../src/dev/dev-mesh.js';
import { isthmusOk, waitFor } from '../helpers/cli.js';
import { etcdEnv, rawEtcd, startEtcd, type TestEtcd } from '../helpers/etcd.js';
import { longFaults, outage, printFigure, trafficFigure } from '../helpers/faults.js';
import { steadyTraffic, viaProxy } from '../helpers/proxy.js';

// Two clusters on 127.0.135.1 (east) and 127.0.136.1 (west); ledger runs only in west, so every
// request from east's client to it crosses clusters through west's gateway. etcd is ours, so
// that the test can stop it and start it again on the same ports and data.
let etcd: TestEtcd;
let mesh: DevMesh;
let stateDir: string;
const eastProxy = () => mesh.file.clusters.east!.client.proxy;
/** 20 s in CI; the 60 s with ISTHMUS_FAULT_LONG=1. */
const outageMs = longFaults ? 60_000 : 20_000;

/**
 * Applies the FaultInjection `marker`, which aborts (299) requests to ledger carrying
 * `x-policy-sync: value`: a record written through etcd whose arrival at east's client one
 * request shows. Always the same document, replaced: of two FaultInjections for one service the
 * older one wins (docs/traffic-policy.md), so a second marker would never show.
 */
async function applyMarker(value: string): Promise<void> {
  const file = join(stateDir, `marker-${value}.yaml`);
  writeFileSync(file, `apiVersion: isthmus.dev/v1alpha1
kind: FaultInjection
metadata: { name: marker, namespace: demo }
spec: { service: ledger, abort: { status: 299, percent: 100 }, headers: [{ name: x-policy-sync, value: "${value}" }] }
`);
  await isthmusOk(['policy', 'apply', '-f', file], etcdEnv(etcd));
}
let lastAnswer = '';
const markerHonoured = async (value: string) => {
  const res = await viaProxy(eastProxy(), 'http://ledger.demo.mesh/', 5000, { 'x-policy-sync': value });
  lastAnswer = `${res.status} ${res.text.slice(0, 200)}`;
  return res.status === 299;
};

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
}, 120_000);

afterAll(async () => {
  await mesh?.stop();
  await etcd?.destroy();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

describe('etcd stopped under steady cross-cluster traffic', () => {
  let backAt = 0;

  test(`no request fails while etcd is down (${outageMs / 1000} s); after it returns every key written before is there and still applies`, async () => {
    await applyMarker('before');
    await waitFor(async () => markerHonoured('before'), 15_000, 'the marker written before the outage at east\'s client');
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
    expect(await markerHonoured('before')).toBe(true);
  }, 180_000);

  test('a policy written after etcd returns reaches east\'s client sidecar', async () => {
    expect(backAt).toBeGreaterThan(0);
    await applyMarker('after');
    const converged = await waitFor(async () => markerHonoured('after'), 30_000, 'a policy written after the outage at east\'s client').catch((err: Error) => {
      throw new Error(`${err.message}; the last answer: ${lastAnswer}`);
    });
    printFigure({ scenario: `etcd stopped ${outageMs / 1000}s, convergence`, sent: 0, failed: 0, extra: { convergedAfterReturn: `${Date.now() - backAt}ms`, writeToSidecar: `${converged.ms}ms` } });
  }, 60_000);
});
