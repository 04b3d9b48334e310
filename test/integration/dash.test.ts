import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync, mkdtempSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Overview } from '../../src/dashboard/overview.js';
import { startDevMesh, type DevMesh } from '../../src/dev/dev-mesh.js';
import { isthmus, isthmusBin, waitFor } from '../helpers/cli.js';
import { freePort } from '../helpers/ports.js';
import { etcdArgs } from '../helpers/etcd.js';

interface DashProcess { child: ChildProcess; url: string; signIn?: string; output(): string }

let mesh: DevMesh;
let stateDir: string;
const started: ChildProcess[] = [];

/** Runs `isthmus dash ... --output json` and reads the URL from its one line of output. */
async function startDash(args: string[], env: Record<string, string> = {}): Promise<DashProcess> {
  const child = spawn(process.execPath, [isthmusBin, 'dash', ...args, '--output', 'json'], {
    env: { ...process.env, ISTHMUS_ETCD: '', ISTHMUS_ETCD_CA: '', ISTHMUS_ETCD_CERT: '', ISTHMUS_ETCD_KEY: '', ISTHMUS_OPERATOR_DIR: '', XDG_CONFIG_HOME: '/nonexistent/isthmus-test-config', NO_COLOR: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  started.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
  child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
  const { value: printed } = await waitFor(async () => {
    if (child.exitCode !== null) throw new Error(`isthmus dash exited ${child.exitCode}: ${stdout}${stderr}`);
    const line = stdout.split('\n')[0];
    return stdout.includes('\n') && line ? (JSON.parse(line) as { url: string; signIn?: string }) : undefined;
  }, 15_000, 'isthmus dash to print its URL');
  return { child, ...printed, output: () => stdout + stderr };
}

function exitOf(child: ChildProcess): Promise<number | null> {
  return child.exitCode !== null ? Promise.resolve(child.exitCode) : new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

function refused(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, host);
    socket.once('connect', () => { socket.destroy(); resolve(false); });
    socket.once('error', () => resolve(true));
  });
}

beforeAll(async () => {
  stateDir = mkdtempSync(join(tmpdir(), 'isthmus-dash-'));
  mesh = await startDevMesh({ clusters: ['east', 'west'], stateDir, trustDomain: 'dev.test', gateways: 1, hostBase: 81, probeInterval: '1s', progress: () => undefined });
}, 120_000);

afterAll(async () => {
  for (const child of started) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await mesh?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

describe('isthmus dash: the dashboard from an operator\'s shell, straight from etcd', () => {
  test('serves the mesh as the federations see it (clusters, services, probes) and stops cleanly on SIGTERM', async () => {
    // With the operator credential dev up issued: dash prints an address that signs the browser in.
    const dash = await startDash([...etcdArgs(mesh.file), '--listen', '127.0.0.1:0'], { ISTHMUS_OPERATOR_DIR: mesh.file.operator });
    const { hostname, port } = new URL(dash.url);
    expect(hostname).toBe('127.0.0.1');
    expect(Number(port)).toBeGreaterThan(0);
    // Its data is for operators: none without the token, which the sign-in address trades for a cookie.
    const anonymous = await fetch(`${dash.url}api/overview`);
    expect(anonymous.status).toBe(401);
    expect(((await anonymous.json()) as { error: { code: string } }).error.code).toBe('ISTHMUS_ERR_AUTH_CREDENTIAL_MISSING');
    expect(dash.signIn).toMatch(/\?token=isthop_/);
    const signedIn = await fetch(dash.signIn!, { redirect: 'manual' });
    expect(signedIn.status).toBe(303);
    const cookie = (signedIn.headers.get('set-cookie') ?? '').split(';')[0]!;

    const { value: overview } = await waitFor(async () => {
      const o = (await (await fetch(`${dash.url}api/overview`, { headers: { cookie } })).json()) as Overview;
      const measured = o.probes.filter((p) => p.p50Ms !== null).map((p) => `${p.from}→${p.to}`);
      // hello, ledger and the TCP sample redis (setup installs redis-server).
      const healthy = o.services.length === 3 && o.services.every((s) => s.clusters.every((c) => c.healthy === c.total));
      return o.clusters.filter((c) => c.alive).length === 2 && measured.includes('east→west') && measured.includes('west→east') && healthy ? o : undefined;
    }, 30_000, 'both clusters alive, both probe pairs measured, every endpoint healthy');
    expect(overview.servedBy).toBe(`isthmus dash (etcd ${new URL(mesh.file.etcd).host})`);
    expect(overview.clusters.map((c) => c.name)).toEqual(['east', 'west']);
    const services = Object.fromEntries(overview.services.map((s) => [`${s.namespace}/${s.name}`, s.clusters]));
    expect(services['demo/hello']).toEqual(['east', 'west'].map((cluster) => ({ cluster, healthy: 2, total: 2 })));
    expect(services['demo/ledger']).toEqual([{ cluster: 'west', healthy: 1, total: 1 }]);
    expect(services['demo/redis']).toEqual([{ cluster: 'west', healthy: 1, total: 1 }]);

    const page = await fetch(dash.url);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    expect(await page.text()).toContain('/assets/app.js');
    expect(await (await fetch(`${dash.url}healthz`)).json()).toMatchObject({ status: 'ok', etcd: 'reachable' });
    expect(await (await fetch(`${dash.url}metrics`)).text()).toMatch(/^isthmus_catalog_clusters_alive\{cluster="dash"\} 2$/m);

    // A second dash on the same port is refused, naming the port and the flag to change.
    const taken = await isthmus(['dash', ...etcdArgs(mesh.file), '--listen', `127.0.0.1:${port}`]);
    expect(taken.code).toBe(1);
    expect(taken.stderr).toContain(`127.0.0.1:${port} is already in use`);
    expect(taken.stderr).toContain('--listen');

    const stoppedAt = Date.now();
    dash.child.kill('SIGTERM');
    expect(await exitOf(dash.child), dash.output()).toBe(0);
    expect(Date.now() - stoppedAt).toBeLessThan(5_000);
    expect(await refused('127.0.0.1', Number(port))).toBe(true);
  }, 90_000);

  test('--reads public serves the data to anyone who reaches the address, /api/sidecars aside', async () => {
    const dash = await startDash([...etcdArgs(mesh.file), '--listen', '127.0.0.1:0', '--reads', 'public']);
    expect(dash.signIn).toBeUndefined();
    expect((await fetch(`${dash.url}api/overview`)).status).toBe(200);
    expect((await fetch(`${dash.url}api/sidecars`)).status).toBe(401);
    dash.child.kill('SIGTERM');
    expect(await exitOf(dash.child), dash.output()).toBe(0);
  });

  test('an unreachable etcd fails at start: exit 1 within 15 s, ISTHMUS_ERR_ETCD_UNREACHABLE, naming the address', async () => {
    const etcd = `http://127.0.0.1:${await freePort()}`;
    const startedAt = Date.now();
    const result = await isthmus(['dash', '--listen', '127.0.0.1:0', '--output', 'json'], { ISTHMUS_ETCD: etcd });
    expect(result.code).toBe(1);
    expect(Date.now() - startedAt).toBeLessThan(15_000);
    const { error } = JSON.parse(result.stdout) as { error: { code: string; message: string } };
    expect(error.code).toBe('ISTHMUS_ERR_ETCD_UNREACHABLE');
    expect(error.message).toContain(etcd);
    expect(result.stderr).toMatch(/^isthmus dash: etcd at http:\/\/127\.0\.0\.1:\d+ did not answer/);
  });
});
