import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startDevMesh, type DevMesh, type MeshFile } from '../../src/dev/dev-mesh.js';
import { waitFor } from '../helpers/cli.js';
import { viaProxy } from '../helpers/proxy.js';

interface Sample { name: string; labels: Record<string, string>; value: number }

let mesh: DevMesh;
let stateDir: string;
let file: MeshFile;
const east = () => file.clusters.east!;
const west = () => file.clusters.west!;
const ledgerCalls = 6;
const helloCalls = 5;

// A two-cluster dev mesh on 127.0.31.1 / 127.0.32.1 (hostBase 31: no other test uses these).
beforeAll(async () => {
  stateDir = mkdtempSync(join(tmpdir(), 'isthmus-metrics-'));
  mesh = await startDevMesh({ clusters: ['east', 'west'], stateDir, trustDomain: 'dev.test', hostBase: 31, progress: () => undefined });
  file = JSON.parse(readFileSync(join(stateDir, 'mesh.json'), 'utf8')) as MeshFile;
  await waitFor(async () => (await viaProxy(east().client.proxy, 'http://ledger.demo.mesh/')).status === 200, 15_000, 'ledger reachable from east');
  for (let i = 0; i < ledgerCalls; i += 1) expect((await viaProxy(east().client.proxy, `http://ledger.demo.mesh/accounts/${i}?id=${i}`)).status).toBe(200);
  for (let i = 0; i < helloCalls; i += 1) expect((await viaProxy(east().client.proxy, 'http://hello.demo.mesh/')).status).toBe(200);
  expect((await viaProxy(east().client.proxy, 'http://nope.demo.mesh/secret/path')).status).toBe(503);
  await garbageTo(west().gateways[0]!);
}, 120_000);

