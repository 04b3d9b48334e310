import { createServer, type AddressInfo, type Server } from 'node:net';
import { afterEach, describe, expect, test } from 'vitest';
import { HealthChecker, tcpProbe } from './health-checker.js';

/** Real listeners counting the probes they accept. */
const servers: Server[] = [];
async function listener(): Promise<{ address: string; accepted: () => number; close: () => Promise<void> }> {
  let accepted = 0;
  const server = createServer((socket) => { accepted += 1; socket.destroy(); });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { address, accepted: () => accepted, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise((resolve) => s.close(() => resolve(undefined)));
});

/** Waits until `n` connections reached the listener (a probe's connect resolves before the server's accept callback runs). */
async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !check(); i += 1) await new Promise((resolve) => setTimeout(resolve, 10));
}

describe('health checks with passive proof', () => {
  test('an address that answered traffic since the last round is healthy without a probe; one that did not is probed', async () => {
    const used = await listener();
    const idle = await listener();
    const served = new Set<string>();
    const health = new HealthChecker({ intervalMs: 60_000, addresses: () => [used.address, idle.address], onChange: () => undefined, servedSince: (a) => served.has(a) });
    await health.round();
    await until(() => used.accepted() === 1 && idle.accepted() === 1);
    expect([used.accepted(), idle.accepted()]).toEqual([1, 1]);

    served.add(used.address);
    await health.round();
    await health.round();
    await until(() => idle.accepted() === 3);
    expect([used.accepted(), idle.accepted()]).toEqual([1, 3]);
    expect([health.isHealthy(used.address), health.isHealthy(idle.address)]).toEqual([true, true]);
  });

  test('an address never checked is probed even if it answered traffic, and a dead one is found unhealthy', async () => {
    const dead = await listener();
    await dead.close();
    const health = new HealthChecker({ intervalMs: 60_000, unhealthyAfter: 1, addresses: () => [dead.address], onChange: () => undefined, servedSince: () => false });
    await health.round();
    expect(health.isHealthy(dead.address)).toBe(false);
    const fresh = await listener();
    const trusting = new HealthChecker({ intervalMs: 60_000, addresses: () => [fresh.address], onChange: () => undefined, servedSince: () => true });
    await trusting.round();
    await until(() => fresh.accepted() === 1);
    expect(fresh.accepted()).toBe(1);
  });
});

describe('an address listed more than once', () => {
  test('is probed once a round, and turns unhealthy after unhealthyAfter rounds, not sooner', async () => {
    const up = { ok: true };
    const probed: string[] = [];
    const changes: string[][] = [];
    // Two services on one pod: the federation lists the pod's address once per service.
    const health = new HealthChecker({
      intervalMs: 60_000, unhealthyAfter: 2, addresses: () => ['pod:80', 'other:80', 'pod:80'],
      probe: async (address) => { probed.push(address); return address === 'other:80' || up.ok; },
      onChange: (failed) => { changes.push(failed); },
    });
    await health.round();
    expect(probed.sort()).toEqual(['other:80', 'pod:80']);
    up.ok = false;
    await health.round();
    expect(health.isHealthy('pod:80')).toBe(true);
    await health.round();
    expect(health.isHealthy('pod:80')).toBe(false);
    expect(probed.filter((a) => a === 'pod:80')).toHaveLength(3);
    expect(changes).toEqual([[], ['pod:80']]);
  });
});

describe('what onChange reports', () => {
  test('an address that fails is reported failed, and recovered once it passes again; a first verdict is neither', async () => {
    const up = { ok: true };
    const calls: { failed: string[]; recovered: string[] }[] = [];
    const health = new HealthChecker({
      intervalMs: 60_000, unhealthyAfter: 1, addresses: () => ['a:1'], probe: async () => up.ok,
      onChange: (failed, recovered) => { calls.push({ failed, recovered }); },
    });
    await health.round();
    up.ok = false;
    await health.round();
    await health.round();
    up.ok = true;
    await health.round();
    await health.round();
    expect(calls).toEqual([{ failed: [], recovered: [] }, { failed: ['a:1'], recovered: [] }, { failed: [], recovered: ['a:1'] }]);
  });
});

