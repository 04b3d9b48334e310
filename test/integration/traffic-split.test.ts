import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { keys } from '../../src/core/keys.js';
import { startDevMesh, type DevMesh } from '../../src/dev/dev-mesh.js';
import { FederationStore } from '../../src/federation/store.js';
import { isthmus, isthmusOk, waitFor } from '../helpers/cli.js';
import { viaProxy } from '../helpers/proxy.js';

// Two clusters on 127.0.181.1 / 127.0.182.1; hello runs as hello (instances labelled version
// v1 and v2), hello-v1 and hello-v2 in both. Policies are applied with the real CLI and reach
// the client sidecars of both clusters through their federations.
let mesh: DevMesh;
let stateDir: string;
let store: FederationStore;
const env = () => ({ ISTHMUS_ETCD: mesh.file.etcd });
const proxyOf = (cluster: string) => mesh.file.clusters[cluster]!.client.proxy;
const hello = 'http://hello.demo.mesh/';

async function apply(name: string, yaml: string): Promise<void> {
  const file = join(stateDir, `${name}.yaml`);
  writeFileSync(file, yaml);
  await isthmusOk(['policy', 'apply', '-f', file], env());
}

const route = (rules: string) => `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: hello-canary, namespace: demo }
spec:
  parentRefs: [{ group: "", kind: Service, name: hello }]
  rules:
${rules}`;
const canary = (v1: number, v2: number) => route(`    - matches: [{ headers: [{ name: x-user-group, value: beta }] }]
      backendRefs: [{ name: hello-v2 }]
    - backendRefs: [{ name: hello-v1, weight: ${v1} }, { name: hello-v2, weight: ${v2} }]
`);

/** `count` requests one after another from `cluster`'s client; what answered each (service, instance) and its status. */
async function send(cluster: string, count: number, headers: Record<string, string> = {}): Promise<{ status: number; service?: string; instance?: string }[]> {
  const out: { status: number; service?: string; instance?: string }[] = [];
  for (let i = 0; i < count; i += 1) {
    const res = await viaProxy(proxyOf(cluster), hello, 5000, headers);
    out.push({ status: res.status, service: res.body?.service, instance: res.body?.instance });
  }
  return out;
}

/** Until `cluster`'s client gets `service` for a request: how long that took, in ms. */
async function until(cluster: string, service: string, headers: Record<string, string> = {}): Promise<number> {
  const started = Date.now();
  await waitFor(async () => ((await viaProxy(proxyOf(cluster), hello, 5000, headers)).body?.service === service ? true : undefined), 10_000, `${cluster} answered by ${service}`);
  return Date.now() - started;
}

beforeAll(async () => {
  stateDir = mkdtempSync(join(tmpdir(), 'isthmus-split-'));
  mesh = await startDevMesh({ clusters: ['east', 'west'], stateDir, trustDomain: 'dev.test', hostBase: 181, versions: true, progress: () => undefined });
  store = await FederationStore.connect({ endpoints: [mesh.file.etcd] });
}, 120_000);

