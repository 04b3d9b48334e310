import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startDevMesh, type DevMesh } from '../../src/dev/dev-mesh.js';
import { waitFor } from '../helpers/cli.js';
import { viaProxy } from '../helpers/proxy.js';

// A gateway taken out of service (a rolling update, a node drained) while another cluster sends
// through it: it withdraws its record, the callers' sidecars hear of it through the catalog and
// let go of their connections to it, each after its answer, and it stops once none is left. Two
// gateways in west (127.0.187.1, gateway admin ports 15021 and 15022); east sends to ledger,
// which only west runs. POSTs are in the traffic because a sidecar never retries a POST whose
// connection broke: a connection cut under a request shows as a failure.
let mesh: DevMesh;
let stateDir: string;
const eastProxy = () => mesh.file.clusters.east!.client.proxy;
const westHost = () => mesh.file.clusters.west!.host;

beforeAll(async () => {
  stateDir = mkdtempSync(join(tmpdir(), 'isthmus-gateway-drain-'));
  mesh = await startDevMesh({ clusters: ['east', 'west'], stateDir, trustDomain: 'dev.test', gateways: 2, hostBase: 186, progress: () => undefined });
  await waitFor(async () => (await viaProxy(eastProxy(), 'http://ledger.demo.mesh/')).status === 200, 15_000, 'ledger reachable from east');
}, 120_000);

afterAll(async () => {
  await mesh?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

/** One request through east's outbound proxy; a POST carries a small body. */
function send(method: 'GET' | 'POST', path: string): Promise<{ status: number; error?: string }> {
  const proxy = eastProxy();
  const split = proxy.lastIndexOf(':');
  return new Promise((resolve) => {
    const req = request({ host: proxy.slice(0, split), port: Number(proxy.slice(split + 1)), method, path: `http://ledger.demo.mesh${path}`, headers: { host: 'ledger.demo.mesh' }, timeout: 5000 }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => { text += c.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, ...(res.statusCode === 200 ? {} : { error: text.slice(0, 200) }) }));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (err) => resolve({ status: 0, error: err.message }));
    req.end(method === 'POST' ? JSON.stringify({ order: 1 }) : undefined);
  });
}

/** Concurrent loops of requests until stopped: two of GETs, two of POSTs that take 150 ms to answer. */
function traffic() {
  const results: { method: string; status: number; error?: string }[] = [];
  let running = true;
  const loop = async (method: 'GET' | 'POST', path: string) => {
    while (running) results.push({ method, ...(await send(method, path)) });
  };
  const loops = [loop('GET', '/?delay=20'), loop('GET', '/?delay=20'), loop('POST', '/orders?delay=150'), loop('POST', '/orders?delay=150')];
  return {
    results,
    async stop() {
      running = false;
      await Promise.all(loops);
      return results;
    },
  };
}

async function gatewayStats(adminPort: number): Promise<{ active: number; routed: number }> {
  return await (await fetch(`http://${westHost()}:${adminPort}/stats`)).json() as { active: number; routed: number };
}

async function ledgerGateways(): Promise<string[]> {
  const route = await (await fetch(`http://${mesh.file.clusters.east!.client.admin}/routes/demo/ledger`)).json() as { localities: { endpoints: { address: string }[] }[] };
  return route.localities.flatMap((l) => l.endpoints.map((e) => e.address)).sort();
}

describe('a gateway that drains', () => {
  test('withdraws itself, its callers let go of their connections after their answers, and it stops with none cut', async () => {
    const gw1 = mesh.gateways.find((g) => g.cluster === 'west' && g.id === 'gw-1')!;
    const gw2 = mesh.gateways.find((g) => g.cluster === 'west' && g.id === 'gw-2')!;
    expect(await ledgerGateways()).toEqual([gw1.address, gw2.address].sort());

    const load = traffic();
    // Both gateways carry some of it before the drain starts.
    await waitFor(async () => (await gatewayStats(15021)).active > 0 && (await gatewayStats(15022)).active > 0, 10_000, 'connections through both west gateways');
    const routedBefore = (await gatewayStats(15021)).routed;

    // Every connection through gw-1 ended by its caller's choice: none was left for the 5 s drainTimeout to cut.
    expect(await gw1.drain!()).toBe(0);
    expect(await ledgerGateways()).toEqual([gw2.address]);
    // No new connection reached gw-1 after the callers heard: it took none while it kept listening.
    const routedAfter = (await gatewayStats(15021)).routed;
    await gw1.stop();

    await new Promise((r) => setTimeout(r, 1000));
    const results = await load.stop();
    const failed = results.filter((r) => r.status !== 200);
    expect(failed).toEqual([]);
    expect(results.filter((r) => r.method === 'POST').length).toBeGreaterThan(10);
    expect(routedAfter - routedBefore).toBeLessThan(10);
  });
});
