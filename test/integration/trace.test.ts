import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startDevMesh, type DevMesh } from '../../src/dev/dev-mesh.js';
import type { TraceHop, TraceResult } from '../../src/sidecar/trace.js';
import { isthmus, waitFor } from '../helpers/cli.js';
import { viaProxy } from '../helpers/proxy.js';
import { testOperator } from '../helpers/mesh.js';
import { etcdEnv } from '../helpers/etcd.js';

let mesh: DevMesh;
let stateDir: string;
let env: Record<string, string>;
const td = 'spiffe://dev.test/ns/demo/sa';
const east = () => mesh.file.clusters.east!;

// The mesh `isthmus dev up` builds, on 127.0.61.1 (east) and 127.0.62.1 (west): ledger only in west.
beforeAll(async () => {
  stateDir = mkdtempSync(join(tmpdir(), 'isthmus-trace-'));
  mesh = await startDevMesh({ clusters: ['east', 'west'], stateDir, trustDomain: 'dev.test', hostBase: 61, progress: () => undefined });
  // The CLI finds the operator credential dev up issued: POST /trace and /api/sidecars ask for it.
  env = { ...etcdEnv(mesh.file), ISTHMUS_OPERATOR_DIR: mesh.file.operator };
  await waitFor(async () => (await viaProxy(east().client.proxy, 'http://ledger.demo.mesh/')).status === 200, 20_000, 'ledger reachable from east');
  // `trace --from` finds a sidecar through the federation's dashboard, which lists those that reported.
  await waitFor(async () => {
    const listed = (await (await fetch(`http://${east().metrics}/api/sidecars`, { headers: testOperator(mesh.file.operator).headers() })).json()) as { sidecars?: unknown[] };
    return (listed.sidecars?.length ?? 0) > 0;
  }, 30_000, 'east\'s sidecars listed by its federation');
}, 120_000);

