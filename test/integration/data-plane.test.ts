import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startDevMesh, type DevMesh } from '../../src/dev/dev-mesh.js';
import type { Overview } from '../../src/dashboard/overview.js';
import { waitFor } from '../helpers/cli.js';
import { steadyTraffic, viaProxy } from '../helpers/proxy.js';

let mesh: DevMesh;
let stateDir: string;
const eastProxy = () => mesh.file.clusters.east!.client.proxy;

// The same mesh `isthmus dev up --gateways 2` builds, on 127.0.21.1 / 127.0.22.1.
beforeAll(async () => {
  stateDir = mkdtempSync(join(tmpdir(), 'isthmus-dataplane-'));
  mesh = await startDevMesh({ clusters: ['east', 'west'], stateDir, trustDomain: 'dev.test', gateways: 2, hostBase: 21, progress: () => undefined });
  await waitFor(async () => (await viaProxy(eastProxy(), 'http://ledger.demo.mesh/')).status === 200, 15_000, 'ledger reachable from east');
}, 120_000);

afterAll(async () => {
  await mesh?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

describe('the data plane of a two-cluster mesh', () => {
  test('east reaches ledger, which only west runs, through west\'s gateway; the destination sees east\'s identity', async () => {
    const res = await viaProxy(eastProxy(), 'http://ledger.demo.mesh/accounts?id=7');
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ service: 'ledger', cluster: 'west', path: '/accounts?id=7' });
    expect(res.body.caller).toMatch(/^By=spiffe:\/\/dev\.test\/ns\/demo\/sa\/ledger;Hash=[0-9a-f]{64};URI=spiffe:\/\/dev\.test\/ns\/demo\/sa\/client$/);
    // It crossed west's gateways, and ten more requests one after another reuse the pooled
    // mTLS connections: at most one new connection per gateway, never one per request.
    const before = await ledgerConnections('west');
    expect(before).toBeGreaterThan(0);
    for (let i = 0; i < 10; i += 1) expect((await viaProxy(eastProxy(), 'http://ledger.demo.mesh/')).status).toBe(200);
    expect(await ledgerConnections('west') - before).toBeLessThanOrEqual(mesh.gateways.filter((g) => g.cluster === 'west').length);
  });

  test('a forged x-forwarded-client-cert from the caller never reaches the app', async () => {
    const res = await viaProxy(eastProxy(), 'http://ledger.demo.mesh/', 5000, { 'x-forwarded-client-cert': 'By=spiffe://evil/x;URI=spiffe://dev.test/ns/demo/sa/admin' });
    expect(res.status).toBe(200);
    expect(res.body.caller).toMatch(/;URI=spiffe:\/\/dev\.test\/ns\/demo\/sa\/client$/);
    expect(res.body.caller).not.toContain('evil');
  });

  test('TLS is end to end: through west\'s gateway, openssl sees the ledger workload\'s own certificate', async () => {
    const gateway = mesh.file.clusters.west!.gateways[0]!;
    // stdin closed at once: s_client prints the handshake and leaves. The sidecar then refuses
    // it for presenting no client certificate, which is right, and not what is checked here.
    const stdout = await new Promise<string>((resolve) => {
      const child = spawn('openssl', ['s_client', '-connect', gateway, '-servername', 'ledger.demo.svc.west.isthmus', '-CAfile', join(stateDir, 'ca', 'root-cert.pem')], { stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
      child.on('close', () => resolve(out));
      setTimeout(() => child.kill(), 10_000).unref();
    });
    const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(stdout)?.[0] ?? '';
    const san = pem ? execFileSync('openssl', ['x509', '-noout', '-ext', 'subjectAltName'], { input: pem, encoding: 'utf8' }) : '';
    expect(stdout).toMatch(/Verify return code: 0 \(ok\)/);
    expect(pem).not.toBe('');
    expect(String(san)).toContain('URI:spiffe://dev.test/ns/demo/sa/ledger');
  });

  test('an app that cannot use a proxy reaches ledger through a fixed local listener', async () => {
    const listener = mesh.file.clusters.east!.client.listeners['demo/ledger'];
    const res = await fetch(`http://${listener}/plain`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ service: 'ledger', cluster: 'west', path: '/plain' });
  });

  test('an unknown mesh name gets a 503 that says so, at once', async () => {
    const res = await viaProxy(eastProxy(), 'http://nope.demo.mesh/');
    expect(res.status).toBe(503);
    expect(res.body.error.message).toMatch(/demo\/nope is not in the mesh/);
    const notMesh = await viaProxy(eastProxy(), 'http://example.com/');
    expect(notMesh.status).toBe(503);
    expect(notMesh.body.error.message).toMatch(/not a mesh name/);
  });

  test('with healthy local endpoints, every request stays in the caller\'s cluster', async () => {
    const clusters = [];
    for (let i = 0; i < 40; i += 1) clusters.push((await viaProxy(eastProxy(), 'http://hello.demo.mesh/')).body.cluster);
    expect(new Set(clusters)).toEqual(new Set(['east']));
  });

  test('local instances stop: traffic fails over to west within 5 s with few failures, and comes back when they return', async () => {
    const traffic = steadyTraffic(eastProxy(), 'http://hello.demo.mesh/');
    await new Promise((r) => setTimeout(r, 500));
    const eastHello = mesh.workloads.filter((w) => w.spec.cluster === 'east' && w.spec.service === 'hello');
    const stoppedAt = Date.now();
    await Promise.all(eastHello.map((w) => w.stop()));
    await waitFor(async () => traffic.results.some((r) => r.at > stoppedAt && r.cluster === 'west'), 5_000, 'first answer from west');
    await new Promise((r) => setTimeout(r, 2_000));
    const failedDuringFailover = traffic.results.filter((r) => r.at >= stoppedAt && !r.ok);
    const firstWest = traffic.results.find((r) => r.at > stoppedAt && r.cluster === 'west')!;
    // After the move, everything is answered by west.
    expect(traffic.results.filter((r) => r.at > firstWest.at + 500).every((r) => r.ok && r.cluster === 'west')).toBe(true);

    const restartedAt = Date.now();
    await Promise.all(eastHello.map((w) => w.start()));
    await waitFor(async () => traffic.results.some((r) => r.at > restartedAt && r.cluster === 'east'), 15_000, 'traffic back in east');
    const results = await traffic.stop();
    console.log(`failover: first answer from west ${firstWest.at - stoppedAt} ms after the local instances stopped; ${failedDuringFailover.length} of ${results.filter((r) => r.at >= stoppedAt).length} requests failed (${failedDuringFailover.map((f) => f.error ?? f.status).join('; ')})`);
    expect(firstWest.at - stoppedAt).toBeLessThan(5_000);
    expect(failedDuringFailover.length).toBeLessThanOrEqual(5);

    // Why traffic moved, as the dashboard tells it: east's client sidecar reported both moves.
    const { value: events } = await waitFor(async () => {
      const o = (await (await fetch(`http://${mesh.file.clusters.east!.metrics}/api/overview`)).json()) as Overview;
      const hello = o.events.filter((e) => e.service === 'demo/hello' && e.cluster.split(', ').includes('east'));
      return hello.some((e) => e.kind === 'failover') && hello.some((e) => e.kind === 'failback') ? hello : undefined;
    }, 20_000, 'failover and failback events of demo/hello on east\'s dashboard');
    expect(events.find((e) => e.kind === 'failover')?.summary).toMatch(/^demo\/hello: traffic moved from east .* to west/);
    expect(events.find((e) => e.kind === 'failback')?.summary).toMatch(/^demo\/hello: traffic back to east/);
  });

  test('two gateways in west: one dies under steady traffic and requests keep succeeding', async () => {
    const traffic = steadyTraffic(eastProxy(), 'http://ledger.demo.mesh/');
    await new Promise((r) => setTimeout(r, 1_000));
    const killedAt = Date.now();
    await mesh.gateways.find((g) => g.cluster === 'west' && g.id === 'gw-1')!.stop();
    await new Promise((r) => setTimeout(r, 3_000));
    const results = await traffic.stop();
    const after = results.filter((r) => r.at >= killedAt);
    expect(after.length).toBeGreaterThan(10);
    expect(after.filter((r) => !r.ok)).toEqual([]);
    expect(results.every((r) => r.cluster === 'west')).toBe(true);
  });
});

/** Connections the cluster's gateways routed to demo/ledger, from their /metrics (probes are counted apart). */
async function ledgerConnections(cluster: string): Promise<number> {
  let total = 0;
  for (const g of mesh.gateways.filter((x) => x.cluster === cluster)) {
    const admin = g.address.replace(/:(\d+)$/, (_m, p) => `:${Number(p) - 15443 + 15021}`);
    const text = await (await fetch(`http://${admin}/metrics`)).text();
    const match = /^isthmus_gateway_connections_total\{[^}]*destination_service="demo\/ledger"[^}]*\} (\d+)/m.exec(text);
    total += Number(match?.[1] ?? 0);
  }
  return total;
}
