import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { connect } from 'node:http2';
import { startDevMesh, type DevMesh } from '../../src/dev/dev-mesh.js';
import { isthmusOk, waitFor } from '../helpers/cli.js';
import { viaProxy, type ProxiedResponse } from '../helpers/proxy.js';
import { etcdEnv } from '../helpers/etcd.js';

// Two clusters on 127.0.211.1 / 127.0.212.1, one gateway each; ledger runs only in west, hello
// in both. Policies are applied and deleted with the real CLI and reach east's client sidecar
// through its federation; what the destinations saw is read from their sidecars' /metrics.
let mesh: DevMesh;
let stateDir: string;
const env = () => (etcdEnv(mesh.file));
const proxy = () => mesh.file.clusters.east!.client.proxy;
const clientAdmin = () => mesh.file.clusters.east!.client.admin;

let syncs = 0;

/**
 * Applies `yaml` with the CLI, with one more document in the same transaction: a FaultInjection
 * of ledger for requests carrying a fresh x-policy-sync value. Once such a request is aborted
 * (299) at east's client, the snapshot holding every document of the file has reached it.
 */
async function apply(name: string, yaml: string): Promise<void> {
  const file = join(stateDir, `${name}.yaml`);
  syncs += 1;
  writeFileSync(file, `${yaml}---
${doc('FaultInjection', 'sync', `{ service: ledger, abort: { status: 299, percent: 100 }, headers: [{ name: x-policy-sync, value: "${syncs}" }] }`)}`);
  await isthmusOk(['policy', 'apply', '-f', file], env());
  const value = String(syncs);
  await waitFor(async () => (await viaProxy(proxy(), 'http://ledger.demo.mesh/', 5000, { 'x-policy-sync': value })).status === 299, 10_000, `${name} at east's client`);
}
async function remove(kind: string, name: string): Promise<void> {
  await isthmusOk(['policy', 'delete', kind, `demo/${name}`], env());
  await apply(`after-${kind}`, '');
}
const doc = (kind: string, name: string, spec: string) => `apiVersion: isthmus.dev/v1alpha1\nkind: ${kind}\nmetadata: { name: ${name}, namespace: demo }\nspec: ${spec}\n`;