afterAll(async () => {
  await mesh?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

describe('/metrics after traffic through a two-cluster mesh', () => {
  test('east\'s client sidecar counts requests by destination cluster, service and code, with latency', async () => {
    const samples = await scrape(`http://${east().client.admin}/metrics`);
    const ledger = { source_cluster: 'east', destination_cluster: 'west', destination_service: 'demo/ledger' };
    expect(value(samples, 'isthmus_requests_total', { ...ledger, code: '200' })).toBeGreaterThanOrEqual(ledgerCalls + 1);
    expect(value(samples, 'isthmus_request_duration_seconds_count', ledger)).toBeGreaterThanOrEqual(ledgerCalls + 1);
    expect(value(samples, 'isthmus_request_duration_seconds_bucket', { ...ledger, le: '+Inf' })).toBe(value(samples, 'isthmus_request_duration_seconds_count', ledger));
    expect(value(samples, 'isthmus_requests_total', { source_cluster: 'east', destination_cluster: 'east', destination_service: 'demo/hello', code: '200' })).toBeGreaterThanOrEqual(helloCalls);
    // A name nobody serves is counted, but never becomes a label value of its own.
    expect(value(samples, 'isthmus_requests_total', { destination_service: 'unknown', destination_cluster: 'none', code: '503' })).toBeGreaterThanOrEqual(1);
    expect(samples.some((s) => Object.values(s.labels).some((v) => v.includes('nope')))).toBe(false);
    expect(value(samples, 'isthmus_certificate_expiry_timestamp_seconds', { identity: 'spiffe://dev.test/ns/demo/sa/client' })).toBeGreaterThan(Date.now() / 1000);
    expect(value(samples, 'isthmus_process_cpu_seconds_total', {})).toBeGreaterThan(0);
    // Only this sidecar's events: the hello sidecars in the same process serve inbound, the client does not.
    expect(samples.filter((s) => s.name === 'isthmus_inbound_requests_total')).toEqual([]);
    expectBounded(samples);
  });

  test('west\'s ledger sidecar counts inbound requests by the caller\'s namespace and service account', async () => {
    const ledger = mesh.workloads.find((w) => w.spec.cluster === 'west' && w.spec.service === 'ledger')!;
    const samples = await scrape(`http://${ledger.spec.host}:${ledger.spec.adminPort}/metrics`);
    const labels = { destination_cluster: 'west', destination_service: 'demo/ledger', source_namespace: 'demo', source_service_account: 'client', code: '200' };
    expect(value(samples, 'isthmus_inbound_requests_total', labels)).toBeGreaterThanOrEqual(ledgerCalls + 1);
    expect(samples.filter((s) => s.name === 'isthmus_requests_total')).toEqual([]);
    expectBounded(samples);
  });

  test('west\'s gateway counts routed connections by service and refusals by reason', async () => {
    const samples = await scrape(`http://${adminOf(west().gateways[0]!)}/metrics`);
    expect(value(samples, 'isthmus_gateway_connections_total', { cluster: 'west', destination_service: 'demo/ledger' })).toBeGreaterThanOrEqual(1);
    expect(value(samples, 'isthmus_gateway_refusals_total', { cluster: 'west', reason: 'not-client-hello' })).toBeGreaterThanOrEqual(1);
    expectBounded(samples);
  });

  test('west\'s gateway counts the connections it splices as active while they last', async () => {
    const active = async () => value(await scrape(`http://${adminOf(west().gateways[0]!)}/metrics`), 'isthmus_gateway_active_connections', { cluster: 'west' });
    // CONNECT tunnels from east's client to ledger run through west's gateway for as long as they
    // are open. Three of them, because the gauge also counts the gateway's other connections
    // (health probes, pooled sample traffic), which come and go meanwhile: one of those opening
    // as the tunnels close must not hide the drop.
    const tunnels = [0, 1, 2].map(() => connect({ host: east().client.proxy.split(':')[0]!, port: Number(east().client.proxy.split(':')[1]) }));
    try {
      const answers = await Promise.all(tunnels.map((tunnel) => new Promise<string>((resolve, reject) => {
        tunnel.once('error', reject);
        tunnel.once('data', (chunk: Buffer) => resolve(chunk.toString('latin1')));
        tunnel.write('CONNECT ledger.demo.mesh:80 HTTP/1.1\r\nhost: ledger.demo.mesh:80\r\n\r\n');
      })));
      for (const answer of answers) expect(answer).toMatch(/^HTTP\/1\.1 200/);
      const { value: held } = await waitFor(async () => { const n = await active(); return n >= 3 ? n : undefined; }, 5_000, 'at least three active gateway connections');
      for (const tunnel of tunnels) tunnel.destroy();
      await waitFor(async () => (await active()) <= held - 2, 10_000, 'the gateway\'s active connections to drop when the tunnels close');
    } finally {
      for (const tunnel of tunnels) tunnel.destroy();
    }
  });

  test('east\'s federation serves sync lag per remote cluster and catalog size on its metrics port and its API', async () => {
    expect(east().metrics).toBe('127.0.31.1:15014');
    const samples = await scrape(`http://${east().metrics}/metrics`);
    const lag = value(samples, 'isthmus_federation_sync_lag_seconds', { cluster: 'east', remote_cluster: 'west' });
    expect(lag).toBeGreaterThanOrEqual(0);
    expect(lag).toBeLessThan(30);
    expect(samples.some((s) => s.name === 'isthmus_federation_sync_lag_seconds' && s.labels.remote_cluster === 'east')).toBe(false);
    expect(value(samples, 'isthmus_catalog_services', { cluster: 'east' })).toBeGreaterThanOrEqual(2);
    expect(value(samples, 'isthmus_catalog_clusters_alive', { cluster: 'east' })).toBe(2);
    expect(value(samples, 'isthmus_certificate_expiry_timestamp_seconds', { identity: 'spiffe://dev.test/cluster/east/federation' })).toBeGreaterThan(Date.now() / 1000);
    expectBounded(samples);
    expect((await (await fetch(`http://${east().metrics}/healthz`)).json())).toMatchObject({ status: 'ok', cluster: 'east' });

    const dispatcher = new Agent({ connect: { ca: readFileSync(join(stateDir, 'ca', 'root-cert.pem'), 'utf8') } });
    const res = await request(`https://${east().federation}/metrics`, { dispatcher });
    expect(res.statusCode).toBe(200);
    expect(await res.body.text()).toMatch(/^isthmus_federation_sync_lag_seconds\{cluster="east",remote_cluster="west"\} /m);
    await dispatcher.close();
  });

  test('east\'s local hello instances stop: the failover is counted', async () => {
    await Promise.all(mesh.workloads.filter((w) => w.spec.cluster === 'east' && w.spec.service === 'hello').map((w) => w.stop()));
    // Retries reach west at once; the route's primary moves when health checks or ejections see them gone.
    const failedOver = (samples: Sample[]) => samples.some((s) => s.name === 'isthmus_failovers_total' && s.labels.destination_service === 'demo/hello' && s.labels.from_priority === '0' && s.value >= 1);
    const { value: samples } = await waitFor(async () => {
      await viaProxy(east().client.proxy, 'http://hello.demo.mesh/', 3000).catch(() => undefined);
      const scraped = await scrape(`http://${east().client.admin}/metrics`);
      return failedOver(scraped) ? scraped : undefined;
    }, 15_000, 'a failover counted');
    expect(value(samples, 'isthmus_requests_total', { source_cluster: 'east', destination_cluster: 'west', destination_service: 'demo/hello', code: '200' })).toBeGreaterThanOrEqual(1);
    expectBounded(samples);
  });
});

/** A TCP client that speaks no TLS at all: the gateway must refuse it. */
function garbageTo(address: string): Promise<void> {
  const split = address.lastIndexOf(':');
  return new Promise((resolve, reject) => {
    const socket = connect({ host: address.slice(0, split), port: Number(address.slice(split + 1)) }, () => socket.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n'));
    socket.on('error', () => resolve());
    socket.on('close', () => resolve());
    setTimeout(() => reject(new Error('the gateway kept a non-TLS connection open')), 5000).unref();
  });
}

/** The dev mesh puts each gateway's admin port beside its TLS port: 15443 → 15021. */
function adminOf(gateway: string): string {
  return gateway.replace(/:(\d+)$/, (_m, port: string) => `:${Number(port) - 15443 + 15021}`);
}

async function scrape(url: string): Promise<Sample[]> {
  const res = await fetch(url);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return parsePrometheus(await res.text());
}

/** The Prometheus text format (0.0.4): `name{label="value",...} number`, comments skipped. */
function parsePrometheus(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) throw new Error(`not a Prometheus sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const pair of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]!] = pair[2]!.replace(/\\(.)/g, (_m, c: string) => (c === 'n' ? '\n' : c));
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return samples;
}

/** The sum over every sample of `name` whose labels include `labels`; NaN when none matches. */
function value(samples: Sample[], name: string, labels: Record<string, string>): number {
  const matching = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  return matching.length === 0 ? Number.NaN : matching.reduce((sum, s) => sum + s.value, 0);
}

/** No label value is an address or a path: only `<ns>/<name>`, SPIFFE IDs, and plain words. */
function expectBounded(samples: Sample[]): void {
  for (const s of samples) {
    for (const [label, v] of Object.entries(s.labels)) {
      const where = `${s.name}{${label}="${v}"}`;
      expect(v, where).not.toMatch(/\d+\.\d+\.\d+\.\d+|:\d+$|\?/);
      if (v.includes('/')) expect(v, where).toMatch(/^([a-z0-9-]+\/[a-z0-9-]+|spiffe:\/\/[a-z0-9.-]+(\/[a-z0-9-]+)+)$/);
    }
  }
}
