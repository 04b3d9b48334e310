import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startDevMesh, type DevMesh } from '../../src/dev/dev-mesh.js';
import { isthmusOk, waitFor } from '../helpers/cli.js';
import { etcdEnv } from '../helpers/etcd.js';
import { viaProxy, type ProxiedResponse } from '../helpers/proxy.js';

// Two clusters on 127.0.123.1 (east) / 127.0.124.1 (west), as `isthmus dev up` builds them.
// ledger runs only in west, one instance. Two callers in east with different identities reach
// it through west's gateway (TLS end to end, so ledger's inbound verifies each one):
// east's client (spiffe://dev.test/ns/demo/sa/client) and the outbound of hello-east-1
// (spiffe://dev.test/ns/demo/sa/hello). The limits refill one token per 50 s, so within a
// test's few seconds a bucket holds exactly what the counts below say. Then CONNECT tunnels to
// ledger, opened through east's client proxy and held open, against a CircuitBreaker (ledger
// has one upstream from east: west's gateway).
let mesh: DevMesh;
let stateDir: string;
const env = () => ({ ...etcdEnv(mesh.file), ISTHMUS_OPERATOR_DIR: mesh.file.operator });
const ledger = 'http://ledger.demo.mesh/';
const client = () => mesh.file.clusters.east!.client.proxy;
const proxy = client;
const hello = () => {
  const w = mesh.workloads.find((x) => x.spec.service === 'hello' && x.spec.cluster === 'east')!;
  return `${w.spec.host}:${w.spec.outboundPort}`;
};
const ledgerAdmin = () => {
  const w = mesh.workloads.find((x) => x.spec.service === 'ledger')!;
  return `${w.spec.host}:${w.spec.adminPort}`;
};

async function apply(name: string, spec: string): Promise<void> {
  const file = join(stateDir, `${name}.yaml`);
  writeFileSync(file, `apiVersion: isthmus.dev/v1alpha1\nkind: LocalRateLimit\nmetadata: { name: ledger-limit, namespace: demo }\nspec: ${spec}\n`);
  await isthmusOk(['policy', 'apply', '-f', file], env());
}