async function metric(admin: string, name: string, labels: Record<string, string>): Promise<number> {
  const text = await (await fetch(`http://${admin}/metrics`)).text();
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

/** Requests that reached the instances of `service` (every cluster), as their sidecars counted them. */
async function reached(service: string): Promise<number> {
  let total = 0;
  for (const w of mesh.workloads.filter((x) => x.spec.service === service)) {
    total += await metric(`${w.spec.host}:${w.spec.adminPort}`, 'isthmus_inbound_requests_total', {});
  }
  return total;
}

const policyActions = (action: string) => metric(clientAdmin(), 'isthmus_policy_actions_total', { action });

async function timed(url: string): Promise<ProxiedResponse & { ms: number }> {
  const started = performance.now();
  const res = await viaProxy(proxy(), url, 10_000);
  return { ...res, ms: performance.now() - started };
}

/** One h2c request (prior knowledge, as gRPC clients send) to east's proxy port: its response head. */
function viaH2(authority: string, headers: Record<string, string> = {}): Promise<Record<string, string | string[] | number | undefined>> {
  return new Promise((resolve, reject) => {
    const session = connect(`http://${proxy()}`);
    session.on('error', reject);
    const stream = session.request({ ':method': 'POST', ':path': '/', ':authority': authority, ...headers }, { endStream: true });
    stream.on('response', (head) => {
      stream.resume();
      stream.on('end', () => { session.close(); resolve(head as Record<string, string>); });
    });
    stream.on('error', reject);
  });
}

beforeAll(async () => {
  stateDir = mkdtempSync(join(tmpdir(), 'isthmus-resilience-'));
  mesh = await startDevMesh({ clusters: ['east', 'west'], stateDir, trustDomain: 'dev.test', hostBase: 211, gateways: 1, progress: () => undefined });
}, 120_000);

afterAll(async () => {
  await mesh?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

describe('resilience policies through real sidecars', () => {
  test('an OutlierDetection of consecutive5xx 1000 keeps a failing endpoint in; without a RetryPolicy a 503 is not retried; with one, a destination failing every request sees at most the budget\'s share of retries', async () => {
    const failing = 'http://ledger.demo.mesh/status/503';
    // ledger has one endpoint seen from east (west's gateway): the defaults eject it after 5 503s.
    await apply('outliers', doc('OutlierDetection', 'ledger-outliers', '{ service: ledger, consecutive5xx: 1000 }'));
    const ejections = await metric(clientAdmin(), 'isthmus_endpoint_ejections_total', {});
    let before = await reached('ledger');
    for (let i = 0; i < 10; i += 1) expect((await viaProxy(proxy(), failing)).status).toBe(503);
    expect(await reached('ledger') - before).toBe(10);
    expect(await metric(clientAdmin(), 'isthmus_endpoint_ejections_total', {})).toBe(ejections);

    await apply('retries', doc('RetryPolicy', 'ledger-retries', '{ service: ledger, attempts: 3, retryOn: [5xx], budget: { percent: 20, minRetriesPerSecond: 1 } }'));

    const n = 150;
    const started = Date.now();
    before = await reached('ledger');
    const deniedBefore = await policyActions('retry_budget_exhausted');
    const answers: ProxiedResponse[] = [];
    for (let i = 0; i < n; i += 1) answers.push(await viaProxy(proxy(), failing));
    const seconds = (Date.now() - started) / 1000;
    const attempts = (await reached('ledger')) - before;
    // Every request was answered with the destination's own 503, retried or not: a retry the
    // budget refuses leaves the original answer.
    expect(answers.every((a) => a.status === 503 && a.body?.service === 'ledger' && a.headers['x-isthmus-error'] === undefined)).toBe(true);
    // Budget: retries ≤ 20% of requests over a 10 s window, plus 1 a second of it (the floor).
    const floor = 1 * (10 + Math.ceil(seconds));
    expect(attempts).toBeLessThanOrEqual(Math.floor(n * 1.2) + floor);
    expect(attempts).toBeGreaterThan(n); // some were retried
    expect(attempts).toBeLessThan(2 * n); // and not each of them, as attempts: 3 alone would
    expect(await policyActions('retry_budget_exhausted') - deniedBefore).toBeGreaterThan(0);
    await remove('retrypolicy', 'ledger-retries');
  }, 120_000);

  test('a CircuitBreaker of maxPendingRequests 1 and maxRequests 1 refuses the excess over a slow destination at once with 503 CIRCUIT_OPEN, and recovers', async () => {
    await apply('breaker', doc('CircuitBreaker', 'ledger-breaker', '{ service: ledger, maxPendingRequests: 1, maxRequests: 1 }'));
    const slow = 'http://ledger.demo.mesh/?delay=1500';
    const burst = async () => {
      const order: string[] = [];
      const all = await Promise.all(Array.from({ length: 6 }, async () => {
        const res = await timed(slow);
        order.push(res.status === 200 ? 'slow' : 'refused');
        return res;
      }));
      return { all, order };
    };
    const first = await burst();
    const refused = first.all.filter((r) => r.status !== 200);
    expect(first.all.filter((r) => r.status === 200)).toHaveLength(1);
    expect(refused).toHaveLength(5);
    for (const r of refused) {
      expect(r.status).toBe(503);
      expect(r.headers['x-isthmus-error']).toBe('ISTHMUS_ERR_DATAPLANE_CIRCUIT_OPEN');
      expect(r.body.error.message).toMatch(/maxRequests 1 of CircuitBreaker demo\/ledger-breaker/);
    }
    // At once: every refusal came back before the one request that was let through.
    expect(first.order).toEqual([...Array(5).fill('refused'), 'slow']);
    expect(await policyActions('circuit_open')).toBeGreaterThanOrEqual(5);

    // Load gone: the next requests, one at a time, all pass.
    for (let i = 0; i < 3; i += 1) expect((await timed('http://ledger.demo.mesh/?delay=100')).status).toBe(200);
    await remove('circuitbreaker', 'ledger-breaker');
    expect((await burst()).all.map((r) => r.status)).toEqual(Array(6).fill(200));
  }, 90_000);

  test('FaultInjection abort 100% answers every request with its status without reaching the destination; deleting it restores traffic', async () => {
    await apply('abort', doc('FaultInjection', 'hello-abort', '{ service: hello, abort: { status: 418, percent: 100 } }'));
    const before = await reached('hello');
    const answers = await Promise.all(Array.from({ length: 40 }, () => viaProxy(proxy(), 'http://hello.demo.mesh/')));
    expect(answers.map((a) => `${a.status} ${String(a.headers['x-isthmus-error'])}`)).toEqual(Array(40).fill('418 ISTHMUS_ERR_DATAPLANE_FAULT_INJECTED'));
    // HTTP/2 takes the same policy step: a plain h2 request gets the status, a gRPC call a
    // trailers-only answer whose grpc-status follows the status (418 → 2 UNKNOWN).
    expect((await viaH2('hello.demo.mesh'))[':status']).toBe(418);
    const grpc = await viaH2('hello.demo.mesh', { 'content-type': 'application/grpc' });
    expect([grpc[':status'], grpc['grpc-status'], grpc['x-isthmus-error']]).toEqual([200, '2', 'ISTHMUS_ERR_DATAPLANE_FAULT_INJECTED']);
    expect(await reached('hello') - before).toBe(0);

    await remove('faultinjection', 'hello-abort');
    const after = await Promise.all(Array.from({ length: 20 }, () => viaProxy(proxy(), 'http://hello.demo.mesh/')));
    expect(after.every((a) => a.status === 200 && a.body?.service === 'hello')).toBe(true);
  }, 60_000);

  test('FaultInjection delay for 50% delays a share within a binomial bound, only requests with its header, each by at least the delay', async () => {
    await apply('delay', doc('FaultInjection', 'hello-delay', '{ service: hello, delay: { fixed: 300ms, percent: 50 }, headers: [{ name: x-chaos, value: "on" }] }'));
    const chaos = (): Promise<ProxiedResponse & { ms: number }> => {
      const started = performance.now();
      return viaProxy(proxy(), 'http://hello.demo.mesh/', 10_000, { 'x-chaos': 'on' }).then((r) => ({ ...r, ms: performance.now() - started }));
    };
    // Without the header: never delayed.
    const plainBefore = await policyActions('fault_delay');
    for (let i = 0; i < 20; i += 1) expect((await viaProxy(proxy(), 'http://hello.demo.mesh/')).status).toBe(200);
    expect(await policyActions('fault_delay')).toBe(plainBefore);

    const n = 160;
    const delayedBefore = await policyActions('fault_delay');
    const answers: (ProxiedResponse & { ms: number })[] = [];
    for (let batch = 0; batch < n / 16; batch += 1) answers.push(...await Promise.all(Array.from({ length: 16 }, chaos)));
    expect(answers.every((a) => a.status === 200)).toBe(true);
    const delayed = (await policyActions('fault_delay')) - delayedBefore;
    // Binomial(160, 0.5): sd ≈ 6.3; 4.5 sd ≈ 28 requests. 0% or 100% is far outside.
    expect(Math.abs(delayed - n / 2)).toBeLessThanOrEqual(4.5 * Math.sqrt(n * 0.25));
    // Each counted delay was a real wait of at least 300 ms.
    expect(answers.filter((a) => a.ms >= 300).length).toBeGreaterThanOrEqual(delayed);
    await remove('faultinjection', 'hello-delay');
  }, 90_000);

  test('LocalRateLimit of 5/s at ledger\'s inbound: a burst beyond it gets 429 with retry-after and its code; the rate comes back', async () => {
    // ledger has one instance (in west): its inbound holds the one bucket (per: service).
    await apply('limit', doc('LocalRateLimit', 'ledger-limit', '{ service: ledger, requestsPerSecond: 5, burst: 5 }'));
    const started = Date.now();
    const answers = await Promise.all(Array.from({ length: 30 }, () => viaProxy(proxy(), 'http://ledger.demo.mesh/')));
    const seconds = (Date.now() - started) / 1000;
    const ok = answers.filter((a) => a.status === 200).length;
    // The burst, plus what refilled while the requests were in flight.
    expect(ok).toBeGreaterThanOrEqual(5);
    expect(ok).toBeLessThanOrEqual(5 + Math.ceil(5 * seconds));
    const limited = answers.filter((a) => a.status !== 200);
    expect(limited.length).toBe(30 - ok);
    for (const a of limited) {
      expect(a.status).toBe(429);
      expect(a.headers['x-isthmus-error']).toBe('ISTHMUS_ERR_DATAPLANE_RATE_LIMITED');
      expect(Number(a.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    }
    await new Promise((r) => setTimeout(r, 1000));
    expect((await viaProxy(proxy(), 'http://ledger.demo.mesh/')).status).toBe(200);
    await remove('localratelimit', 'ledger-limit');
  }, 60_000);

  test('deleting the OutlierDetection brings back the defaults: 5 consecutive 503s eject the endpoint', async () => {
    await remove('outlierdetection', 'ledger-outliers');
    const ejections = await metric(clientAdmin(), 'isthmus_endpoint_ejections_total', {});
    for (let i = 0; i < 5; i += 1) await viaProxy(proxy(), 'http://ledger.demo.mesh/status/503');
    expect(await metric(clientAdmin(), 'isthmus_endpoint_ejections_total', {})).toBe(ejections + 1);
  }, 30_000);
});
