import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { readProcess } from '../../src/bench/soak.js';
import { silentLogger } from '../../src/core/log.js';
import { startDevMesh, type DevMesh } from '../../src/dev/dev-mesh.js';
import { startDevSidecar, type DevSidecar } from '../../src/dev/dev-sidecar.js';
import { SampleWorkload, sidecarStateDir } from '../../src/dev/sample-workload.js';
import { liveTokens, updateRegistry } from '../../src/federation/registry-file.js';
import { issueToken } from '../../src/trust/tokens.js';
import { workloadId } from '../../src/trust/spiffe.js';
import { waitFor } from '../helpers/cli.js';
import { longFaults, printFigure, trafficFigure } from '../helpers/faults.js';
import { steadyTraffic } from '../helpers/proxy.js';

// One cluster on 127.0.84.1. Six instances of demo/churn run all the time (the sample app, which
// names its instance in every answer, behind its own sidecar); what churns is their registration,
// as `isthmus register` and `deregister` write it: every 300 ms one instance is added or removed.
// At least two that were registered 3 s ago or more stay: a new instance counts as healthy only
// once the federation's health check (every 2 s) has passed it, and a mesh left with none
// checked yet rightly answers 503 no healthy endpoint. A deregistered instance keeps answering, so a request routed to it after
// its removal succeeds and shows in the answers, instead of failing and being retried elsewhere.
// A client sidecar of its own process carries the traffic; its /routes tell when it saw each
// removal, and its resident memory is sampled every second.
const host = '127.0.84.1';
const churnMs = (longFaults ? 60 : 30) * 1000;
const stepMs = 300;
const minimumSettled = 2;
const settledMs = 3000;
let mesh: DevMesh;
let stateDir: string;
let clusterDir: string;
let client: DevSidecar;
const instances: SampleWorkload[] = [];

const registryEntry = (w: SampleWorkload) => ({
  namespace: 'demo', service: 'churn', serviceAccount: 'churn', address: w.inbound, zone: w.spec.zone, registeredAt: new Date().toISOString(),
});

function setRegistered(registered: Set<SampleWorkload>): void {
  updateRegistry(clusterDir, (registry) => ({
    ...registry,
    instances: [...registry.instances.filter((i) => i.service !== 'churn'), ...[...registered].map(registryEntry)],
  }));
}

/** The addresses of demo/churn in the client sidecar's routes (empty before it knows the service). */
async function routedAddresses(): Promise<Set<string>> {
  const res = await fetch(`http://${client.admin}/routes/demo/churn`);
  if (res.status === 404) return new Set();
  const route = await res.json() as { localities: { endpoints: { address: string }[] }[] };
  return new Set(route.localities.flatMap((l) => l.endpoints.map((e) => e.address)));
}

beforeAll(async () => {
  stateDir = mkdtempSync(join(tmpdir(), 'isthmus-churn-'));
  mesh = await startDevMesh({ clusters: ['east'], stateDir, trustDomain: 'dev.test', hostBase: 84, gateways: 0, progress: () => undefined });
  clusterDir = join(stateDir, 'clusters', 'east');
  const federation = { url: `https://${host}:15010`, rootCert: join(clusterDir, 'root-cert.pem') };
  const tokens = Array.from({ length: 7 }, (_, n) => issueToken({ identity: workloadId('dev.test', 'demo', n === 6 ? 'churn-client' : 'churn'), ttlSeconds: 3600 }));
  updateRegistry(clusterDir, (registry) => ({ ...registry, tokens: [...liveTokens(registry.tokens, new Date()), ...tokens.map((t) => t.record)] }));
  for (let n = 0; n < 6; n += 1) {
    const instance = `churn-${n + 1}`;
    instances.push(new SampleWorkload({
      cluster: 'east', zone: 'east-a', namespace: 'demo', service: 'churn', instance, host,
      appPort: 28080 + n, inboundPort: 29080 + n, outboundPort: 29180 + n, adminPort: 29280 + n,
      federationUrl: federation.url, rootCertFile: federation.rootCert, bootstrapToken: tokens[n]!.token,
      stateDir: sidecarStateDir(stateDir, 'east', instance), sidecar: { kind: 'in-process', logger: silentLogger },
    }));
  }
  // The federation reads the registry every second: the tokens may not be known at the first try.
  await waitFor(async () => {
    await Promise.all(instances.map((w) => w.start()));
    return true;
  }, 30_000, 'the churn instances\' sidecars started');
  client = await startDevSidecar({
    cluster: 'east', zone: 'east-a', namespace: 'demo', service: 'churn-client',
    federation, stateDir: sidecarStateDir(stateDir, 'east', 'churn-client'),
    outbound: { listen: `${host}:25001` }, admin: { listen: `${host}:25020` }, listeners: [],
  }, { bootstrapToken: tokens[6]!.token }, { kind: 'process', name: 'sidecar-east-churn-client', logFile: join(stateDir, 'logs', 'churn-client.log'), onUnexpectedExit: () => undefined });
}, 240_000);

