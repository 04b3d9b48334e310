import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { keys } from '../../src/core/keys.js';
import { startDevMesh, type DevMesh, type MeshFile } from '../../src/dev/dev-mesh.js';
import { FederationStore } from '../../src/federation/store.js';
import type { PolicyRecord } from '../../src/model/policy-records.js';
import type { RolloutRecord } from '../../src/model/rollout.js';
import { isthmusOk, waitFor } from '../helpers/cli.js';
import { dashboardTokens, launchChromium, sendFrom } from '../helpers/dashboard-page.js';
import { etcdEnv, storeOptions } from '../helpers/etcd.js';

// The rollout panel in Chromium: one cluster on 127.0.195.1 with hello-v1 and hello-v2 and
// sample traffic to hello. An operator starts a rollout of demo/hello from the service page and
// watches it go step by step to success, starts another and aborts it; the same writes without
// a credential, or with a workload's token, are refused and change nothing.
const resultsDir = fileURLToPath(new URL('../../test-results/', import.meta.url));

let mesh: DevMesh;
let stateDir: string;
let meshFile: MeshFile;
let store: FederationStore;
let operatorToken: string;
let workloadToken: string;
let browser: Browser;
let page: Page;
const env = () => etcdEnv(mesh.file);
const rollout = async () => (await store.get<RolloutRecord>(keys.rollout('demo', 'hello')))?.value;
const splitSpec = async () => (await store.get<PolicyRecord>(keys.policy('trafficsplit', 'demo', 'hello-rollout')))?.value.spec;
const panel = () => page.locator('#rollout-panel');

function objective(name: string, service: string): string {
  const file = join(stateDir, `${name}.yaml`);
  writeFileSync(file, `apiVersion: isthmus.dev/v1alpha1\nkind: ServiceLevelObjective\nmetadata: { name: ${name}, namespace: demo }\nspec:\n  service: ${service}\n  latency: { percentile: 99, below: 1s }\n  window: 1m\n  minRequests: 3\n`);
  return file;
}

/** Fills the panel's start form and submits it. */
async function startFromPage(fields: Record<string, string>): Promise<void> {
  const form = panel().locator('form[data-section="rollout-start"]');
  await form.waitFor({ timeout: 10_000 });
  for (const [name, value] of Object.entries(fields)) await form.locator(`input[name="${name}"]`).fill(value);
  await form.locator('button[data-action="rollout-start"]').click();
}

beforeAll(async () => {
  stateDir = mkdtempSync(join(tmpdir(), 'isthmus-rollout-page-'));
  mesh = await startDevMesh({ clusters: ['east'], stateDir, trustDomain: 'dev.test', hostBase: 195, versions: true, traffic: 20, reportIntervalMs: 1000, progress: () => undefined });
  meshFile = JSON.parse(readFileSync(join(stateDir, 'mesh.json'), 'utf8')) as MeshFile;
  store = await FederationStore.connect(storeOptions(mesh.file));
  for (const [name, service] of [['v2-fast', 'hello-v2'], ['v1-fast', 'hello-v1']] as const) await isthmusOk(['policy', 'apply', '-f', objective(name, service)], env());
  ({ operator: operatorToken, workload: workloadToken } = await dashboardTokens(meshFile));
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 960, height: 900 } });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await store?.close();
  await mesh?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

