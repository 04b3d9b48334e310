import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { canaryRoute } from '../../src/dev/canary-files.js';
import { startDevMesh, type DevMesh, type MeshFile } from '../../src/dev/dev-mesh.js';
import { isthmusOk, waitFor } from '../helpers/cli.js';
import { dashboardTokens, launchChromium, sendFrom } from '../helpers/dashboard-page.js';
import { etcdEnv } from '../helpers/etcd.js';
import { viaProxy } from '../helpers/proxy.js';

// The manager view: one cluster on 127.0.191.1 with hello-v1 and hello-v2. An operator opens
// demo/hello's service page in Chromium, moves the canary route's weights, and the requests a
// client sends through its sidecar follow; the same write without a credential, or with a
// workload's token, is refused and changes nothing.
const resultsDir = fileURLToPath(new URL('../../test-results/', import.meta.url));
const hello = 'http://hello.demo.mesh/';

let mesh: DevMesh;
let stateDir: string;
let meshFile: MeshFile;
let operatorToken: string;
let workloadToken: string;
let browser: Browser;
let page: Page;
const env = () => etcdEnv(mesh.file);
const proxy = () => mesh.file.clusters.east!.client.proxy;

/** Which version answered each of `count` requests sent through east's client sidecar. */
async function versions(count: number): Promise<Record<string, number>> {
  const seen: Record<string, number> = {};
  for (let i = 0; i < count; i += 1) {
    const res = await viaProxy(proxy(), hello, 5000);
    const name = res.status === 200 ? String(res.body?.service) : `status ${res.status}`;
    seen[name] = (seen[name] ?? 0) + 1;
  }
  return seen;
}

async function storedWeights(): Promise<number[]> {
  const doc = JSON.parse((await isthmusOk(['policy', 'get', 'httproute', 'demo/hello-canary', '-o', 'json'], env())).stdout) as { spec: { rules: { backendRefs: { weight?: number }[] }[] } };
  return doc.spec.rules[1]!.backendRefs.map((b) => b.weight ?? 1);
}

