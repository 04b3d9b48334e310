import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser } from 'playwright-core';
import { parse } from 'yaml';
import { afterAll, beforeAll, expect, test } from 'vitest';
import type { Overview } from '../../src/dashboard/overview.js';
import { isthmus, waitFor } from '../helpers/cli.js';
import { TestMesh, type TestOperator } from '../helpers/mesh.js';
import { etcdEnv } from '../helpers/etcd.js';

const resultsDir = fileURLToPath(new URL('../../test-results/', import.meta.url));
const chromiumPath = '/usr/bin/chromium';

// Two clusters joined without --gateway, on 127.0.250.1 and 127.0.250.2.
let mesh: TestMesh;
let operator: TestOperator;
let browser: Browser;
let dashboard: string;

beforeAll(async () => {
  mesh = await TestMesh.create();
  const ca = await mesh.caInit('ca', 'mesh.test');
  const east = await mesh.join('east', { index: 250, host: '127.0.250.1', ca });
  await mesh.join('west', { index: 250, host: '127.0.250.2', ca });
  await mesh.startFederation('east');
  await mesh.startFederation('west');
  operator = await mesh.operator(ca);
  dashboard = `http://${east.host}:${parse(readFileSync(east.config, 'utf8')).federation.dashboardPort}/`;
  browser = await chromium.launch({ executablePath: chromiumPath, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await mesh?.close();
});

test('a cluster with no gateway is "no gateway" on the page, not a failing probe, and `isthmus check` names the same thing; /favicon.ico is served and the page logs no error (screenshot)', async () => {
  // Both federations have probed: the records say "failed" (there is nothing to probe).
  await waitFor(async () => {
    const o = (await (await fetch(`${dashboard}api/overview`, { headers: operator.headers() })).json()) as Overview;
    return o.clusters.filter((c) => c.alive).length === 2 && o.probes.length === 2 && o.probes.every((p) => p.failures > 0);
  }, 20_000, 'probe records from both clusters');

  const favicon = await fetch(`${dashboard}favicon.ico`);
  expect(favicon.status).toBe(200);
  expect(favicon.headers.get('content-type')).toBe('image/svg+xml');

  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const problems: string[] = [];
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  page.on('pageerror', (err) => problems.push(`page: ${err.message}`));
  page.on('response', (r) => { if (r.status() >= 400) problems.push(`${r.status()} ${r.url()}`); });
  try {
    // The page's data is for operators: the sign-in address sets the browser's cookie.
    await page.goto(`${dashboard}?token=${operator.headers().authorization!.slice('Bearer '.length)}`);
    const cells = page.locator('#matrix td.cell[data-view="probes"]');
    await expect.poll(() => cells.allTextContents(), { timeout: 10_000 }).toEqual(['no gateway', 'no gateway']);
    expect(await cells.evaluateAll((tds) => tds.map((td) => td.className))).toEqual(['cell no-gateway', 'cell no-gateway']);
    expect(await page.locator('#matrix').textContent()).not.toMatch(/failing|failed/);
    expect(await page.locator('#map line.link').evaluateAll((ls) => ls.map((l) => l.getAttribute('class')))).toEqual(['link no-gateway', 'link no-gateway']);
    expect(await page.locator('#events li[data-kind]').count()).toBe(0);
    mkdirSync(resultsDir, { recursive: true });
    await page.screenshot({ path: join(resultsDir, 'dashboard-no-gateway.png'), fullPage: true });
    expect(problems).toEqual([]);
  } finally {
    await page.close();
  }

  const check = await isthmus(['check', '--output', 'json'], { ...etcdEnv(mesh.etcd), ...operator.env });
  expect(check.code).toBe(0); // a warning: the control plane itself is fine
  const gateways = (JSON.parse(check.stdout) as { checks: { name: string; status: string; detail: string; hint?: string }[] }).checks.find((c) => c.name === 'east-west gateways');
  expect(gateways).toMatchObject({ status: 'warn', detail: 'no gateway: east, west (other clusters cannot reach their services)', hint: expect.stringMatching(/--gateway <host:port>/) });
});