afterAll(async () => {
  await mesh?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

async function traceJson(args: string[]): Promise<TraceResult & { sidecar: string }> {
  const res = await isthmus(['trace', ...args, '--output', 'json'], env);
  expect(res.code, `isthmus trace ${args.join(' ')}: ${res.stderr}`).toBe(0);
  return JSON.parse(res.stdout) as TraceResult & { sidecar: string };
}

function hop<K extends TraceHop['kind']>(result: TraceResult, kind: K): Extract<TraceHop, { kind: K }> {
  const found = result.hops.find((h) => h.kind === kind);
  expect(found, `a ${kind} hop in ${JSON.stringify(result.hops.map((h) => h.kind))}`).toBeDefined();
  return found as Extract<TraceHop, { kind: K }>;
}

function expectTimesAddUp(result: TraceResult): void {
  expect(result.totalMs).toBeGreaterThan(0);
  for (const h of result.hops) {
    // Each hop is real work on a real socket, measured to the microsecond: never nothing.
    expect(h.ms, h.kind).toBeGreaterThan(0);
  }
  // Hop times are rounded to microseconds; their float sum may exceed the total by a rounding step.
  expect(result.hops.reduce((sum, h) => sum + h.ms, 0)).toBeLessThanOrEqual(result.totalMs + 1e-6);
}

describe('isthmus trace: one real request, hop by hop', () => {
  test('ledger from east: east\'s sidecar picks west\'s locality, west\'s gateway routes the SNI to ledger, each end checks the other\'s identity', async () => {
    const result = await traceJson(['ledger', '--from', 'east']);
    expect(result).toMatchObject({ service: 'demo/ledger', answered: true, status: 200, from: { cluster: 'east' } });
    expect(result.hops.map((h) => h.kind)).toEqual(['sidecar', 'gateway', 'destination', 'app']);

    const sidecar = hop(result, 'sidecar');
    expect(sidecar.cluster).toBe('east');
    // Regions are cluster names in the dev mesh: west is another region, so P3.
    expect(sidecar.decision.chosen).toMatchObject({ cluster: 'west', priority: 3, kind: 'gateway', sni: 'ledger.demo.svc.west.isthmus' });
    expect(sidecar.decision.priorities).toContainEqual(expect.objectContaining({ priority: 3, load: 100 }));
    expect(sidecar.localAddress).toMatch(/^[\d.]+:\d+$/);

    const westLedger = mesh.workloads.filter((w) => w.spec.cluster === 'west' && w.spec.service === 'ledger').map((w) => w.inbound);
    const gateway = hop(result, 'gateway');
    expect(gateway).toMatchObject({ cluster: 'west', address: mesh.file.clusters.west!.gateways[0], sni: 'ledger.demo.svc.west.isthmus', view: 'gateway' });
    // The gateway's own log: the endpoint it chose, and how long its dial took.
    expect(westLedger).toContain(gateway.endpoint);
    // Parts of this request's time: each took some, and none more than the whole request.
    for (const part of [gateway.timings.dialMs, gateway.timings.clientHelloMs]) {
      expect(part).toBeGreaterThan(0);
      expect(part).toBeLessThan(result.totalMs);
    }

    const destination = hop(result, 'destination');
    expect(destination).toMatchObject({
      cluster: 'west', service: 'demo/ledger', endpoint: gateway.endpoint,
      serverIdentity: { presented: `${td}/ledger`, allowed: [`${td}/ledger`], accepted: true },
    });
    // The destination verified the identity of whichever east sidecar sent the trace (the
    // federation lists the one that reported last first: the client or a hello instance).
    expect([`${td}/client`, `${td}/hello`]).toContain(result.from.identity);
    expect(destination.clientIdentity).toEqual({ verified: result.from.identity });
    expect(destination.timings.inboundHandshakeMs).toBeGreaterThan(0);
    expect(destination.timings.inboundHandshakeMs).toBeLessThan(result.totalMs);
    expect(hop(result, 'app')).toMatchObject({ cluster: 'west', status: 200, address: mesh.file.clusters.west!.services.find((s) => s.name === 'ledger')!.instances[0] });
    expectTimesAddUp(result);
  });

  test('people get a numbered hop list with the same facts', async () => {
    const res = await isthmus(['trace', 'ledger', '--from', 'east', '--namespace', 'demo', '--path', '/accounts?id=7'], env);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toMatch(/^trace demo\/ledger from east .*GET http:\/\/ledger\.demo\.mesh\/accounts\?id=7 → 200 in [\d.]+ ms$/m);
    expect(res.stdout).toMatch(/^ 1 {2}east sidecar/m);
    expect(res.stdout).toMatch(/^ 2 {2}west gateway .*\n.*SNI ledger\.demo\.svc\.west\.isthmus → endpoint [\d.:]+ \(the gateway's own log\)/m);
    expect(res.stdout).toMatch(/^ 3 {2}west sidecar of demo\/ledger/m);
    expect(res.stdout).toContain(`server identity ${td}/ledger: allowed`);
    // Whichever east sidecar the federation lists first sends the trace (as in the first test).
    expect(res.stdout).toMatch(new RegExp(`client identity ${td}/(client|hello), verified by the destination`));
    expect(res.stdout).toMatch(/^ 4 {2}west app .*\n.*200, answered in/m);
  });

  test('hello from east stays in east: no gateway hop', async () => {
    const result = await traceJson(['hello.demo', '--from', 'east']);
    expect(result).toMatchObject({ service: 'demo/hello', answered: true, status: 200 });
    expect(result.hops.map((h) => h.kind)).toEqual(['sidecar', 'destination', 'app']);
    expect(hop(result, 'sidecar').decision.chosen).toMatchObject({ cluster: 'east', kind: 'local' });
    expect(hop(result, 'destination')).toMatchObject({ cluster: 'east', serverIdentity: { presented: `${td}/hello`, accepted: true }, clientIdentity: { verified: expect.stringMatching(/^spiffe:\/\/dev\.test\/ns\/demo\/sa\//) } });
    expectTimesAddUp(result);
  });

  test('--sidecar sends from a named sidecar; with no etcd the gateway hop is inferred from both ends, and says so', async () => {
    const res = await isthmus(['trace', 'ledger', '--from', 'east', '--sidecar', east().client.admin, '--output', 'json'], { ISTHMUS_OPERATOR_DIR: mesh.file.operator });
    expect(res.code, res.stderr).toBe(0);
    const result = JSON.parse(res.stdout) as TraceResult;
    expect(hop(result, 'gateway')).toMatchObject({ view: 'inferred', endpoint: expect.stringMatching(/^[\d.]+:\d+$/) });
    expect(result.notes.join('\n')).toMatch(/gateway's own view is missing/);
    expectTimesAddUp(result);
  });

  test('POST /trace sends a request as the workload, so it needs an operator credential; so does the CLI', async () => {
    const url = `http://${east().client.admin}/trace`;
    const body = JSON.stringify({ service: 'ledger', namespace: 'demo', path: '/', method: 'GET' });
    const anonymous = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    expect(anonymous.status).toBe(401);
    expect(((await anonymous.json()) as { error: { code: string } }).error.code).toBe('ISTHMUS_ERR_AUTH_CREDENTIAL_MISSING');
    const authorized = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...testOperator(mesh.file.operator).headers() }, body });
    expect(authorized.status).toBe(200);
    expect(((await authorized.json()) as TraceResult).answered).toBe(true);
    const withoutCredential = await isthmus(['trace', 'ledger', '--from', 'east', '--sidecar', east().client.admin, '--output', 'json']);
    expect(withoutCredential.code).toBe(1);
    expect(JSON.parse(withoutCredential.stdout).error.code).toBe('ISTHMUS_ERR_AUTH_CREDENTIAL_MISSING');
  });

  test('an unknown service is a clear error and exit 1', async () => {
    const res = await isthmus(['trace', 'nope', '--from', 'east'], env);
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/isthmus trace: no service named nope in any namespace/);
    const json = await isthmus(['trace', 'nope', '-n', 'demo', '--from', 'east', '--output', 'json'], env);
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout).error).toMatchObject({ code: 'ISTHMUS_ERR_SERVICE_UNKNOWN', message: expect.stringMatching(/demo\/nope is not in the mesh/) });
  });

  test('a cluster that is not in the mesh, or no --from, is refused', async () => {
    const north = await isthmus(['trace', 'ledger', '--from', 'north'], env);
    expect(north.code).toBe(1);
    expect(north.stderr).toMatch(/cluster north is not alive/);
    expect((await isthmus(['trace', 'ledger'], env)).code).toBe(2);
  });

  test('ordinary requests never carry the destination\'s trace report back to the app, even when the app asks', async () => {
    const split = east().client.proxy.lastIndexOf(':');
    const headers = await new Promise<Record<string, unknown>>((resolve, reject) => {
      const req = request({ host: east().client.proxy.slice(0, split), port: Number(east().client.proxy.slice(split + 1)), path: 'http://ledger.demo.mesh/', headers: { host: 'ledger.demo.mesh', 'x-isthmus-trace': '1' } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.headers));
      });
      req.on('error', reject);
      req.end();
    });
    expect(headers).not.toHaveProperty('x-isthmus-trace-inbound');
  });

  // Last: it stops west's only gateway.
  test('with west\'s gateway gone, tracing ledger fails with exit 1 and a code that says where', async () => {
    await mesh.gateways.find((g) => g.cluster === 'west')!.stop();
    const res = await isthmus(['trace', 'ledger', '--from', 'east', '--output', 'json'], env);
    expect(res.code).toBe(1);
    const result = JSON.parse(res.stdout) as TraceResult;
    expect(result.answered).toBe(false);
    // Before east's health check notices (within 2 s) the connect is refused; after, no endpoint is left.
    expect(['ISTHMUS_ERR_TRACE_CONNECT_FAILED', 'ISTHMUS_ERR_SERVICE_UNKNOWN']).toContain(result.error?.code);
    const failed = result.hops.find((h) => h.error);
    expect(failed?.kind).toBe(result.error?.code === 'ISTHMUS_ERR_TRACE_CONNECT_FAILED' ? 'gateway' : 'sidecar');
    expect(res.stderr).toMatch(/^isthmus trace: /);
  });
});
