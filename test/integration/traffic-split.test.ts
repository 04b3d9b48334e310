import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import WebSocket from 'ws';
import { keys } from '../../src/core/keys.js';
import { startDevMesh, type DevMesh } from '../../src/dev/dev-mesh.js';
import { FederationStore } from '../../src/federation/store.js';
import { isthmus, isthmusOk, waitFor } from '../helpers/cli.js';
import { viaProxy } from '../helpers/proxy.js';
import { etcdEnv, storeOptions } from '../helpers/etcd.js';

// Two clusters on 127.0.181.1 / 127.0.182.1; hello runs as hello (instances labelled version
// v1 and v2), hello-v1 and hello-v2 in both. Policies are applied with the real CLI and reach
// the client sidecars of both clusters through their federations.
let mesh: DevMesh;
let stateDir: string;
let store: FederationStore;
const env = () => (etcdEnv(mesh.file));
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
  store = await FederationStore.connect(storeOptions(mesh.file));
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

    // isthmus explain shows the rules in force and the split the requests took.
    const explained = await isthmusOk(['explain', 'hello', '-n', 'demo', '--sidecar', mesh.file.clusters.east!.client.admin]);
    expect(explained.stdout).toContain('HTTPRoute demo/hello-canary rule 1: every request → demo/hello-v1 90% / demo/hello-v2 10%');
    expect(explained.stdout).toContain('HTTPRoute demo/hello-canary rule 0: header x-user-group: beta → demo/hello-v2 100%');
    const live = /live split \((\d+) requests since the policies arrived\): demo\/hello-v1 ([\d.]+)% \/ demo\/hello-v2 ([\d.]+)%/.exec(explained.stdout);
    expect(Number(live?.[1])).toBeGreaterThanOrEqual(n);
    expect(Math.abs(Number(live?.[3]) - 10)).toBeLessThanOrEqual(6);

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

/** A WebSocket to hello through `cluster`'s outbound proxy (origin-form, by Host): the 101's x-sample-where, or the refusal's status and headers. */
async function openSocket(cluster: string, headers: Record<string, string> = {}): Promise<{ where?: string; status?: number; headers?: Record<string, string | string[] | undefined> }> {
  const [host, port] = proxyOf(cluster).split(':');
  const ws = new WebSocket('ws://hello.demo.mesh/ws', { headers, createConnection: () => netConnect(Number(port), host as string) });
  return new Promise((resolve, reject) => {
    ws.once('upgrade', (res) => {
      const where = String(res.headers['x-sample-where'] ?? '');
      ws.once('open', () => {
        ws.once('message', (data) => {
          ws.close();
          resolve(data.toString() === 'ping' ? { where } : { where: `${where} (no echo)` });
        });
        ws.send('ping');
      });
    });
    ws.once('unexpected-response', (_req, res) => {
      res.resume();
      resolve({ status: res.statusCode, headers: res.headers });
      ws.terminate();
    });
    ws.on('error', reject);
  });
}

/** CONNECT hello.demo.mesh:80 through `cluster`'s proxy, then GET / inside the tunnel: which service answered, or the refusal's status. */
function connectThrough(cluster: string, headers: Record<string, string> = {}): Promise<{ status: number; service?: string }> {
  const [host, port] = proxyOf(cluster).split(':');
  return new Promise((resolve, reject) => {
    const socket = netConnect(Number(port), host as string, () => {
      socket.write(`CONNECT hello.demo.mesh:80 HTTP/1.1\r\nHost: hello.demo.mesh:80\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`);
    });
    let buffered = '';
    let tunnelled = false;
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      if (!tunnelled) {
        const end = buffered.indexOf('\r\n\r\n');
        if (end < 0) return;
        const status = Number(buffered.slice(9, 12));
        if (status !== 200) {
          socket.destroy();
          return resolve({ status });
        }
        tunnelled = true;
        buffered = buffered.slice(end + 4);
        socket.write('GET / HTTP/1.1\r\nHost: hello.demo.mesh\r\nConnection: close\r\n\r\n');
      }
    });
    socket.once('end', () => {
      const body = buffered.slice(buffered.indexOf('\r\n\r\n') + 4);
      resolve({ status: Number(buffered.slice(9, 12)), service: (JSON.parse(body) as { service?: string }).service });
    });
    socket.once('error', reject);
    setTimeout(() => reject(new Error('no answer through the tunnel')), 10_000).unref();
  });
}