describe('idle addresses checked less often (idleEvery)', () => {
  test('a healthy idle address is probed once in idleEvery rounds; traffic counts as a check', async () => {
    const idle = await listener();
    const served = new Set<string>();
    const health = new HealthChecker({ intervalMs: 60_000, addresses: () => [idle.address], onChange: () => undefined, servedSince: (a) => served.has(a), idleEvery: 3 });
    for (let i = 0; i < 7; i += 1) await health.round();
    await until(() => idle.accepted() === 3);
    // Rounds 1, 4 and 7.
    expect(idle.accepted()).toBe(3);
    expect(health.isHealthy(idle.address)).toBe(true);
    // Traffic at round 8 is a fresh verdict: the next probe is due at round 11.
    served.add(idle.address);
    await health.round();
    served.clear();
    await health.round();
    await health.round();
    expect(idle.accepted()).toBe(3);
    await health.round();
    await until(() => idle.accepted() === 4);
    expect(idle.accepted()).toBe(4);
  });

  test('an address that needs a check (requests waiting on it, or ejected) is probed every round, and so is an unhealthy one', async () => {
    const busy = await listener();
    const gone = await listener();
    await gone.close();
    const probes = new Map<string, number>();
    const health = new HealthChecker({
      intervalMs: 60_000, unhealthyAfter: 1, addresses: () => [busy.address, gone.address], onChange: () => undefined,
      idleEvery: 5, needsCheck: (a) => a === busy.address,
      probe: (a, t) => { probes.set(a, (probes.get(a) ?? 0) + 1); return tcpProbe(a, t); },
    });
    for (let i = 0; i < 4; i += 1) await health.round();
    expect([probes.get(busy.address), probes.get(gone.address)]).toEqual([4, 4]);
    expect([health.isHealthy(busy.address), health.isHealthy(gone.address)]).toEqual([true, false]);
  });

  test('a healthy address that stops answering is found within idleEvery rounds even when idle', async () => {
    const going = await listener();
    const health = new HealthChecker({ intervalMs: 60_000, unhealthyAfter: 1, addresses: () => [going.address], onChange: () => undefined, idleEvery: 3 });
    await health.round();
    await going.close();
    const verdicts: boolean[] = [];
    for (let i = 0; i < 3; i += 1) {
      await health.round();
      verdicts.push(health.isHealthy(going.address));
    }
    expect(verdicts).toEqual([true, true, false]);
  });
});

describe('the wait between rounds', () => {
  const checker = (opts: { jitter?: number; random: () => number }) => new HealthChecker({ intervalMs: 2000, addresses: () => [], onChange: () => undefined, ...opts });
  test.each([
    // [jitter, random draw, wait ms]: the draw maps [0, 1) onto [1 - jitter, 1 + jitter)
    [undefined, 0, 1800], [undefined, 0.5, 2000], [undefined, 0.999, 2200],
    [0.2, 0, 1600], [0.2, 0.75, 2200],
    [0, 0, 2000], [0, 0.9, 2000],
    [3, 0, 1000], // at most ± half the interval, whatever was asked
  ])('jitter %s, draw %d: %d ms', (jitter, draw, wait) => {
    expect(checker({ ...(jitter === undefined ? {} : { jitter }), random: () => draw }).nextWaitMs()).toBe(wait);
  });
  test('checkers started together drift apart: 20 of them, after 10 rounds, spread over more than a quarter of the interval', () => {
    const clocks = Array.from({ length: 20 }, () => {
      const health = checker({ random: Math.random });
      let at = 0;
      for (let round = 0; round < 10; round += 1) at += health.nextWaitMs();
      return at % 2000;
    });
    expect(Math.max(...clocks) - Math.min(...clocks)).toBeGreaterThan(500);
  });
});
