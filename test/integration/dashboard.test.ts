import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startDevMesh, type DevMesh, type MeshFile } from '../../src/dev/dev-mesh.js';
import type { Overview } from '../../src/dashboard/overview.js';
import { waitFor } from '../helpers/cli.js';

const clusters = ['east', 'west', 'north'];
const pairs = clusters.flatMap((from) => clusters.filter((to) => to !== from).map((to) => `${from}→${to}`));
const resultsDir = fileURLToPath(new URL('../../test-results/', import.meta.url));
const chromiumPath = '/usr/bin/chromium';

let mesh: DevMesh;
let stateDir: string;
let meshFile: MeshFile;
let browser: Browser | undefined;
let browserProblem: string | undefined;

beforeAll(async () => {
  stateDir = mkdtempSync(join(tmpdir(), 'isthmus-dashboard-'));
  mesh = await startDevMesh({ clusters, stateDir, trustDomain: 'dev.test', gateways: 1, hostBase: 71, probeInterval: '1s', progress: () => undefined });
  meshFile = JSON.parse(readFileSync(join(stateDir, 'mesh.json'), 'utf8')) as MeshFile;
  browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync'],
  }).catch((err: unknown) => {
    browserProblem = `Chromium (${chromiumPath}) could not start: ${(err as Error).message.split('\n')[0]}`;
    console.warn(`SKIPPING the browser test: ${browserProblem}`);
    return undefined;
  });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await mesh?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

describe('dashboard on the federation\'s port 15014', () => {
  test('mesh.json names the first cluster\'s dashboard', () => {
    expect(meshFile.clusters.east?.metrics).toBe('127.0.71.1:15014');
    expect(meshFile.dashboard).toBe(`http://${meshFile.clusters.east!.metrics}/`);
  });

  test('GET /api/overview: clusters alive, services with healthy/total, and every probed pair', async () => {
    const { value: overview } = await waitFor(async () => {
      const o = (await (await fetch(`${meshFile.dashboard}api/overview`)).json()) as Overview;
      const measured = o.probes.filter((p) => p.p50Ms !== null).map((p) => `${p.from}→${p.to}`);
      // Exported counts follow the federations' health checks, which settle a moment after start.
      const healthy = o.services.every((s) => s.clusters.every((c) => c.healthy === c.total));
      return o.clusters.filter((c) => c.alive).length === 3 && pairs.every((p) => measured.includes(p)) && healthy ? o : undefined;
    }, 20_000, 'all 6 pairs measured and every endpoint healthy');
    expect(overview.servedBy).toBe('east');
    expect(overview.clusters.map((c) => c.name)).toEqual(['east', 'north', 'west']);
    const services = Object.fromEntries(overview.services.map((s) => [`${s.namespace}/${s.name}`, s.clusters]));
    expect(services['demo/hello']).toEqual(['east', 'north', 'west'].map((cluster) => ({ cluster, healthy: 2, total: 2 })));
    expect(services['demo/ledger']).toEqual([{ cluster: 'west', healthy: 1, total: 1 }]);
    for (const p of overview.probes) expect(p.p99Ms).toBeGreaterThanOrEqual(p.p50Ms ?? 0);
  }, 30_000);

  test('serves the page, our assets and uPlot from node_modules; /metrics still answers; unknown paths 404', async () => {
    const base = meshFile.dashboard!;
    const page = await fetch(base);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    expect(await page.text()).toContain('/assets/app.js');
    for (const [path, type] of [['assets/app.js', /javascript/], ['assets/style.css', /css/], ['assets/uplot.js', /javascript/], ['assets/uplot.css', /css/]] as const) {
      const res = await fetch(`${base}${path}`);
      expect(res.status, path).toBe(200);
      expect(res.headers.get('content-type'), path).toMatch(type);
    }
    expect(await (await fetch(`${base}assets/uplot.js`)).text()).toContain('uPlot');
    expect((await fetch(`${base}assets/../package.json`)).status).toBe(404);
    expect((await fetch(`${base}metrics`)).status).toBe(200);
  });

  test('GET /api/stream sends the overview as server-sent events', async () => {
    const controller = new AbortController();
    const res = await fetch(`${meshFile.dashboard}api/stream`, { signal: controller.signal });
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const reader = res.body!.getReader();
    let text = '';
    while (!text.includes('\n\n')) text += new TextDecoder().decode((await reader.read()).value);
    controller.abort();
    expect(text).toMatch(/^id: 1\nevent: overview\ndata: \{/);
    const overview = JSON.parse(/data: (.*)\n/.exec(text)![1]!) as Overview;
    expect(overview.clusters).toHaveLength(3);
  });

  test('in Chromium: 3 alive clusters, every off-diagonal matrix cell in ms, the services table, live updates', async ({ skip }) => {
    if (!browser) return skip(browserProblem);
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors: string[] = [];
    page.on('pageerror', (err) => errors.push(err.message));
    const opened = Date.now();
    await page.goto(meshFile.dashboard!);
    const alive = page.locator('#clusters li.alive');
    await expect.poll(() => alive.count(), { timeout: 10_000 }).toBe(3);
    const cells = page.locator('#matrix td.cell');
    await expect.poll(async () => {
      const texts = await cells.allTextContents();
      return texts.length === 6 && texts.every((t) => /^[0-9.]+ \/ [0-9.]+ ms/.test(t));
    }, { timeout: 10_000 - (Date.now() - opened) }).toBe(true);
    expect(await page.locator('#services tr[data-service]').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-service'))))
      .toEqual(['demo/hello', 'demo/ledger']);
    expect(await page.locator('#services tr[data-service="demo/ledger"] td').allTextContents()).toEqual(['demo/ledger', 'west', '–', '–', '1/1']);
    // Live: the stream pushes again within a few seconds, and the chart gets a second point.
    const stamp = await page.locator('#served-by').textContent();
    await expect.poll(() => page.locator('#served-by').textContent(), { timeout: 6_000 }).not.toBe(stamp);
    expect(await page.locator('#conn').textContent()).toBe('live');
    expect(await page.locator('#series canvas').count()).toBeGreaterThan(0);
    await page.waitForTimeout(2500);
    mkdirSync(resultsDir, { recursive: true });
    const shot = join(resultsDir, 'dashboard.png');
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`dashboard screenshot: ${shot} (rendered ${Date.now() - opened} ms after opening)`);
    expect(errors).toEqual([]);
    await page.close();
  }, 40_000);
});
