import { createServer, type AddressInfo, type Server } from 'node:net';
import { afterEach, describe, expect, test } from 'vitest';
import { HealthChecker } from './health-checker.js';

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