afterAll(async () => {
  await client?.stop();
  for (const w of instances) await w.stop();
  await mesh?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

describe('endpoint churn under traffic: instances registered and deregistered every 300 ms', () => {
  test('no request is routed to an instance after the client saw its removal; no request fails; the client\'s memory stays flat', async () => {
    const registered = new Set(instances);
    setRegistered(registered);
    await waitFor(async () => ((await routedAddresses()).size === instances.length ? true : undefined), 30_000, 'the client routes to all six instances');
    await waitFor(async () => ((await (await fetch(`http://${client.admin}/routes/demo/churn`)).json()) as { priorities: { healthy: number }[] }).priorities[0]?.healthy === instances.length, 30_000, 'all six instances healthy in the client\'s routes');

    const byAddress = new Map(instances.map((w) => [w.inbound, w]));
    // Per instance, what the test wrote to the registry and when (an add written is never later
    // than the client could route to it again), and when the client's routes lost it.
    const writes = new Map<string, { kind: 'added' | 'removed'; at: number }[]>(instances.map((w) => [w.spec.instance, [{ kind: 'added', at: 0 }]]));
    const removalsSeen: { instance: string; at: number }[] = [];
    const rss: number[] = [];
    let running = true;
    const watchRoutes = (async () => {
      let previous = await routedAddresses();
      while (running) {
        const now = await routedAddresses();
        const at = Date.now();
        for (const address of previous) if (!now.has(address)) removalsSeen.push({ instance: byAddress.get(address)!.spec.instance, at });
        previous = now;
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const sampleRss = setInterval(() => {
      const reading = client.pid === undefined ? undefined : readProcess(client.pid);
      if (reading) rss.push(reading.rssKb);
    }, 1000);

    const traffic = Array.from({ length: 2 }, () => steadyTraffic(client.outbound, 'http://churn.demo.mesh/', 20, 10_000));
    const startedAt = Date.now();
    let steps = 0;
    while (Date.now() - startedAt < churnMs) {
      const w = instances[Math.floor(Math.random() * instances.length)]!;
      const settled = [...registered].filter((x) => x !== w && Date.now() - writes.get(x.spec.instance)!.at(-1)!.at >= settledMs);
      if (registered.has(w) && settled.length >= minimumSettled) {
        registered.delete(w);
        writes.get(w.spec.instance)!.push({ kind: 'removed', at: Date.now() });
      } else if (!registered.has(w)) {
        registered.add(w);
        writes.get(w.spec.instance)!.push({ kind: 'added', at: Date.now() });
      }
      setRegistered(registered);
      steps += 1;
      await new Promise((r) => setTimeout(r, stepMs));
    }
    const results = (await Promise.all(traffic.map((t) => t.stop()))).flat().sort((a, b) => a.at - b.at);
    running = false;
    await watchRoutes;
    clearInterval(sampleRss);

    // A removal counts once the client's routes lack the instance while the registry's last write
    // of it was its removal (not a stale view of an older removal the test already undid). A
    // request started after such a removal, with no add written between the two, must not be
    // answered by that instance.
    const lastWrite = (instance: string, before: number) => (writes.get(instance) ?? []).filter((w) => w.at < before).at(-1);
    const removals = removalsSeen.filter((x) => lastWrite(x.instance, x.at)?.kind === 'removed');
    const addedBetween = (instance: string, from: number, to: number) => (writes.get(instance) ?? []).some((w) => w.kind === 'added' && w.at > from && w.at < to);
    const misrouted = results.filter((r) => r.ok && r.instance !== undefined
      && removals.some((x) => x.instance === r.instance && x.at < r.at && !addedBetween(x.instance, x.at, r.at)));
    const third = Math.max(1, Math.floor(rss.length / 3));
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
    const rssStartMiB = median(rss.slice(0, third)) / 1024;
    const rssEndMiB = median(rss.slice(-third)) / 1024;
    printFigure(trafficFigure(`endpoint churn ${churnMs / 1000}s`, results, startedAt, {
      steps, removalsSeen: removals.length, misrouted: misrouted.length,
      instancesAnswering: new Set(results.map((r) => r.instance)).size,
      rssStartMiB: rssStartMiB.toFixed(1), rssEndMiB: rssEndMiB.toFixed(1), rssMaxMiB: (Math.max(...rss) / 1024).toFixed(1),
    }));

    expect(removals.length).toBeGreaterThan(10);
    expect(results.length).toBeGreaterThan(100);
    expect(results.filter((r) => !r.ok)).toEqual([]);
    expect(misrouted).toEqual([]);
    // Flat: the median of the last third of the samples within 24 MiB of the first third's. A
    // leak of a route table or a connection pool per change (about 100 changes) shows far above.
    expect(rss.length).toBeGreaterThan(10);
    expect(rssEndMiB - rssStartMiB).toBeLessThan(24);
  }, 180_000);
});
