import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { keys } from '../../src/core/keys.js';
import type { Overview } from '../../src/dashboard/overview.js';
import { startDevMesh, type DevMesh } from '../../src/dev/dev-mesh.js';
import { sidecarStateDir } from '../../src/dev/sample-workload.js';
import type { SloWebhookPayload } from '../../src/federation/slo-alerter.js';
import { webhookReceiver, type WebhookReceiver } from '../helpers/webhook.js';
import { FederationStore } from '../../src/federation/store.js';
import type { TrafficRecord } from '../../src/model/records.js';
import { apiClient, isthmus, sleep, waitFor } from '../helpers/cli.js';
import { testOperator } from '../helpers/mesh.js';
import { etcdEnv, storeOptions } from '../helpers/etcd.js';

// Two clusters on 127.0.101.1 / 127.0.102.1, sample traffic from both clients, reports every second.
let mesh: DevMesh;
let stateDir: string;
let store: FederationStore;
let hook: WebhookReceiver;
let hookUrl: string;
let hookFile: string;
let received: SloWebhookPayload[] = [];

const overview = async (cluster: string): Promise<Overview> =>
  (await (await fetch(`http://${mesh.file.clusters[cluster]!.metrics}/api/overview`)).json()) as Overview;
const env = () => (etcdEnv(mesh.file));

/** Failed requests to ledger the sidecars of every cluster have reported since the mesh started. */
async function ledgerErrorsReported(): Promise<number> {
  let errors = 0;
  for (const cluster of ['east', 'west']) {
    const record = (await store.get<TrafficRecord>(keys.trafficOf(cluster)))?.value;
    for (const route of record?.routes ?? []) if (route.service === 'ledger') errors += route.errors;
  }
  return errors;
}

