import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { keys } from '../../src/core/keys.js';
import type { Overview } from '../../src/dashboard/overview.js';
import { startDevMesh, type DevMesh } from '../../src/dev/dev-mesh.js';
import type { SloWebhookPayload } from '../../src/federation/slo-alerter.js';
import { webhookReceiver, type WebhookReceiver } from '../helpers/webhook.js';
import { FederationStore } from '../../src/federation/store.js';
import type { PolicyRecord } from '../../src/model/policy-records.js';
import type { RolloutRecord } from '../../src/model/rollout.js';
import { isthmus, waitFor } from '../helpers/cli.js';
import { etcdEnv, storeOptions } from '../helpers/etcd.js';

// Two clusters on 127.0.201.1 / 127.0.202.1, each running hello-v1 and hello-v2, with sample
// traffic to hello from both clusters' clients; sidecars report every second.
let mesh: DevMesh;
let stateDir: string;
let store: FederationStore;
let hook: WebhookReceiver;
let pages: SloWebhookPayload[] = [];
const env = () => etcdEnv(mesh.file);
/** The error code a refused command prints with --output json. */
const codeOf = (stdout: string) => (JSON.parse(stdout) as { error: { code: string; message: string } }).error;

const rolloutOf = async (service = 'hello') => (await store.get<RolloutRecord>(keys.rollout('demo', service)))?.value;
const overview = async (cluster: string): Promise<Overview> =>
  (await (await fetch(`http://${mesh.file.clusters[cluster]!.metrics}/api/overview`)).json()) as Overview;

/** The `version` of `count` answers of hello through east's client sidecar. */
async function versionsAnswering(count: number): Promise<Set<string>> {
  const seen = new Set<string>();
  for (let i = 0; i < count; i += 1) {
    const res = await request(`http://${mesh.file.clusters.east!.client.proxy}/`, { headers: { host: 'hello.demo.mesh' } });
    const body = (await res.body.json()) as { version?: string };
    if (res.statusCode === 200 && body.version) seen.add(body.version);
  }
  return seen;
}

function objective(name: string, service: string, webhookFile: string): string {
  const file = join(stateDir, `${name}.yaml`);
  writeFileSync(file, [
    'apiVersion: isthmus.dev/v1alpha1', 'kind: ServiceLevelObjective', `metadata: { name: ${name}, namespace: demo }`, 'spec:',
    `  service: ${service}`, '  latency: { percentile: 99, below: 1s }', '  window: 1m', '  minRequests: 5',
    `  webhook: { urlFrom: { file: ${webhookFile} } }`, '',
  ].join('\n'));
  return file;
}

beforeAll(async () => {
  stateDir = mkdtempSync(join(tmpdir(), 'isthmus-rollout-'));
  hook = await webhookReceiver('127.0.201.1');
  pages = hook.pages;
  writeFileSync(join(stateDir, 'webhook-url'), `${hook.url}\n`, { mode: 0o600 });
  mesh = await startDevMesh({
    clusters: ['east', 'west'], stateDir, trustDomain: 'dev.test', hostBase: 201, versions: true, traffic: 10, reportIntervalMs: 1000, progress: () => undefined,
  });
  store = await FederationStore.connect(storeOptions(mesh.file));
  for (const [name, service] of [['v2-fast', 'hello-v2'], ['v1-fast', 'hello-v1'], ['quiet-fast', 'quiet-v2']]) {
    const applied = await isthmus(['policy', 'apply', '-f', objective(name!, service!, join(stateDir, 'webhook-url'))], env());
    expect(applied.code, applied.stderr).toBe(0);
  }
}, 120_000);