describe('WebSocket upgrades and CONNECT tunnels take the policy step', () => {
  const doc = (kind: string, name: string, spec: string) => `apiVersion: isthmus.dev/v1alpha1\nkind: ${kind}\nmetadata: { name: ${name}, namespace: demo }\nspec: ${spec}\n`;

  test('the split chooses a WebSocket\'s backend, and a header match pins a beta user\'s socket to v2, in both clusters', async () => {
    await apply('ws-v1', canary(100, 0));
    for (const cluster of ['east', 'west']) {
      await waitFor(async () => ((await openSocket(cluster)).where?.includes('/hello-v1-') ? true : undefined), 10_000, `${cluster}'s sockets to hello-v1`);
      const sockets = await Promise.all(Array.from({ length: 10 }, () => openSocket(cluster)));
      expect(sockets.map((s) => s.where?.replace(/-\d+$/, ''))).toEqual(Array(10).fill(`${cluster}/hello-v1-${cluster}`));
      const beta = await Promise.all(Array.from({ length: 10 }, () => openSocket(cluster, { 'x-user-group': 'beta' })));
      expect(beta.map((s) => s.where?.replace(/-\d+$/, ''))).toEqual(Array(10).fill(`${cluster}/hello-v2-${cluster}`));
    }
  }, 60_000);

  test('a CONNECT tunnel goes where the split sends it', async () => {
    await apply('connect-v2', canary(0, 100));
    await waitFor(async () => ((await connectThrough('east')).service === 'hello-v2' ? true : undefined), 10_000, 'a tunnel to hello-v2');
    const tunnels = await Promise.all(Array.from({ length: 10 }, () => connectThrough('east')));
    expect(tunnels).toEqual(Array(10).fill({ status: 200, service: 'hello-v2' }));
  }, 30_000);

  test('a fault aborts the upgrade request with its status, and a rate limit refuses it with 429 and retry-after', async () => {
    await apply('ws-fault', `${canary(100, 0)}---\n${doc('FaultInjection', 'hello-chaos', '{ service: hello, abort: { status: 418, percent: 100 }, headers: [{ name: x-chaos, value: "on" }] }')}`);
    const aborted = await waitFor(async () => {
      const s = await openSocket('east', { 'x-chaos': 'on' });
      return s.status === 418 ? s : undefined;
    }, 10_000, 'an aborted upgrade');
    expect(aborted.value.headers?.['x-isthmus-error']).toBe('ISTHMUS_ERR_DATAPLANE_FAULT_INJECTED');
    expect((await connectThrough('east', { 'x-chaos': 'on' })).status).toBe(418);
    expect((await openSocket('east')).where).toMatch(/^east\/hello-v1-east-/);

    // The limit is hello-v1's, where the route sends the upgrades: its inbound (one instance in east) refuses them.
    await apply('ws-limit', doc('LocalRateLimit', 'hello-v1-limit', '{ service: hello-v1, requestsPerSecond: 0.2, burst: 2 }'));
    const limited = await waitFor(async () => {
      const s = await openSocket('east');
      return s.status === 429 ? s : undefined;
    }, 10_000, 'a rate-limited upgrade');
    expect(limited.value.headers?.['x-isthmus-error']).toBe('ISTHMUS_ERR_DATAPLANE_RATE_LIMITED');
    expect(Number(limited.value.headers?.['retry-after'])).toBeGreaterThanOrEqual(1);
    expect((await connectThrough('east')).status).toBe(429);
    for (const [kind, name] of [['faultinjection', 'hello-chaos'], ['localratelimit', 'hello-v1-limit'], ['httproute', 'hello-canary']]) {
      await isthmusOk(['policy', 'delete', kind as string, `demo/${name}`], env());
    }
    await waitFor(async () => ((await openSocket('east')).where?.startsWith('east/hello-east-') ? true : undefined), 10_000, 'plain routing again');
  }, 60_000);
});