function sloYaml(name: string, spec: string): string {
  const file = join(stateDir, `${name}-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, `apiVersion: isthmus.dev/v1alpha1\nkind: ServiceLevelObjective\nmetadata: { name: ${name}, namespace: demo }\nspec:\n${spec}`);
  return file;
}

beforeAll(async () => {
  stateDir = mkdtempSync(join(tmpdir(), 'isthmus-slo-'));
  hook = await webhookReceiver('127.0.0.1');
  hookUrl = hook.url;
  received = hook.pages;
  // Each federation reads the URL from this file when it pages; the policy names only the file.
  hookFile = join(stateDir, 'slo-webhook-url');
  writeFileSync(hookFile, `${hookUrl}\n`, { mode: 0o600 });
  mesh = await startDevMesh({ clusters: ['east', 'west'], stateDir, trustDomain: 'dev.test', hostBase: 101, traffic: 10, reportIntervalMs: 1000, progress: () => undefined });
  store = await FederationStore.connect(storeOptions(mesh.file));
}, 120_000);

afterAll(async () => {
  await store?.close();
  await mesh?.stop();
  await hook?.close();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

describe('real traffic, as the sidecars report it', () => {
  test('east\'s sidecars\' requests to ledger reach etcd as /traffic/east counters for destination west', async () => {
    const { value } = await waitFor(async () => {
      const record = (await store.get<TrafficRecord>(keys.trafficOf('east')))?.value;
      const ledger = record?.routes.find((r) => r.service === 'ledger' && r.to === 'west');
      return ledger && ledger.requests >= 10 ? { record, ledger } : undefined;
    }, 20_000, '/traffic/east with ledger → west');
    expect(value.record?.from).toBe('east');
    expect(value.ledger.errors).toBe(0);
    expect(value.ledger.buckets.reduce((a, b) => a + b, 0)).toBe(value.ledger.requests);
    // hello is served in east itself: east's requests to it stay in east (but for a start-up
    // request or two, answered elsewhere or not at all before east's instances were healthy).
    const hello = value.record!.routes.filter((r) => r.service === 'hello');
    const helloInEast = hello.find((r) => r.to === 'east')?.requests ?? 0;
    expect(helloInEast).toBeGreaterThan(hello.reduce((n, r) => n + r.requests, 0) / 2);

    // Once the mesh is up, the counters grow with requests and not with errors.
    const { value: later } = await waitFor(async () => {
      const ledger = (await store.get<TrafficRecord>(keys.trafficOf('east')))?.value.routes.find((r) => r.service === 'ledger' && r.to === 'west');
      return ledger && ledger.requests >= value.ledger.requests + 20 ? ledger : undefined;
    }, 20_000, '20 more requests to ledger counted');
    expect(later.errors).toBe(value.ledger.errors);
  });

  test('the dashboard of either cluster shows ledger\'s rate, success and latency, served from west', async () => {
    for (const cluster of ['east', 'west']) {
      const { value: ledger } = await waitFor(async () => {
        const s = (await overview(cluster)).services.find((x) => x.name === 'ledger');
        // Enough requests that the few start-up 503s cannot dominate the window.
        return s?.traffic && s.traffic.requests >= 60 && s.traffic.p50Ms !== null ? s.traffic : undefined;
      }, 20_000, `ledger traffic on ${cluster}'s dashboard`);
      expect(ledger.rps).toBeGreaterThan(0);
      // Not necessarily 100: a request in the first second may have found no healthy endpoint yet
      // (the test above shows none fail once the mesh is up). So the failures the percentage
      // stands for must be among those the sidecars reported, counted since the start; with none
      // reported, it is exactly 100.
      const failedInWindow = Math.round((ledger.requests * (100 - ledger.successPercent!)) / 100);
      expect(failedInWindow).toBeGreaterThanOrEqual(0);
      expect(failedInWindow).toBeLessThanOrEqual(await ledgerErrorsReported());
      expect(ledger.p99Ms).toBeGreaterThanOrEqual(ledger.p50Ms!);
      expect(ledger.servedFrom).toEqual([{ cluster: 'west', share: 1 }]);
    }
    const pairs = (await overview('west')).traffic.pairs;
    expect(pairs.map((p) => `${p.from}→${p.to}`)).toEqual(expect.arrayContaining(['east→west', 'east→east', 'west→west']));
    // Requests some endpoint answered: the 503s above had no destination and are not in any pair.
    expect(pairs.find((p) => p.from === 'east' && p.to === 'west')?.successPercent).toBe(100);
  });

  test('`isthmus stat` prints the same numbers for people and scripts, per service and per cluster pair', async () => {
    const json = await isthmus(['stat', '--output', 'json', '--from', 'west'], env());
    expect(json.code).toBe(0);
    const body = JSON.parse(json.stdout) as { servedBy: string; services: { name: string; traffic: { rps: number; servedFrom: { cluster: string }[] } | null }[] };
    expect(body.servedBy).toBe('west');
    const ledger = body.services.find((x) => x.name === 'ledger');
    expect(ledger?.traffic?.rps).toBeGreaterThan(0);
    expect(ledger?.traffic?.servedFrom.map((x) => x.cluster)).toEqual(['west']);
    const table = await isthmus(['stat'], env());
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^demo\/ledger\s+west 100%\s+[0-9.]+\s+[0-9.]+%/m);
    const pairs = await isthmus(['stat', '--pairs'], env());
    expect(pairs.stdout).toMatch(/^east\s+west\s+[0-9.]+\s+[0-9.]+%\s+[0-9.]+\s+[0-9.]+\s+[0-9.]+/m);
    const nowhere = await isthmus(['stat'], { ISTHMUS_ETCD: 'http://127.0.0.1:1' });
    expect(nowhere.code).toBe(1);
  });

  test('the series of a pair has a point per sample with requests in it', async () => {
    const { value } = await waitFor(async () => {
      const res = (await (await fetch(`http://${mesh.file.clusters.east!.metrics}/api/series?from=east&to=west&minutes=5`)).json()) as { points: { requests: number; p50Ms: number | null }[]; probes: { p50Ms: number | null }[] };
      const withTraffic = res.points.filter((p) => p.requests > 0 && p.p50Ms !== null);
      // The probe history of the same pair is kept beside it (east probes west every 5 s by default).
      return withTraffic.length >= 2 && res.probes.some((p) => p.p50Ms !== null) ? withTraffic : undefined;
    }, 30_000, 'two series points with traffic');
    expect(value.length).toBeGreaterThanOrEqual(2);
  });

  test('/api/sidecars lists the sidecars reporting to the cluster\'s federation, with their admin ports', async () => {
    const { value } = await waitFor(async () => {
      // Every sidecar's admin address is for operators only: dev up issued the local user's credential.
      const body = (await (await fetch(`http://${mesh.file.clusters.east!.metrics}/api/sidecars`, { headers: testOperator(mesh.file.operator).headers() })).json()) as { sidecars: { identity: string; admin: string }[] };
      return body.sidecars.length >= 3 ? body.sidecars : undefined;
    }, 15_000, 'three sidecars of east reporting');
    expect(value.map((s) => s.admin)).toContain(mesh.file.clusters.east!.client.admin);
    expect(value.every((s) => s.identity.startsWith('spiffe://dev.test/ns/demo/sa/'))).toBe(true);
  });

  test('reports are taken only from this cluster\'s workloads, and a malformed one is refused by name', async () => {
    const ca = join(mesh.file.ca, 'root-cert.pem');
    const url = `https://${mesh.file.clusters.east!.federation}/v1/reports`;
    const anonymous = apiClient(ca);
    try {
      const res = await anonymous.post(url, { version: 1, routes: [], events: [] });
      expect(res.status).toBe(401);
      expect(res.body.error.code).toBe('ISTHMUS_ERR_AUTH_CREDENTIAL_MISSING');
    } finally {
      await anonymous.close();
    }
    const creds = (cluster: string) => {
      const id = JSON.parse(readFileSync(join(sidecarStateDir(stateDir, cluster, 'client'), 'identity.json'), 'utf8')) as { cert: string; chain: string[]; key: string };
      return { cert: [id.cert, ...id.chain].join('\n'), key: id.key };
    };
    const foreign = apiClient(ca, creds('west'));
    try {
      const res = await foreign.post(url, { version: 1, routes: [], events: [] });
      expect(res.status).toBe(403);
    } finally {
      await foreign.close();
    }
    const own = apiClient(ca, creds('east'));
    try {
      const garbage = await own.post(url, { version: 1, routes: [{ namespace: 'demo', service: 'x', to: 'west', requests: -5, errors: 0, buckets: [] }], events: [] });
      expect(garbage.status).toBe(400);
      expect(garbage.body.error.code).toBe('ISTHMUS_ERR_API_BAD_REQUEST');
      expect(garbage.body.error.message).toMatch(/requests/);
    } finally {
      await own.close();
    }
  });
});

