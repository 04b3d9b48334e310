import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startDevMesh, type DevMesh } from '../../src/dev/dev-mesh.js';
import type { Overview } from '../../src/dashboard/overview.js';
import { apiClient, waitFor } from '../helpers/cli.js';
import { testOperator } from '../helpers/mesh.js';
import { rawEtcd } from '../helpers/etcd.js';

let mesh: DevMesh;
let stateDir: string;
let etcd: Etcd3;
const rootCert = () => join(stateDir, 'ca', 'root-cert.pem');

interface Probe { from: string; to: string; p50Ms: number | null; samples: number; failures: number; lastError?: string; gateways: { id: string; ok: boolean }[] }

async function stored(from: string, to: string): Promise<Probe | undefined> {
  const text = await etcd.get(`/isthmus/v1/probes/${from}/${to}`).string();
  return text === null ? undefined : JSON.parse(text) as Probe;
}

// Probes every second so the assertions need not wait for the 5 s default.
beforeAll(async () => {
  stateDir = mkdtempSync(join(tmpdir(), 'isthmus-probes-'));
  mesh = await startDevMesh({ clusters: ['east', 'west'], stateDir, trustDomain: 'dev.test', gateways: 1, hostBase: 41, probeInterval: '1s', progress: () => undefined });
  etcd = rawEtcd(mesh.file);
}, 120_000);

afterAll(async () => {
  etcd?.close();
  await mesh?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

describe('gateway probes', () => {
  test('each federation probes the other cluster through its gateway and publishes the pair under its lease', async () => {
    for (const [from, to] of [['east', 'west'], ['west', 'east']] as const) {
      // Probes that ran before the other cluster's gateway was up count as failures in the
      // window; what matters is that the latest probe through the gateway succeeded.
      await waitFor(async () => {
        const p = await stored(from, to);
        return (p?.samples ?? 0) > 0 && p?.gateways[0]?.ok === true;
      }, 20_000, `${from}→${to} probed`);
      const probe = (await stored(from, to))!;
      expect(probe).toMatchObject({ version: 1, from, to, gateways: [{ id: 'gw-1', ok: true }] });
      expect(probe.p50Ms).toBeGreaterThan(0);
    }
  }, 30_000);

  test('GET /v1/probes serves the whole matrix, and /metrics the latency gauge', async () => {
    const east = mesh.file.clusters.east!;
    const api = apiClient(rootCert(), testOperator(mesh.file.operator).tls);
    const res = await api.get(`https://${east.federation}/v1/probes`);
    await api.close();
    expect(res.status).toBe(200);
    expect(res.body.probes.map((p: Probe) => `${p.from}→${p.to}`)).toEqual(['east→west', 'west→east']);
    const metrics = await (await fetch(`http://${east.metrics}/metrics`)).text();
    expect(metrics).toMatch(/isthmus_gateway_probe_latency_seconds\{cluster="east",remote_cluster="west",quantile="0\.5"\} [0-9.e-]+/);
    expect(metrics).toMatch(/isthmus_gateway_probe_latency_seconds\{cluster="east",remote_cluster="west",quantile="0\.99"\} [0-9.e-]+/);
  });

  test('a gateway pipes its own probe SNI to its federation (counted as "probe") and refuses another cluster\'s', async () => {
    const east = mesh.gateways.find((g) => g.cluster === 'east')!;
    const [host, port] = [east.address.slice(0, east.address.lastIndexOf(':')), Number(east.address.slice(east.address.lastIndexOf(':') + 1))];
    const admin = `http://${host}:15021`;
    const refusedBefore = ((await (await fetch(`${admin}/stats`)).json()) as { refused: Record<string, number> }).refused['sni-other-cluster'] ?? 0;
    await expect(handshake(host, port, 'probe.gateway.west.isthmus')).rejects.toThrow(/unrecognized name|alert number 112/i);
    const refusedAfter = ((await (await fetch(`${admin}/stats`)).json()) as { refused: Record<string, number> }).refused['sni-other-cluster'];
    expect(refusedAfter).toBe(refusedBefore + 1);
    // Through east's gateway with east's probe SNI, the certificate that answers is east's federation's.
    expect(await handshake(host, port, 'probe.gateway.east.isthmus')).toContain('URI:spiffe://dev.test/cluster/east/federation');
    expect(await (await fetch(`${admin}/metrics`)).text()).toMatch(/isthmus_gateway_connections_total\{cluster="east",destination_service="probe"\} [1-9]/);
  });

  test('west\'s gateway stops: east\'s probes of west fail, with the reason', async () => {
    // Failures from start-up (before west's gateway was published) may be in the window already:
    // only more of them, or the gateway marked failing, says the stop was seen.
    const before = (await stored('east', 'west'))?.failures ?? 0;
    await mesh.gateways.find((g) => g.cluster === 'west')!.stop();
    await waitFor(async () => {
      const p = await stored('east', 'west');
      return p !== undefined && (p.failures > before || p.gateways.some((g) => !g.ok));
    }, 20_000, 'new east→west failures');
    const probe = (await stored('east', 'west'))!;
    console.log(`east→west after west's gateway stopped: ${JSON.stringify(probe)}`);
    expect(probe.failures).toBeGreaterThan(0);
    // A probe open when the gateway stopped is reset (ECONNRESET); later ones are refused.
    expect(probe.lastError).toMatch(/ECONNREFUSED|ECONNRESET|no gateway published|closed|alert/);

    // The dashboard says so in words: east lost its way to west (as east's prober saw it).
    const { value: event } = await waitFor(async () => {
      const o = (await (await fetch(`http://${mesh.file.clusters.east!.metrics}/api/overview`)).json()) as Overview;
      return o.events.find((e) => e.kind === 'unreachable' && e.cluster === 'east');
    }, 15_000, 'an unreachable event from east');
    expect(event.summary).toMatch(/^east cannot reach west through any of its 1 gateway\(s\)/);
  }, 40_000);
});

/** A TLS handshake verified against the mesh root; resolves with the peer's subjectAltName. */
function handshake(host: string, port: number, servername: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host, port, servername, ca: readFileSync(rootCert(), 'utf8'), checkServerIdentity: () => undefined });
    socket.once('secureConnect', () => {
      resolve(socket.getPeerCertificate().subjectaltname ?? '');
      socket.destroy();
    });
    socket.once('error', reject);
  });
}