afterAll(async () => {
  await store?.close();
  await mesh?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

describe('traffic splits through real sidecars', () => {
  test('without a policy hello answers as hello', async () => {
    const answers = await send('east', 20);
    expect(answers.every((a) => a.status === 200 && a.service === 'hello')).toBe(true);
  });

  test('90/10: the share sent to v2 lands within a 4.5-sigma binomial bound; beta users always get v2, in both clusters', async () => {
    await apply('canary', canary(90, 10));
    // Every cluster's sidecars see the policy within seconds of the apply.
    for (const cluster of ['east', 'west']) expect(await until(cluster, 'hello-v2', { 'x-user-group': 'beta' })).toBeLessThan(5000);

    const n = 600;
    const answers = await send('east', n);
    expect(answers.filter((a) => a.status !== 200)).toEqual([]);
    const v2 = answers.filter((a) => a.service === 'hello-v2').length;
    expect(answers.filter((a) => a.service !== 'hello-v1' && a.service !== 'hello-v2')).toEqual([]);
    // Binomial(600, 0.1): sd = sqrt(600 * 0.1 * 0.9) ≈ 7.3 requests; 4.5 sd ≈ 33 (5.5 points).
    // A correct split falls outside about once in 150,000 runs; 0% or 50% is far outside.
    const sd = Math.sqrt(n * 0.1 * 0.9);
    expect(Math.abs(v2 - n * 0.1)).toBeLessThanOrEqual(4.5 * sd);

    for (const cluster of ['east', 'west']) {
      const beta = await send(cluster, 50, { 'x-user-group': 'beta' });
      expect(beta.map((a) => `${a.status} ${a.service}`)).toEqual(Array(50).fill('200 hello-v2'));
    }
  }, 60_000);

  test('blue-green: 0/100 sends everything to v2, and flipping it back sends everything to v1', async () => {
    await apply('green', canary(0, 100));
    await until('east', 'hello-v2');
    expect(new Set((await send('east', 100)).map((a) => `${a.status} ${a.service}`))).toEqual(new Set(['200 hello-v2']));
    await apply('blue', canary(100, 0));
    await until('east', 'hello-v1');
    expect(new Set((await send('east', 100)).map((a) => `${a.status} ${a.service}`))).toEqual(new Set(['200 hello-v1']));
  }, 60_000);

  test('a ServiceSubset backend reaches only the instances with its labels (the caller\'s own cluster)', async () => {
    await apply('subset', `apiVersion: isthmus.dev/v1alpha1
kind: ServiceSubset
metadata: { name: hello-labelled-v2, namespace: demo }
spec: { service: hello, labels: { version: v2 } }
---
${route(`    - backendRefs: [{ group: isthmus.dev, kind: ServiceSubset, name: hello-labelled-v2 }]
`)}`);
    await waitFor(async () => ((await viaProxy(proxyOf('east'), hello)).body?.instance === 'hello-east-2' ? true : undefined), 10_000, 'the subset route in east');
    const answers = await send('east', 40);
    expect(new Set(answers.map((a) => `${a.status} ${a.service} ${a.instance}`))).toEqual(new Set(['200 hello hello-east-2']));
  }, 60_000);

  test('a rule that matches nothing answers 404 with its code', async () => {
    await apply('exact', route(`    - matches: [{ path: { type: Exact, value: /only } }]
      backendRefs: [{ name: hello-v2 }]
`));
    const res = await waitFor(async () => {
      const r = await viaProxy(proxyOf('east'), hello);
      return r.status === 404 ? r : undefined;
    }, 10_000, 'a 404 for an unmatched path');
    expect(res.value.body?.error?.code).toBe('ISTHMUS_ERR_DATAPLANE_NO_MATCHING_RULE');
    expect((await viaProxy(proxyOf('east'), 'http://hello.demo.mesh/only')).body?.service).toBe('hello-v2');
  }, 30_000);

  test('a malformed HTTPRoute is refused with the field path and changes nothing; deleting the policy returns to plain routing', async () => {
    const before = await store.get(keys.policy('httproute', 'demo', 'hello-canary'));
    const file = join(stateDir, 'bad.yaml');
    writeFileSync(file, canary(90, 10).replace('weight: 90', 'weight: ninety'));
    const res = await isthmus(['policy', 'apply', '-f', file], env());
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/\/spec\/rules\/1\/backendRefs\/0\/weight: must be integer/);
    expect((await store.get(keys.policy('httproute', 'demo', 'hello-canary')))?.modRevision).toBe(before?.modRevision);

    await isthmusOk(['policy', 'delete', 'httproute', 'demo/hello-canary'], env());
    await until('east', 'hello');
    await until('west', 'hello');
    const answers = await send('east', 30);
    expect(answers.every((a) => a.status === 200 && a.service === 'hello')).toBe(true);
  }, 30_000);
});
