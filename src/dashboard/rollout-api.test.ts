import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startEtcd, storeOptions, type TestEtcd } from '../../test/helpers/etcd.js';
import { keys, recordVersion } from '../core/keys.js';
import { FederationStore } from '../federation/store.js';
import type { PolicyRecord } from '../model/policy-records.js';
import type { RolloutRecord } from '../model/rollout.js';
import { createIntermediateCa, createRootCa, issueCertificate, issueOperatorCertificate } from '../trust/ca.js';
import { mintOperatorToken } from '../trust/operator.js';
import type { ServiceDetail } from './manager.js';
import { createDashboard, type DashboardHandler } from './server.js';
import { StoreSource } from './store-source.js';

// The rollout panel's API on a real etcd (127.0.194.1), read through the same StoreSource as
// `isthmus dash`: an operator starts, pauses, resumes and aborts a rollout with the verbs of
// `isthmus rollout`; a bad field is named; nobody else writes.
let etcd: TestEtcd;
let store: FederationStore;
let source: StoreSource;
let dashboard: DashboardHandler;
let server: Server;
let base: string;
let operator: Record<string, string>;
let workload: Record<string, string>;
const json = { 'content-type': 'application/json' };

beforeAll(async () => {
  etcd = await startEtcd({ host: '127.0.194.1' });
  store = await FederationStore.connect(storeOptions(etcd));
  await store.put(keys.policy('slo', 'demo', 'v2-fast'), { version: recordVersion, namespace: 'demo', name: 'v2-fast', service: 'hello-v2', latency: { percentile: 99, belowMs: 250 }, windowSeconds: 60, minRequests: 5 });
  await store.put(keys.policy('slo', 'demo', 'v1-fast'), { version: recordVersion, namespace: 'demo', name: 'v1-fast', service: 'hello-v1', latency: { percentile: 99, belowMs: 250 }, windowSeconds: 60, minRequests: 5 });
  const root = createRootCa({ trustDomain: 't.test' });
  const alice = issueOperatorCertificate({ name: 'alice', issuer: root, ttlSeconds: 600 });
  operator = { ...json, authorization: `Bearer ${mintOperatorToken({ certPem: alice.certPem, keyPem: alice.keyPem, ttlSeconds: 300 }).token}` };
  const east = createIntermediateCa({ root, trustDomain: 't.test', cluster: 'east' });
  const w = issueCertificate({ identity: 'spiffe://t.test/ns/demo/sa/client', issuer: east });
  workload = { ...json, authorization: `Bearer ${mintOperatorToken({ certPem: w.certPem, chainPem: [east.certPem], keyPem: w.keyPem, ttlSeconds: 300 }).token}` };
  const { endpoints, tls } = storeOptions(etcd);
  source = await StoreSource.open({ endpoints: [endpoints], ...(tls ? { tls } : {}) });
  dashboard = createDashboard(source, { access: { reads: 'public', rootsPem: () => [root.certPem] } });
  server = createServer((req, res) => { if (!dashboard.handle(req, res)) { res.writeHead(404); res.end(); } });
  await new Promise<void>((resolve) => server.listen(0, '127.0.194.1', resolve));
  base = `http://127.0.194.1:${(server.address() as AddressInfo).port}`;
}, 30_000);

afterAll(async () => {
  dashboard?.close();
  server?.closeAllConnections();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  await source?.close();
  await store?.close();
  await etcd?.destroy();
});

async function post(path: string, body: unknown, headers: Record<string, string> = operator): Promise<{ status: number; body: { rollout?: RolloutRecord; error?: { code: string; message: string; details?: { path: string }[] } } }> {
  const res = await fetch(`${base}/api/services/demo/${path}`, { method: 'POST', headers, body: JSON.stringify(body) });
  return { status: res.status, body: await res.json() as never };
}
const stored = async (service: string) => (await store.get<RolloutRecord>(keys.rollout('demo', service)))?.value;
const start = { to: 'hello-v2', from: 'hello-v1', steps: '10,50,100', interval: '30s', objective: 'v2-fast' };