describe('the rollout panel in Chromium', () => {
  test('an operator starts a rollout of demo/hello on the page and watches it go step by step to success', async () => {
    await page.goto(`${meshFile.dashboard!}?token=${operatorToken}`);
    await page.locator('#services a[data-open-service="demo/hello"]').click();
    await expect.poll(() => panel().textContent(), { timeout: 10_000 }).toContain('rollout: none');
    await startFromPage({ to: 'hello-v2', from: 'hello-v1', steps: '20,60,100', interval: '4s', objective: 'v2-fast' });
    await expect.poll(() => panel().getAttribute('data-rollout'), { timeout: 10_000 }).toBe('progressing');
    expect((await rollout())?.history).toMatchObject([{ step: 0, weight: 20, by: 'dashboard' }]);
    expect(await splitSpec()).toEqual({ service: 'hello', backends: [{ service: 'hello-v1', weight: 80 }, { service: 'hello-v2', weight: 20 }] });

    // In progress: the first step marked current, the time left, the objective and its burn rate.
    await expect.poll(() => panel().locator('[data-step="0"]').getAttribute('data-state'), { timeout: 5_000 }).toBe('current');
    expect(await panel().locator('[data-section="rollout-step"]').textContent()).toMatch(/^step 1 of 3: 20% of requests to hello-v2 · \d+s left in this step/);
    expect(await panel().locator('[data-section="rollout-objective"]').textContent()).toMatch(/^objective v2-fast on hello-v2: burn rate /);
    // The rollout owns its split: the page does not offer to edit its weights while it runs.
    expect(await page.locator('#service-body [data-split="TrafficSplit/hello-rollout/0"] button[data-action="save-weights"]').isDisabled()).toBe(true);

    // The page follows every step, in order, as the driver begins them.
    const seen: number[] = [];
    let pictured = false;
    await waitFor(async () => {
      const current = await panel().locator('[data-state="current"]').getAttribute('data-step', { timeout: 500 }).catch(() => null);
      if (current !== null && seen.at(-1) !== Number(current)) seen.push(Number(current));
      // The picture for docs/images: the second step, once the objective has a verdict to show.
      if (!pictured && current === '1' && /burn rate \d/.test(await panel().locator('[data-section="rollout-objective"]').textContent() ?? '')) {
        mkdirSync(resultsDir, { recursive: true });
        await page.locator('#service-page').screenshot({ path: join(resultsDir, 'dashboard-rollout-panel.png') });
        pictured = true;
      }
      return (await panel().getAttribute('data-rollout')) === 'succeeded' ? true : undefined;
    }, 60_000, 'the page to show the rollout succeeded');
    expect(seen).toEqual([0, 1, 2]);
    expect(pictured).toBe(true);
    // Ended: its split is the operator's to edit again.
    await expect.poll(() => page.locator('#service-body [data-split="TrafficSplit/hello-rollout/0"] button[data-action="save-weights"]').isDisabled(), { timeout: 10_000 }).toBe(false);
    expect(await panel().locator('li[data-state="done"]').count()).toBe(3);
    expect(await panel().locator('[data-section="rollout-ended"]').textContent()).toMatch(/^succeeded: every step held; hello-v2 has every request/);
    expect((await rollout())?.history.map((h) => h.weight)).toEqual([20, 60, 100]);
    expect(await splitSpec()).toEqual({ service: 'hello', backends: [{ service: 'hello-v1', weight: 0 }, { service: 'hello-v2', weight: 100 }] });
  }, 120_000);

  test('an operator starts another rollout and aborts it from the page: every request back to --from', async () => {
    // A bad field first: the page shows the refusal naming it, and nothing is written.
    await startFromPage({ to: 'hello-v1', from: '', steps: '60,20', interval: '1m', objective: 'v1-fast' });
    const status = panel().locator('[data-section="rollout-status"]');
    await expect.poll(() => status.getAttribute('data-code'), { timeout: 10_000 }).toBe('ISTHMUS_ERR_ROLLOUT_INVALID');
    expect(await status.textContent()).toContain('steps 60,20: each step must send more traffic than the one before');
    expect((await rollout())?.phase).toBe('succeeded');

    await startFromPage({ to: 'hello-v1', from: '', steps: '30,100', interval: '1m', objective: 'v1-fast' });
    await expect.poll(() => panel().getAttribute('data-rollout'), { timeout: 10_000 }).toBe('progressing');
    // --from defaults to the last succeeded rollout's --to, as for the CLI.
    expect(await rollout()).toMatchObject({ from: 'hello-v2', to: 'hello-v1', history: [{ step: 0, weight: 30 }] });
    await panel().locator('button[data-action="rollout-abort"]').click();
    await expect.poll(() => panel().getAttribute('data-rollout'), { timeout: 10_000 }).toBe('aborted');
    expect(await panel().locator('[data-section="rollout-ended"]').textContent()).toMatch(/^aborted: aborted; every request back to hello-v2 \(dashboard,/);
    expect(await panel().locator('li[data-step="0"]').getAttribute('data-state')).toBe('stopped');
    expect(await rollout()).toMatchObject({ phase: 'aborted', ended: { by: 'dashboard' } });
    expect(await splitSpec()).toEqual({ service: 'hello', backends: [{ service: 'hello-v2', weight: 100 }, { service: 'hello-v1', weight: 0 }] });
  }, 60_000);

  test('the same writes without a credential are 401, with a workload\'s token 403; nothing changes', async () => {
    const json = { 'content-type': 'application/json' };
    const context = await browser.newContext();
    const stranger = await context.newPage();
    await stranger.goto(meshFile.dashboard!);
    const start = { to: 'hello-v1', steps: '50,100', interval: '1m', objective: 'v1-fast' };
    for (const [path, body] of [['/api/services/demo/hello/rollout', start], ['/api/services/demo/hello/rollout/abort', {}], ['/api/services/demo/hello/rollout/pause', {}]] as const) {
      expect(await sendFrom(stranger, 'POST', path, body, json), path).toEqual({ status: 401, code: 'ISTHMUS_ERR_AUTH_CREDENTIAL_MISSING' });
      expect(await sendFrom(stranger, 'POST', path, body, { ...json, authorization: `Bearer ${workloadToken}` }), path).toEqual({ status: 403, code: 'ISTHMUS_ERR_AUTH_FORBIDDEN' });
    }
    // The page itself, signed out: its start is refused and says so.
    await stranger.locator('#services a[data-open-service="demo/hello"]').click();
    const form = stranger.locator('#rollout-panel form[data-section="rollout-start"]');
    await form.waitFor({ timeout: 10_000 });
    for (const [name, value] of Object.entries(start)) await form.locator(`input[name="${name}"]`).fill(value);
    await form.locator('button[data-action="rollout-start"]').click();
    await expect.poll(() => stranger.locator('#rollout-panel [data-section="rollout-status"]').getAttribute('data-code'), { timeout: 10_000 }).toBe('ISTHMUS_ERR_AUTH_CREDENTIAL_MISSING');
    await context.close();
    expect((await rollout())?.phase).toBe('aborted');
  }, 60_000);
});