afterAll(async () => {
  await store?.close();
  await mesh?.stop();
  await hook?.close();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

describe('rollouts gated by an objective', () => {
  test('a rollout that cannot work is refused by name and writes nothing', async () => {
    const steps = await isthmus(['rollout', 'start', 'hello', '-n', 'demo', '--from', 'hello-v1', '--to', 'hello-v2', '--steps', '50,10', '--objective', 'v2-fast', '-o', 'json'], env());
    expect(steps.code).toBe(1);
    expect(codeOf(steps.stdout).code).toBe('ISTHMUS_ERR_ROLLOUT_INVALID');
    expect(steps.stderr).toMatch(/--steps 50,10: each step must send more traffic/);
    const noObjective = await isthmus(['rollout', 'start', 'hello', '-n', 'demo', '--from', 'hello-v1', '--to', 'hello-v2', '--objective', 'nope', '-o', 'json'], env());
    expect(noObjective.code).toBe(1);
    expect(codeOf(noObjective.stdout)).toMatchObject({ code: 'ISTHMUS_ERR_ROLLOUT_INVALID', message: expect.stringMatching(/demo\/nope/) });
    // An objective on another service than --to would not judge the new version.
    const elsewhere = await isthmus(['rollout', 'start', 'hello', '-n', 'demo', '--from', 'hello-v1', '--to', 'hello-v2', '--objective', 'v1-fast', '-o', 'json'], env());
    expect(elsewhere.code).toBe(1);
    expect(codeOf(elsewhere.stdout)).toMatchObject({ code: 'ISTHMUS_ERR_ROLLOUT_INVALID', message: expect.stringMatching(/^--objective v1-fast judges demo\/hello-v1, not demo\/hello-v2/) });
    const status = await isthmus(['rollout', 'status', 'hello', '-n', 'demo', '-o', 'json'], env());
    expect(status.code).toBe(1);
    expect(codeOf(status.stdout).code).toBe('ISTHMUS_ERR_ROLLOUT_NOT_FOUND');
    expect(await rolloutOf()).toBeUndefined();
  });

  test('pause, resume and abort from the CLI: JSON for scripts, exit codes, and abort sends every request back to --from', async () => {
    const json = async (args: string[]) => {
      const res = await isthmus(['rollout', ...args, '-n', 'demo', '-o', 'json'], env());
      expect(res.code, res.stderr).toBe(0);
      return JSON.parse(res.stdout) as RolloutRecord;
    };
    await json(['start', 'quiet', '--from', 'quiet-v1', '--to', 'quiet-v2', '--steps', '50,100', '--interval', '1m', '--objective', 'quiet-fast']);
    expect((await json(['pause', 'quiet'])).phase).toBe('paused');
    const again = await isthmus(['rollout', 'pause', 'quiet', '-n', 'demo', '-o', 'json'], env());
    expect(again.code).toBe(1);
    expect(codeOf(again.stdout).code).toBe('ISTHMUS_ERR_ROLLOUT_ACTIVE');
    expect((await json(['resume', 'quiet'])).phase).toBe('progressing');
    const table = await isthmus(['rollout', 'status', '-n', 'demo'], env());
    expect(table.stdout).toMatch(/^demo\/quiet\s+progressing\s+quiet-v1\s+quiet-v2\s+1\/2 \(50%\)\s+quiet-fast/m);
    const aborted = await json(['abort', 'quiet']);
    expect(aborted).toMatchObject({ phase: 'aborted', history: [{ step: 0, weight: 50 }] });
    expect((await store.get<PolicyRecord>(keys.policy('trafficsplit', 'demo', 'quiet-rollout')))?.value.spec)
      .toEqual({ service: 'quiet', backends: [{ service: 'quiet-v1', weight: 100 }, { service: 'quiet-v2', weight: 0 }] });
    await isthmus(['policy', 'delete', 'trafficsplit', 'demo/quiet-rollout'], env());
  });

  test('a step whose objective has too few requests is held past its interval, and status says it waits for them', async () => {
    // quiet-v2 gets no traffic: quiet-fast (minRequests 5) has no verdict, so the 1 s step must not give way.
    const started = await isthmus(['rollout', 'start', 'quiet', '-n', 'demo', '--from', 'quiet-v1', '--to', 'quiet-v2', '--steps', '50,100', '--interval', '1s', '--objective', 'quiet-fast'], env());
    expect(started.code, started.stderr).toBe(0);
    const { value: held } = await waitFor(async () => {
      const r = await rolloutOf('quiet');
      return r?.waiting ? r : undefined;
    }, 20_000, 'the driver to say why the step is held');
    expect(held.waiting).toMatchObject({ reason: 'too-few-requests', requests: 0, minRequests: 5 });
    const status = await isthmus(['rollout', 'status', 'quiet', '-n', 'demo'], env());
    expect(status.stdout).toMatch(/held: waiting for 5 requests to quiet-v2 \(0 of the 5 quiet-fast needs in its window for a verdict\)/);
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const later = await rolloutOf('quiet');
    expect(later?.phase).toBe('progressing');
    expect(later?.history.map((h) => h.step)).toEqual([0]);
    expect((await isthmus(['rollout', 'abort', 'quiet', '-n', 'demo'], env())).code).toBe(0);
    expect((await rolloutOf('quiet'))?.waiting).toBeUndefined();
    await isthmus(['policy', 'delete', 'trafficsplit', 'demo/quiet-rollout'], env());
  }, 40_000);

  test('a healthy v2 reaches 100% step by step and says so: status succeeded, an event, every answer from v2', async () => {
    const started = await isthmus(['rollout', 'start', 'hello', '-n', 'demo', '--from', 'hello-v1', '--to', 'hello-v2', '--steps', '10,50,100', '--interval', '3s', '--objective', 'v2-fast', '--output', 'json'], env());
    expect(started.code, started.stderr).toBe(0);
    expect((JSON.parse(started.stdout) as RolloutRecord).history).toMatchObject([{ step: 0, weight: 10 }]);
    const split = (await store.get<PolicyRecord>(keys.policy('trafficsplit', 'demo', 'hello-rollout')))?.value;
    expect(split?.spec).toEqual({ service: 'hello', backends: [{ service: 'hello-v1', weight: 90 }, { service: 'hello-v2', weight: 10 }] });

    const { value: done } = await waitFor(async () => {
      const r = await rolloutOf();
      return r && r.phase !== 'progressing' ? r : undefined;
    }, 40_000, 'the rollout to end');
    expect(done.phase).toBe('succeeded');
    expect(done.history.map((s) => [s.step, s.weight])).toEqual([[0, 10], [1, 50], [2, 100]]);
    // Each step held for the interval, counted from its recorded start.
    for (let i = 1; i < done.history.length; i += 1) {
      expect(Date.parse(done.history[i]!.startedAt) - Date.parse(done.history[i - 1]!.startedAt)).toBeGreaterThanOrEqual(3000);
    }
    const status = await isthmus(['rollout', 'status', 'hello', '-n', 'demo'], env());
    expect(status.stdout).toMatch(/rollout demo\/hello: succeeded/);
    expect((await store.get<PolicyRecord>(keys.policy('trafficsplit', 'demo', 'hello-rollout')))?.value.spec)
      .toEqual({ service: 'hello', backends: [{ service: 'hello-v1', weight: 0 }, { service: 'hello-v2', weight: 100 }] });
    const { value: events } = await waitFor(async () => {
      // Every dashboard shows every cluster's events: west's shows the one its driver recorded, whichever drove.
      const all = (await overview('west')).events;
      return all.some((e) => e.kind === 'rollout-succeeded') ? all : undefined;
    }, 10_000, 'a rollout-succeeded event on the dashboard');
    expect(events.filter((e) => e.kind === 'rollout-succeeded' && e.service === 'demo/hello')).toHaveLength(1);
    // The sidecars follow the split: every answer now comes from v2.
    const { value: versions } = await waitFor(async () => {
      const seen = await versionsAnswering(10);
      return seen.size === 1 ? seen : undefined;
    }, 10_000, 'answers from one version only');
    expect([...versions]).toEqual(['v2']);
    expect(pages).toEqual([]);
  }, 60_000);

  test('a slow new version is rolled back by its objective at the first step, with one page and one event', async () => {
    for (const w of mesh.workloads) if (w.spec.service === 'hello-v1') w.setAppDelay(2000);
    const started = await isthmus(['rollout', 'start', 'hello', '-n', 'demo', '--to', 'hello-v1', '--steps', '20,60,100', '--interval', '30s', '--objective', 'v1-fast'], env());
    expect(started.code, started.stderr).toBe(0);
    // --from defaults to the last succeeded rollout's --to.
    expect((await rolloutOf())?.from).toBe('hello-v2');

    const { value: done } = await waitFor(async () => {
      const r = await rolloutOf();
      return r && r.phase !== 'progressing' ? r : undefined;
    }, 30_000, 'the rollout to end');
    expect(done.phase).toBe('rolled-back');
    // Rolled back while the first step held: it never went on to 60%.
    expect(done.history.map((s) => s.step)).toEqual([0]);
    expect(done.ended?.burnRate).toBeGreaterThan(1);
    expect((await store.get<PolicyRecord>(keys.policy('trafficsplit', 'demo', 'hello-rollout')))?.value.spec)
      .toEqual({ service: 'hello', backends: [{ service: 'hello-v2', weight: 100 }, { service: 'hello-v1', weight: 0 }] });

    await waitFor(async () => pages.length > 0, 10_000, 'a page');
    // Both federations watch the objective and every alerter round goes on: still one page.
    await new Promise((resolve) => setTimeout(resolve, 6000));
    expect(pages, JSON.stringify(pages)).toHaveLength(1);
    expect(pages[0]).toMatchObject({ kind: 'isthmus.slo', state: 'violated', slo: 'demo/v1-fast' });
    expect(pages[0]!.rollout).toMatch(/rolled back at step 1 .*20% to hello-v1/);
    const events = (await overview('west')).events.filter((e) => e.kind === 'rollout-rolled-back');
    expect(events).toHaveLength(1);
    const status = JSON.parse((await isthmus(['rollout', 'status', 'hello', '-n', 'demo', '--output', 'json'], env())).stdout) as RolloutRecord;
    expect(status.phase).toBe('rolled-back');
    const finished = await isthmus(['rollout', 'abort', 'hello', '-n', 'demo', '-o', 'json'], env());
    expect(finished.code).toBe(1);
    expect(codeOf(finished.stdout).code).toBe('ISTHMUS_ERR_ROLLOUT_FINISHED');
    // The sidecars follow: every answer comes from v2 again.
    const { value: versions } = await waitFor(async () => {
      const seen = await versionsAnswering(10);
      return seen.size === 1 ? seen : undefined;
    }, 10_000, 'answers from v2 only');
    expect([...versions]).toEqual(['v2']);
  }, 60_000);
});