describe('the rollout panel\'s API', () => {
  test('an operator starts a rollout: the record and split as `isthmus rollout start` writes them, by dashboard; the page reads it back with its step and objective', async () => {
    const started = await post('hello/rollout', start);
    expect(started.status).toBe(200);
    expect(started.body.rollout).toMatchObject({ phase: 'progressing', from: 'hello-v1', to: 'hello-v2', steps: [10, 50, 100], intervalSeconds: 30, history: [{ step: 0, weight: 10, by: 'dashboard' }] });
    expect(await stored('hello')).toEqual(started.body.rollout);
    expect((await store.get<PolicyRecord>(keys.policy('trafficsplit', 'demo', 'hello-rollout')))?.value.spec)
      .toEqual({ service: 'hello', backends: [{ service: 'hello-v1', weight: 90 }, { service: 'hello-v2', weight: 10 }] });

    const detail = await waitForDetail((d) => d.rollout?.record.phase === 'progressing');
    expect(detail.rollout).toMatchObject({
      progress: { step: 0, of: 3, weight: 10 },
      objective: { name: 'v2-fast', service: 'hello-v2', burnRate: null, requests: 0, minRequests: 5, windowSeconds: 60 },
    });
    expect(detail.rollout!.progress!.remainingMs).toBeLessThanOrEqual(30_000);

    // A second start while it runs: 409, as the CLI's.
    const again = await post('hello/rollout', start);
    expect([again.status, again.body.error?.code]).toEqual([409, 'ISTHMUS_ERR_ROLLOUT_ACTIVE']);
  });

  test('pause, resume and abort: the CLI\'s verbs; an ended rollout is 409, an unknown one 404', async () => {
    expect((await post('hello/rollout/pause', {})).body.rollout?.phase).toBe('paused');
    expect((await post('hello/rollout/pause', {})).status).toBe(409);
    expect((await post('hello/rollout/resume', {})).body.rollout?.phase).toBe('progressing');
    const aborted = await post('hello/rollout/abort', {});
    expect(aborted.body.rollout).toMatchObject({ phase: 'aborted', ended: { by: 'dashboard' } });
    expect((await store.get<PolicyRecord>(keys.policy('trafficsplit', 'demo', 'hello-rollout')))?.value.spec)
      .toEqual({ service: 'hello', backends: [{ service: 'hello-v1', weight: 100 }, { service: 'hello-v2', weight: 0 }] });
    const ended = await post('hello/rollout/abort', {});
    expect([ended.status, ended.body.error?.code]).toEqual([409, 'ISTHMUS_ERR_ROLLOUT_FINISHED']);
    const none = await post('nothing/rollout/pause', {});
    expect([none.status, none.body.error?.code]).toEqual([404, 'ISTHMUS_ERR_ROLLOUT_NOT_FOUND']);
    const detail = await waitForDetail((d) => d.rollout?.record.phase === 'aborted');
    expect(detail.rollout?.progress).toBeUndefined();
  });

  test('a step the driver holds for want of requests: the panel says why, in the words of `rollout status`', async () => {
    const since = new Date().toISOString();
    const started = await post('waiting/rollout', { ...start, interval: '1s' });
    expect(started.status).toBe(200);
    // What the driver writes when the step's interval is over and the objective has no verdict.
    await store.put(keys.rollout('demo', 'waiting'), { ...started.body.rollout, waiting: { reason: 'too-few-requests', requests: 2, minRequests: 5, since, updatedAt: since } });
    const detail = await waitForDetail((d) => d.rollout?.held !== undefined, 'waiting');
    expect(detail.rollout?.held).toBe('held: waiting for 3 requests to hello-v2 (2 of the 5 v2-fast needs in its window for a verdict); the step goes on once it has one');
    expect((await post('waiting/rollout/abort', {})).body.rollout?.waiting).toBeUndefined();
  });

  test.each([
    ['steps', { ...start, steps: '50,10' }, 400, 'ISTHMUS_ERR_ROLLOUT_INVALID', '/steps', /^steps 50,10: each step must send more traffic/],
    ['interval', { ...start, interval: 'soon' }, 400, 'ISTHMUS_ERR_ROLLOUT_INVALID', '/interval', /^interval soon is not a duration/],
    ['objective', { ...start, objective: 'nope' }, 400, 'ISTHMUS_ERR_ROLLOUT_INVALID', '/objective', /^objective nope: no ServiceLevelObjective demo\/nope/],
    ['to', { ...start, to: 'hello-v1' }, 400, 'ISTHMUS_ERR_ROLLOUT_INVALID', '/to', /^to hello-v1 is what already has the traffic \(from hello-v1\)/],
    ['objective (not on the new version)', { ...start, objective: 'v1-fast' }, 400, 'ISTHMUS_ERR_ROLLOUT_INVALID', '/objective', /^objective v1-fast judges demo\/hello-v1, not demo\/hello-v2, the new version this rollout sends traffic to \(to hello-v2\)/],
    ['a field the API does not know', { ...start, weight: 5 }, 400, 'ISTHMUS_ERR_API_BAD_REQUEST', '/weight', /request body is not valid: \/weight/],
    ['a service name that is not a DNS label', { ...start, to: 'Hello V2' }, 400, 'ISTHMUS_ERR_API_BAD_REQUEST', '/to', /\/to: /],
  ])('a bad %s is refused naming the field, and nothing is written', async (_what, body, status, code, path, message) => {
    const refused = await post('greet/rollout', body);
    expect([refused.status, refused.body.error?.code]).toEqual([status, code]);
    expect(refused.body.error?.message).toMatch(message);
    expect(refused.body.error?.details?.map((d) => d.path)).toContain(path);
    expect(await stored('greet')).toBeUndefined();
  });

  test('without a credential 401, with a workload\'s token 403, as a form 415, for every rollout write; nothing changes', async () => {
    for (const [path, body] of [['greet/rollout', start], ['hello/rollout/pause', {}], ['hello/rollout/resume', {}], ['hello/rollout/abort', {}]] as const) {
      expect((await post(path, body, json)).body.error?.code, path).toBe('ISTHMUS_ERR_AUTH_CREDENTIAL_MISSING');
      expect((await post(path, body, json)).status, path).toBe(401);
      expect((await post(path, body, workload)).status, path).toBe(403);
      const form = await post(path, body, { ...operator, 'content-type': 'application/x-www-form-urlencoded' });
      expect([form.status, form.body.error?.code], path).toEqual([415, 'ISTHMUS_ERR_API_NOT_JSON']);
    }
    expect(await stored('greet')).toBeUndefined();
    expect((await stored('hello'))?.phase).toBe('aborted');
    // pause and friends take `{}`: anything else is named.
    const extra = await post('hello/rollout/pause', { force: true });
    expect([extra.status, extra.body.error?.details?.[0]?.path]).toEqual([400, '/force']);
  });
});

/** GET the service page's document until `ok` (the source follows etcd by watch, a moment behind the write). */
async function waitForDetail(ok: (d: ServiceDetail) => boolean, service = 'hello'): Promise<ServiceDetail> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const detail = await (await fetch(`${base}/api/services/demo/${service}`)).json() as ServiceDetail;
    if (ok(detail)) return detail;
    if (Date.now() > deadline) throw new Error(`the service page never showed it: ${JSON.stringify(detail.rollout)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