async function rateLimited(): Promise<number> {
  const text = await (await fetch(`http://${ledgerAdmin()}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('isthmus_policy_actions_total{') && l.includes('action="rate_limited"') && l.includes('destination_service="demo/ledger"'));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

const statuses = async (proxy: string, n: number): Promise<number[]> => {
  const out: number[] = [];
  for (let i = 0; i < n; i += 1) out.push((await viaProxy(proxy, ledger)).status);
  return out;
};

function expectLimited(res: ProxiedResponse, who: string): void {
  expect(res.status).toBe(429);
  expect(res.headers['x-isthmus-error']).toBe('ISTHMUS_ERR_DATAPLANE_RATE_LIMITED');
  expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(1);
  expect(res.body?.error?.message).toContain(who);
}

interface Tunnel { status: number; head: string; socket: Socket }

/** CONNECT ledger.demo.mesh:80 through east's client proxy: the answer's head, and the socket, left open when it was 200. */
function openTunnel(): Promise<Tunnel> {
  const split = proxy().lastIndexOf(':');
  return new Promise((resolve, reject) => {
    const socket = netConnect(Number(proxy().slice(split + 1)), proxy().slice(0, split), () => {
      socket.write('CONNECT ledger.demo.mesh:80 HTTP/1.1\r\nHost: ledger.demo.mesh:80\r\n\r\n');
    });
    let buffered = '';
    socket.setEncoding('latin1');
    const onData = (chunk: string) => {
      buffered += chunk;
      const end = buffered.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.removeListener('data', onData);
      const status = Number(buffered.slice(9, 12));
      if (status !== 200) socket.destroy();
      resolve({ status, head: buffered, socket });
    };
    socket.on('data', onData);
    socket.once('error', reject);
    setTimeout(() => reject(new Error('no answer to the CONNECT')), 10_000).unref();
  });
}

/** A request through an open tunnel: ledger's app answers it, so the tunnel reaches it. */
function askThrough(tunnel: Tunnel): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    tunnel.socket.on('data', (c: string) => {
      text += c;
      if (text.includes('"service"')) resolve(text);
    });
    tunnel.socket.write('GET / HTTP/1.1\r\nHost: ledger.demo.mesh\r\n\r\n');
  });
}

beforeAll(async () => {
  stateDir = mkdtempSync(join(tmpdir(), 'isthmus-destination-limits-'));
  mesh = await startDevMesh({ clusters: ['east', 'west'], stateDir, trustDomain: 'dev.test', gateways: 1, hostBase: 123, progress: () => undefined });
}, 120_000);

afterAll(async () => {
  await mesh?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

describe('LocalRateLimit at the destination\'s inbound, across clusters', () => {
  test('per: caller gives each calling identity its own bucket: one caller used up does not limit the other', async () => {
    for (const proxy of [client(), hello()]) expect((await viaProxy(proxy, ledger)).status).toBe(200);
    const before = await rateLimited();
    await apply('per-caller', '{ service: ledger, requestsPerSecond: 0.02, burst: 3, per: caller }');
    // Until the policy reaches ledger's sidecar every request passes; then the client has 3.
    const refused = await waitFor(async () => {
      const res = await viaProxy(client(), ledger);
      return res.status === 429 ? res : undefined;
    }, 15_000, 'the client limited at ledger');
    expectLimited(refused.value, 'spiffe://dev.test/ns/demo/sa/client');
    expect(await statuses(client(), 2)).toEqual([429, 429]);
    // hello's identity has a bucket of its own, full: exactly its burst, then refused.
    expect(await statuses(hello(), 3)).toEqual([200, 200, 200]);
    const helloRefused = await viaProxy(hello(), ledger);
    expectLimited(helloRefused, 'spiffe://dev.test/ns/demo/sa/hello');
    // Counted where it was refused: ledger's sidecar, once per refusal.
    expect(await rateLimited() - before).toBeGreaterThanOrEqual(4);

    const explained = await isthmusOk(['explain', 'ledger', '-n', 'demo', '--sidecar', mesh.file.clusters.east!.client.admin]);
    expect(explained.stdout).toContain('0.02 requests/s, burst 3, per caller identity at each instance; 429 with retry-after beyond, at the destination\'s inbound');
  }, 60_000);

  test('per: service is one bucket for the instance, shared by every caller', async () => {
    await apply('per-service', '{ service: ledger, requestsPerSecond: 0.02, burst: 4 }');
    // The changed limit starts a full bucket: the client's first success says it has arrived.
    await waitFor(async () => ((await viaProxy(client(), ledger)).status === 200 ? true : undefined), 15_000, 'the per-service limit at ledger');
    // 3 tokens left for both callers together.
    expect((await viaProxy(hello(), ledger)).status).toBe(200);
    expect((await viaProxy(client(), ledger)).status).toBe(200);
    expect((await viaProxy(hello(), ledger)).status).toBe(200);
    expectLimited(await viaProxy(client(), ledger), 'its callers together');
    expectLimited(await viaProxy(hello(), ledger), 'its callers together');
    await isthmusOk(['policy', 'delete', 'localratelimit', 'demo/ledger-limit'], env());
    await waitFor(async () => ((await viaProxy(hello(), ledger)).status === 200 ? true : undefined), 15_000, 'no limit at ledger');
  }, 60_000);
});

describe('CircuitBreaker maxConnections counts tunnels', () => {
  test('with maxConnections 2, two open CONNECT tunnels hold the upstream: a third is refused with 503 CIRCUIT_OPEN naming the limit; closing one lets the next in; requests still go', async () => {
    const file = join(stateDir, 'breaker.yaml');
    writeFileSync(file, 'apiVersion: isthmus.dev/v1alpha1\nkind: CircuitBreaker\nmetadata: { name: ledger-breaker, namespace: demo }\nspec: { service: ledger, maxConnections: 2 }\n');
    await isthmusOk(['policy', 'apply', '-f', file], env());
    const held: Tunnel[] = [];
    try {
      // Until the policy reaches east's client, tunnels are not limited: open them until one is refused.
      const refused = await waitFor(async () => {
        const t = await openTunnel();
        if (t.status === 200) held.push(t);
        return t.status === 503 ? t : undefined;
      }, 15_000, 'a tunnel refused by the breaker');
      expect(refused.value.head).toContain('x-isthmus-error: ISTHMUS_ERR_DATAPLANE_CIRCUIT_OPEN');
      expect(refused.value.head).toContain('maxConnections 2 of CircuitBreaker demo/ledger-breaker');
      // The tunnels held before the policy arrived were not counted; close them and start over.
      for (const t of held.splice(0)) t.socket.destroy();
      await waitFor(async () => {
        const t = await openTunnel();
        if (t.status === 200) held.push(t);
        return held.length >= 2 ? true : undefined;
      }, 10_000, 'two counted tunnels');
      for (const t of held.splice(2)) t.socket.destroy();
      // Now exactly two are open: they carry bytes to ledger, and a third is refused.
      expect(await askThrough(held[0]!)).toContain('"service":"ledger"');
      for (let i = 0; i < 3; i += 1) expect((await openTunnel()).status).toBe(503);
      // A request is not a tunnel: the pool keeps one connection whatever the tunnels hold.
      expect((await viaProxy(proxy(), 'http://ledger.demo.mesh/')).status).toBe(200);
      held.shift()!.socket.destroy();
      const next = await waitFor(async () => {
        const t = await openTunnel();
        return t.status === 200 ? t : undefined;
      }, 10_000, 'a tunnel once one closed');
      held.push(next.value);
    } finally {
      for (const t of held) t.socket.destroy();
    }
  }, 60_000);
});
