import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { processTree } from '../../src/bench/proc-cpu.js';
import { processLabel } from '../../src/bench/soak.js';
import { startDevMesh, type DevMesh } from '../../src/dev/dev-mesh.js';
import { waitFor } from '../helpers/cli.js';
import { killProcess, printFigure, trafficFigure } from '../helpers/faults.js';
import { steadyTraffic, viaProxy } from '../helpers/proxy.js';

// Three clusters on 127.0.147.1 (east), 127.0.148.1 (west), 127.0.149.1 (north), every sidecar
// and gateway a process of its own. East's own hello instances are stopped, so east's client
// reaches hello in west and north. Then every process of north's data plane (its gateway and
// all its sidecars) is SIGKILLed at once: for the other clusters, north is gone. Its federation
// runs inside the test process and stays; it is not what other clusters route through.
let mesh: DevMesh;
let stateDir: string;
const eastProxy = () => mesh.file.clusters.east!.client.proxy;
/** The lease TTL a dev mesh's clusters join with, and the bound: other clusters take over within TTL + 5 s. */
const takeOverMs = 15_000 + 5_000;

beforeAll(async () => {
  stateDir = mkdtempSync(join(tmpdir(), 'isthmus-cluster-killed-'));
  mesh = await startDevMesh({ clusters: ['east', 'west', 'north'], stateDir, trustDomain: 'dev.test', hostBase: 147, gateways: 1, processes: true, progress: () => undefined });
  for (const w of mesh.workloads.filter((x) => x.spec.cluster === 'east' && x.spec.service === 'hello')) await w.stop();
}, 180_000);

afterAll(async () => {
  await mesh?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

describe('a whole cluster\'s data plane killed under traffic', () => {
  test('east\'s traffic to hello moves to west within lease TTL + 5 s; the failed requests are counted', async () => {
    await waitFor(async () => {
      const seen = new Set<string>();
      for (let i = 0; i < 20; i += 1) seen.add(String((await viaProxy(eastProxy(), 'http://hello.demo.mesh/', 5000)).body?.cluster));
      return seen.has('west') && seen.has('north') ? true : undefined;
    }, 30_000, 'east answered by both west and north');

    const north = processTree(process.pid).filter((pid) => / clusters\/north | sidecars\/north\//.test(` ${processLabel(pid, stateDir)}`));
    expect(north.length).toBeGreaterThanOrEqual(3); // the gateway and hello's two sidecars at least

    const traffic = steadyTraffic(eastProxy(), 'http://hello.demo.mesh/');
    await new Promise((r) => setTimeout(r, 2000));
    const killedAt = Date.now();
    await Promise.all(north.map((pid) => killProcess(pid)));
    await new Promise((r) => setTimeout(r, takeOverMs + 5000));
    const results = await traffic.stop();

    const figure = trafficFigure('cluster north killed', results, killedAt, { processesKilled: north.length });
    printFigure(figure);
    expect(results.filter((r) => r.at < killedAt).every((r) => r.ok)).toBe(true);
    // After the bound every request succeeds, answered by west.
    const late = results.filter((r) => r.at >= killedAt + takeOverMs);
    expect(late.length).toBeGreaterThan(10);
    expect(late.filter((r) => !r.ok || r.cluster !== 'west')).toEqual([]);
  }, 120_000);
});