describe('service level objectives', () => {
  test('a malformed objective is refused with the field named, and nothing is stored', async () => {
    const res = await isthmus(['policy', 'apply', '-f', sloYaml('broken', '  service: ledger\n  success: 120\n')], env());
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/\/spec\/success/);
    expect(await store.get(keys.policy('slo', 'demo', 'broken'))).toBeUndefined();
  });

  test('missed: one webhook page however many federations watch, the verdict recorded, an event on the page; then resolved', async () => {
    // No request on loopback is faster than 1 µs: this objective is missed from the first request.
    const tight = sloYaml('ledger-fast', `  service: ledger\n  latency: { percentile: 99, below: 0.001ms }\n  window: 5m\n  minRequests: 5\n  webhook: { urlFrom: { file: ${hookFile} } }\n`);
    const applied = await isthmus(['policy', 'apply', '-f', tight, '--output', 'json'], env());
    expect(applied.code).toBe(0);
    expect(JSON.parse(applied.stdout).applied).toEqual([{ kind: 'ServiceLevelObjective', name: 'demo/ledger-fast', change: 'created', changed: true }]);
    // The webhook URL is a secret: no key or value in etcd holds it, only the file's path.
    const everything = await store.list(keys.all);
    expect(everything.records.filter((r) => `${r.key} ${JSON.stringify(r.value)}`.includes(hookUrl)).map((r) => r.key)).toEqual([]);
    expect(everything.records.some((r) => JSON.stringify(r.value).includes(hookFile))).toBe(true);

    const { value: page } = await waitFor(async () => received.find((p) => p.state === 'violated'), 30_000, 'a violated webhook');
    expect(page).toMatchObject({ kind: 'isthmus.slo', slo: 'demo/ledger-fast', service: 'demo/ledger' });
    expect(page.burnRate.window).toBeGreaterThan(1);
    expect(page.observed.requests).toBeGreaterThanOrEqual(5);
    expect(page.summary).toMatch(/objective missed/);
    // Both federations evaluate every 5 s; give them three rounds to page twice if they would.
    await sleep(12_000);
    expect(received.filter((p) => p.state === 'violated')).toHaveLength(1);

    const status = await store.get<{ state: string; by: string }>(keys.sloStatus('demo', 'ledger-fast'));
    expect(status?.value.state).toBe('violated');
    expect(['east', 'west']).toContain(status?.value.by);
    const { value: onPage } = await waitFor(async () => {
      const o = await overview('east');
      const slo = o.slos.find((s) => s.name === 'ledger-fast');
      const event = o.events.find((e) => e.kind === 'slo-violated' && e.service === 'demo/ledger');
      return slo?.state === 'violated' && slo.alerted?.state === 'violated' && event ? { slo, event } : undefined;
    }, 15_000, 'the violated SLO and its event on the dashboard');
    expect(onPage.slo.burnRate.short).toBeGreaterThan(1);
    const scrape = await (await fetch(`http://${mesh.file.clusters.west!.metrics}/metrics`)).text();
    const burn = /^isthmus_slo_burn_rate\{cluster="west",slo="demo\/ledger-fast",destination_service="demo\/ledger",window="objective"\} (\S+)$/m.exec(scrape);
    expect(Number(burn?.[1])).toBeGreaterThan(1);

    // `isthmus check` says so too (a warning, not a failure: the mesh itself is fine).
    const check = await isthmus(['check', '--output', 'json'], env());
    expect(check.code).toBe(0);
    const results = (JSON.parse(check.stdout) as { checks: { name: string; status: string; detail: string }[] }).checks;
    expect(results.find((c) => c.name === 'dashboards')).toMatchObject({ status: 'ok', detail: '2 dashboard(s) answer' });
    expect(results.find((c) => c.name === 'service level objectives')).toMatchObject({ status: 'warn', detail: expect.stringMatching(/^missed: demo\/ledger-fast \(burn [0-9.]+ over 5m\)/) });

    const listed = await isthmus(['policy', 'list', '--output', 'json'], env());
    expect(listed.code).toBe(0);
    const policy = (JSON.parse(listed.stdout) as { policies: { name: string; verdict: { state: string } | null }[] }).policies.find((p) => p.name === 'ledger-fast');
    expect(policy?.verdict?.state).toBe('violated');

    // The same objective, relaxed: it holds again, and that is paged once too.
    const loose = sloYaml('ledger-fast', `  service: ledger\n  latency: { percentile: 99, below: 60s }\n  window: 5m\n  minRequests: 5\n  webhook: { urlFrom: { file: ${hookFile} } }\n`);
    expect((await isthmus(['policy', 'apply', '-f', loose], env())).code).toBe(0);
    const { value: resolved } = await waitFor(async () => received.find((p) => p.state === 'resolved'), 30_000, 'a resolved webhook');
    expect(resolved.burnRate.window).toBeLessThanOrEqual(1);
    await sleep(6000);
    expect(received.filter((p) => p.state === 'resolved')).toHaveLength(1);

    const deleted = await isthmus(['policy', 'delete', 'slo', 'demo/ledger-fast'], env());
    expect(deleted.code).toBe(0);
    expect(await store.get(keys.sloStatus('demo', 'ledger-fast'))).toBeUndefined();
  }, 120_000);
});
