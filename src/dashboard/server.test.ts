import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeAll, describe, expect, test } from 'vitest';
import { rawGet } from '../../test/helpers/raw-http.js';
import { keys } from '../core/keys.js';
import { record, type Buckets } from '../model/latency-histogram.js';
import type { Catalog } from '../model/catalog.js';
import type { TrafficRecord } from '../model/records.js';
import type { Overview } from './overview.js';
import { createDashboard, type DashboardAccess, type DashboardHandler, type DashboardSource } from './server.js';
import { createRootCa, issueCertificate, issueOperatorCertificate, createIntermediateCa, type CertAndKey } from '../trust/ca.js';
import { mintOperatorToken } from '../trust/operator.js';

let root: CertAndKey;
let operatorToken: string;
let workloadToken: string;
beforeAll(() => {
  root = createRootCa({ trustDomain: 't.test' });
  const alice = issueOperatorCertificate({ name: 'alice', issuer: root, ttlSeconds: 600 });
  operatorToken = mintOperatorToken({ certPem: alice.certPem, keyPem: alice.keyPem, ttlSeconds: 300 }).token;
  // A workload's certificate signs a token just as well; it must still not count as an operator.
  const east = createIntermediateCa({ root, trustDomain: 't.test', cluster: 'east' });
  const workload = issueCertificate({ identity: 'spiffe://t.test/ns/demo/sa/client', issuer: east });
  workloadToken = mintOperatorToken({ certPem: workload.certPem, chainPem: [east.certPem], keyPem: workload.keyPem, ttlSeconds: 300 }).token;
});
const publicReads = (): DashboardAccess => ({ reads: 'public', rootsPem: () => [root.certPem] });
const asOperator = () => ({ headers: { authorization: `Bearer ${operatorToken}` } });

/** The records a federation's mirror would hold, as plain data: the handler reads nothing else. */
function source(entries: Map<string, unknown>, sidecars?: () => unknown[]): DashboardSource {
  const catalog: Catalog = { revision: 7, clusters: [], services: [], invalidKeys: [] };
  return {
    cluster: 'east', catalog,
    mirror: { entries: (prefix) => [...entries].filter(([k]) => k.startsWith(prefix)) },
    on: () => undefined,
    ...(sidecars ? { sidecars } : {}),
  };
}

const latencies = (n: number, ms: number): Buckets => {
  const b: Buckets = [];
  for (let i = 0; i < n; i += 1) record(b, ms);
  return b;
};
const traffic = (requests: number, errors: number): TrafficRecord => ({
  version: 1, from: 'east', epoch: 'e1', updatedAt: new Date().toISOString(),
  routes: [{ namespace: 'demo', service: 'ledger', to: 'west', requests, errors, buckets: latencies(requests, 4) }],
});

let server: Server | undefined;
let dashboard: DashboardHandler | undefined;
afterEach(async () => {
  dashboard?.close();
  server?.closeAllConnections();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
});