beforeAll(async () => {
  stateDir = mkdtempSync(join(tmpdir(), 'isthmus-manager-'));
  mesh = await startDevMesh({ clusters: ['east'], stateDir, trustDomain: 'dev.test', hostBase: 191, versions: true, reportIntervalMs: 1000, progress: () => undefined });
  meshFile = JSON.parse(readFileSync(join(stateDir, 'mesh.json'), 'utf8')) as MeshFile;
  const route = join(stateDir, 'route.yaml');
  writeFileSync(route, `${canaryRoute(100, 0)}---
apiVersion: isthmus.dev/v1alpha1
kind: FaultInjection
metadata: { name: hello-chaos, namespace: demo }
spec:
  service: hello
  abort: { status: 503, percent: 0 }
  headers: [{ name: x-chaos, value: "on" }]
`);
  await isthmusOk(['policy', 'apply', '-f', route], env());
  ({ operator: operatorToken, workload: workloadToken } = await dashboardTokens(meshFile));
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await mesh?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

describe('the service page in Chromium', () => {
  test('an operator changes demo/hello\'s split weights on the page and the traffic through the sidecar follows', async () => {
    await waitFor(async () => ((await versions(10))['hello-v1'] === 10 ? true : undefined), 20_000, 'every request to hello-v1 at 100/0');
    const before = await versions(40);
    expect(before).toEqual({ 'hello-v1': 40 });

    // Sign in once (the token becomes a SameSite=Strict cookie), then click the service.
    await page.goto(`${meshFile.dashboard!}?token=${operatorToken}`);
    await page.locator('#services a[data-open-service="demo/hello"]').click();
    const split = page.locator('#service-body [data-split="HTTPRoute/hello-canary/1"]');
    await split.waitFor({ timeout: 10_000 });
    expect(await page.locator('#rollout-panel').textContent()).toContain('rollout: none');
    expect(await page.locator('#service-body [data-fault="hello-chaos"]').textContent()).toContain('abort with status 503 for 0%');
    const weights = split.locator('input[data-weight-index]');
    expect(await weights.evaluateAll((inputs) => inputs.map((i) => (i as unknown as { value: string }).value))).toEqual(['100', '0']);

    await weights.nth(0).fill('20');
    await weights.nth(1).fill('80');
    await split.locator('button[data-action="save-weights"]').click();
    await expect.poll(() => page.locator('#service-body [data-split="HTTPRoute/hello-canary/1"] .edit-status').textContent(), { timeout: 10_000 }).toMatch(/applied: HTTPRoute demo\/hello-canary changed/);
    expect(await storedWeights()).toEqual([20, 80]);

    // The sidecar follows: v2 answers most requests now (80% expected; 200 requests keep it well above half).
    const { value: after } = await waitFor(async () => {
      const seen = await versions(200);
      return (seen['hello-v2'] ?? 0) > 120 && (seen['hello-v1'] ?? 0) > 10 ? seen : undefined;
    }, 30_000, 'hello-v2 answering about 80% of the requests');
    expect((after['hello-v1'] ?? 0) + (after['hello-v2'] ?? 0)).toBe(200);

    // The live split on the page comes from the split's own backend choices, which the sidecars report.
    await expect.poll(async () => page.locator('#service-body [data-live-backend="demo/hello-v2"]').first().textContent(), { timeout: 30_000 }).toMatch(/^[1-9][0-9]?%$/);
    mkdirSync(resultsDir, { recursive: true });
    await page.locator('#service-page').screenshot({ path: join(resultsDir, 'dashboard-service-page.png') });
  }, 120_000);

  test('a bad weight is refused with the field\'s path, shown on the page, and nothing is written', async () => {
    const split = page.locator('#service-body [data-split="HTTPRoute/hello-canary/1"]');
    await split.locator('input[data-weight-index]').nth(0).fill('-5');
    await split.locator('button[data-action="save-weights"]').click();
    const status = split.locator('.edit-status');
    await expect.poll(() => status.textContent(), { timeout: 10_000 }).toMatch(/ISTHMUS_ERR_POLICY_INVALID/);
    expect(await status.textContent()).toContain('/spec/rules/1/backendRefs/0/weight');
    expect(await status.getAttribute('data-code')).toBe('ISTHMUS_ERR_POLICY_INVALID');
    await split.screenshot({ path: join(resultsDir, 'dashboard-service-page-refused.png') });
    expect(await storedWeights()).toEqual([20, 80]);
  }, 30_000);

  test('fault injection toggled on at 100% and off again from the page', async () => {
    const fault = page.locator('#service-body [data-fault="hello-chaos"]');
    await fault.locator('input[data-fault-on]').check();
    await fault.locator('input[data-fault-percent]').fill('100');
    await fault.locator('button[data-action="apply-fault"]').click();
    await expect.poll(() => page.locator('#service-body [data-fault="hello-chaos"]').textContent(), { timeout: 10_000 }).toContain('abort with status 503 for 100%');
    const { value: aborted } = await waitFor(async () => {
      const res = await viaProxy(proxy(), hello, 5000, { 'x-chaos': 'on' });
      return res.status === 503 ? res : undefined;
    }, 15_000, 'a 503 from the fault for a request with x-chaos: on');
    expect(aborted.headers['x-isthmus-error']).toBe('ISTHMUS_ERR_DATAPLANE_FAULT_INJECTED');
    expect((await viaProxy(proxy(), hello, 5000)).status).toBe(200);

    const again = page.locator('#service-body [data-fault="hello-chaos"]');
    await again.locator('input[data-fault-on]').uncheck();
    await again.locator('button[data-action="apply-fault"]').click();
    await expect.poll(() => page.locator('#service-body [data-fault="hello-chaos"]').textContent(), { timeout: 10_000 }).toContain('abort with status 503 for 0%');
    await waitFor(async () => ((await viaProxy(proxy(), hello, 5000, { 'x-chaos': 'on' })).status === 200 ? true : undefined), 15_000, 'x-chaos requests answered again');
  }, 60_000);

  test('the same write without a credential is 401, with a workload\'s token 403, as a form 415; the weights stay', async () => {
    const body = { kind: 'HTTPRoute', policy: 'hello-canary', rule: 1, weights: [100, 0] };
    const path = '/api/services/demo/hello/weights';
    const json = { 'content-type': 'application/json' };
    // A fresh browser context: the page, but no operator cookie.
    const context = await browser.newContext();
    const stranger = await context.newPage();
    await stranger.goto(meshFile.dashboard!);
    expect(await sendFrom(stranger, 'PUT', path, body, json)).toEqual({ status: 401, code: 'ISTHMUS_ERR_AUTH_CREDENTIAL_MISSING' });
    expect(await sendFrom(stranger, 'PUT', path, body, { ...json, authorization: `Bearer ${workloadToken}` })).toEqual({ status: 403, code: 'ISTHMUS_ERR_AUTH_FORBIDDEN' });
    await context.close();
    // Only the two writes take another method than GET: the federation's port refuses the rest.
    expect((await fetch(`${meshFile.dashboard!}api/overview`, { method: 'POST', headers: json, body: '{}' })).status).toBe(405);
    // The signed-in page: its cookie counts, but only for a JSON write.
    expect(await sendFrom(page, 'PUT', path, body, { 'content-type': 'text/plain' })).toEqual({ status: 415, code: 'ISTHMUS_ERR_API_NOT_JSON' });
    expect(await storedWeights()).toEqual([20, 80]);
    // And the page's refusal is shown there too: sign out (drop the cookie) and save.
    await page.context().clearCookies();
    const split = page.locator('#service-body [data-split="HTTPRoute/hello-canary/1"]');
    await split.locator('input[data-weight-index]').nth(0).fill('100');
    await split.locator('input[data-weight-index]').nth(1).fill('0');
    await split.locator('button[data-action="save-weights"]').click();
    await expect.poll(() => split.locator('.edit-status').getAttribute('data-code'), { timeout: 10_000 }).toBe('ISTHMUS_ERR_AUTH_CREDENTIAL_MISSING');
    expect(await storedWeights()).toEqual([20, 80]);
    const seen = await versions(40);
    expect(seen['hello-v2'] ?? 0).toBeGreaterThan(0);
  }, 60_000);
});