async function serve(src: DashboardSource, access: DashboardAccess = publicReads()): Promise<string> {
  dashboard = createDashboard(src, { access });
  const handler = dashboard;
  server = createServer((req, res) => { if (!handler.handle(req, res)) { res.writeHead(404); res.end(); } });
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server!.address() as AddressInfo).port}`;
}

describe('the dashboard\'s HTTP API', () => {
  test('/api/overview reads windows as differences of the /traffic/ counters it has seen', async () => {
    const entries = new Map<string, unknown>([[keys.trafficOf('east'), traffic(100, 0)]]);
    const base = await serve(source(entries));
    const first = (await (await fetch(`${base}/api/overview`)).json()) as Overview;
    // One sample: no window yet, so no rate (not a made-up one).
    expect(first.traffic.pairs).toEqual([]);
    entries.set(keys.trafficOf('east'), traffic(150, 5));
    await new Promise((r) => setTimeout(r, 50));
    const second = (await (await fetch(`${base}/api/overview`)).json()) as Overview;
    expect(second.traffic.pairs).toHaveLength(1);
    expect(second.traffic.pairs[0]).toMatchObject({ from: 'east', to: 'west', requests: 50, successPercent: 90 });
    expect(second.traffic.pairs[0]!.p50Ms).toBeGreaterThan(3);
  });

  test('/api/series: a pair by cluster names, else 400 saying how to ask', async () => {
    const base = await serve(source(new Map([[keys.trafficOf('east'), traffic(10, 0)]])));
    const bad = await fetch(`${base}/api/series?from=%00&to=west`);
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: string }).error).toMatch(/from=<cluster>&to=<cluster>/);
    const ok = await fetch(`${base}/api/series?from=east&to=west&minutes=5`);
    expect(ok.status).toBe(200);
    expect(await ok.json()).toMatchObject({ from: 'east', to: 'west', points: expect.any(Array), probes: expect.any(Array) });
  });

  test('/api/sidecars: the federation\'s reporting sidecars, or 404 where nobody reports (isthmus dash)', async () => {
    let base = await serve(source(new Map()));
    expect((await fetch(`${base}/api/sidecars`, asOperator())).status).toBe(404);
    dashboard?.close();
    server?.closeAllConnections();
    await new Promise<void>((resolve) => server!.close(() => resolve()));
    base = await serve(source(new Map(), () => [{ identity: 'spiffe://t/ns/demo/sa/client', admin: '127.0.0.1:15020' }]));
    expect(await (await fetch(`${base}/api/sidecars`, asOperator())).json()).toEqual({ sidecars: [{ identity: 'spiffe://t/ns/demo/sa/client', admin: '127.0.0.1:15020' }] });
  });

  test('paths that are not the dashboard\'s are left to the caller', async () => {
    const base = await serve(source(new Map()));
    // Sent as raw bytes: fetch would turn /assets/../../etc/passwd into /etc/passwd before sending it.
    for (const target of ['/../../etc/passwd', '/assets/../../../../etc/passwd', '/assets/../app.js', '/assets/..%2f..%2fpackage.json']) {
      const res = await rawGet(base, target);
      expect(res.status, target).toBe(404);
      expect(res.body, target).not.toMatch(/root:|"name"|addEventListener/);
    }
    expect((await fetch(`${base}/assets/nothing.js`)).status).toBe(404);
  });
});

describe('who may read', () => {
  const sidecars = () => [{ identity: 'spiffe://t.test/ns/demo/sa/client', admin: '127.0.0.1:15020' }];

  test('/api/sidecars (every sidecar\'s admin address) needs an operator even where reads are public', async () => {
    const base = await serve(source(new Map(), sidecars));
    const anonymous = await fetch(`${base}/api/sidecars`);
    expect(anonymous.status).toBe(401);
    expect(((await anonymous.json()) as { error: { code: string } }).error.code).toBe('ISTHMUS_ERR_AUTH_CREDENTIAL_MISSING');
    const workload = await fetch(`${base}/api/sidecars`, { headers: { authorization: `Bearer ${workloadToken}` } });
    expect(workload.status).toBe(403);
    expect(((await workload.json()) as { error: { code: string } }).error.code).toBe('ISTHMUS_ERR_AUTH_FORBIDDEN');
    expect((await fetch(`${base}/api/sidecars`, asOperator())).status).toBe(200);
  });

  test('the manager view\'s writes need an operator even where reads are public, and JSON; other methods are not the dashboard\'s', async () => {
    const base = await serve(source(new Map()));
    const put = async (headers: Record<string, string>) => {
      const res = await fetch(`${base}/api/services/demo/hello/weights`, { method: 'PUT', headers, body: JSON.stringify({ kind: 'HTTPRoute', policy: 'hello-canary', rule: 1, weights: [1, 1] }) });
      return [res.status, ((await res.json()) as { error: { code: string } }).error.code];
    };
    const json = { 'content-type': 'application/json' };
    expect(await put(json)).toEqual([401, 'ISTHMUS_ERR_AUTH_CREDENTIAL_MISSING']);
    expect(await put({ ...json, authorization: `Bearer ${workloadToken}` })).toEqual([403, 'ISTHMUS_ERR_AUTH_FORBIDDEN']);
    expect(await put({ 'content-type': 'application/x-www-form-urlencoded', authorization: `Bearer ${operatorToken}` })).toEqual([415, 'ISTHMUS_ERR_API_NOT_JSON']);
    // This source has no store: an operator's JSON write is refused, not lost.
    expect(await put({ ...json, authorization: `Bearer ${operatorToken}` })).toEqual([400, 'ISTHMUS_ERR_API_BAD_REQUEST']);
    // A POST elsewhere is left to the caller (the telemetry server answers 405).
    expect((await fetch(`${base}/api/overview`, { method: 'POST' })).status).toBe(404);
  });

  test('with operator reads, /api/ needs a token; the page does not; /?token= signs a browser in with a cookie', async () => {
    const base = await serve(source(new Map(), sidecars), { reads: 'operator', rootsPem: () => [root.certPem], trustDomain: 't.test' });
    for (const path of ['/api/overview', '/api/series?from=east&to=west', '/api/stream']) {
      const res = await fetch(`${base}${path}`);
      expect(res.status, path).toBe(401);
      expect(((await res.json()) as { error: { code: string } }).error.code, path).toBe('ISTHMUS_ERR_AUTH_CREDENTIAL_MISSING');
    }
    expect((await fetch(`${base}/api/overview`, { headers: { authorization: 'Bearer isthop_forged.x' } })).status).toBe(401);
    expect((await fetch(`${base}/api/overview`, asOperator())).status).toBe(200);
    expect((await fetch(`${base}/`)).status).toBe(200);
    const login = await fetch(`${base}/?token=${operatorToken}`, { redirect: 'manual' });
    expect(login.status).toBe(303);
    const cookie = login.headers.get('set-cookie') ?? '';
    expect(cookie).toMatch(/^isthmus_operator=isthop_[^;]+; Max-Age=\d+; Path=\/; HttpOnly; SameSite=Strict$/);
    expect((await fetch(`${base}/api/overview`, { headers: { cookie: cookie.split(';')[0]! } })).status).toBe(200);
    expect((await fetch(`${base}/?token=isthop_junk.x`, { redirect: 'manual' })).status).toBe(401);
  });
  test('a stream opened with a token ends when the token does', async () => {
    const base = await serve(source(new Map(), sidecars), { reads: 'operator', rootsPem: () => [root.certPem] });
    const brief = issueOperatorCertificate({ name: 'brief', issuer: root, ttlSeconds: 600 });
    const { token } = mintOperatorToken({ certPem: brief.certPem, keyPem: brief.keyPem, ttlSeconds: 1 });
    const res = await fetch(`${base}/api/stream`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    let events = '';
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      events += new TextDecoder().decode(value);
    }
    // It did stream before it ended (a first event at once), and the server ended it, not us.
    expect(events).toMatch(/^id: 1\nevent: overview\n/);
  });
});

describe('live streams are bounded', () => {
  /** Opens /api/stream and resolves once its first event (or a refusal) arrived, with the status and a way to close it. */
  async function open(base: string): Promise<{ status: number; body: string; close: () => void }> {
    const controller = new AbortController();
    const res = await fetch(`${base}/api/stream`, { signal: controller.signal });
    const reader = res.body!.getReader();
    const { value } = await reader.read();
    return { status: res.status, body: new TextDecoder().decode(value), close: () => controller.abort() };
  }

  test('one client holds 8 streams at most; the 9th gets 429 with the code, and closing one frees a slot', async () => {
    const base = await serve(source(new Map()));
    const streams = [];
    for (let i = 0; i < 8; i += 1) streams.push(await open(base));
    expect(streams.map((s) => s.status)).toEqual(Array(8).fill(200));
    expect(streams[0]!.body).toMatch(/^id: 1\nevent: overview\n/);
    const refused = await open(base);
    expect(refused.status).toBe(429);
    expect(JSON.parse(refused.body)).toEqual({ error: { code: 'ISTHMUS_ERR_API_TOO_MANY_STREAMS', message: expect.stringMatching(/already holds 8 live streams/) } });
    streams[0]!.close();
    let again = await open(base);
    for (let i = 0; i < 50 && again.status !== 200; i += 1) {
      await new Promise((r) => setTimeout(r, 20));
      again = await open(base);
    }
    expect(again.status).toBe(200);
    for (const s of [...streams.slice(1), again]) s.close();
  });
});
