import { createServer, Server } from 'node:net';
import { describe, expect, test } from 'vitest';
import { createMetrics } from '../telemetry/metrics.js';
import { clientContext, clientId, routingTo, testPki } from '../../test/helpers/sidecar-fixtures.js';
import { defaultTimeouts } from './timeouts.js';
import { defaultWarmUpRequests, warmUp } from './warm-up.js';

const pki = testPki();
const identity = {
  current: () => ({ identity: clientId, certPem: pki.client.certPem, chainPem: [pki.west.certPem], keyPem: pki.client.keyPem, trustBundle: [pki.root.certPem], notAfter: new Date(Date.now() + 3_600_000) }),
  secureContext: () => clientContext(pki),
};

/** Whether nothing listens on this 127.0.0.1 port any more. */
async function portIsFree(address: string): Promise<boolean> {
  const port = Number(address.slice(address.lastIndexOf(':') + 1));
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once('error', () => resolve(false));
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(true)));
  });
}

describe('the sidecar warm-up', () => {
  test('every request crosses the private outbound → mTLS → inbound → app chain and is answered', async () => {
    const result = await warmUp({ cluster: 'west', zone: 'west-a', identity, timeouts: defaultTimeouts, requests: 40 });
    expect(result.error).toBeUndefined();
    expect(result.answered).toBe(40);
  });

  test('a sidecar in the same process counts none of it: its metrics stay as they were', async () => {
    // The sidecar's own routing table, with its metrics, as runSidecar builds them.
    const routing = routingTo(['127.0.0.1:9']);
    const metrics = createMetrics('sidecar', { cluster: 'west' }, { origins: [routing] });
    try {
      const before = (await metrics.exposition()).body;
      const result = await warmUp({ cluster: 'west', zone: 'west-a', identity, timeouts: defaultTimeouts, requests: 20 });
      expect(result.answered).toBe(20);
      const after = (await metrics.exposition()).body;
      expect(after).not.toContain('isthmus-warm-up');
      const requestLines = (text: string) => text.split('\n').filter((l) => l.startsWith('isthmus_requests_total'));
      expect(requestLines(after)).toEqual(requestLines(before));
    } finally {
      metrics.close();
    }
  });

  test('its listeners are closed afterwards', async () => {
    // Every server it listens with, caught through net.Server's listen (all three are net servers).
    const seen: string[] = [];
    const listen = Server.prototype.listen;
    Server.prototype.listen = function (this: Server, ...args: unknown[]) {
      this.once('listening', () => {
        const a = this.address();
        if (a && typeof a === 'object') seen.push(`${a.address}:${a.port}`);
      });
      return (listen as (...a: unknown[]) => Server).apply(this, args);
    } as typeof listen;
    try {
      expect((await warmUp({ cluster: 'west', zone: 'west-a', identity, timeouts: defaultTimeouts, requests: 10 })).answered).toBe(10);
    } finally {
      Server.prototype.listen = listen;
    }
    expect(seen).toHaveLength(3); // the app, the inbound, the outbound
    for (const address of seen) expect(await portIsFree(address)).toBe(true);
  });

  test('0 requests skips it; the default can be changed for a whole process through the environment', async () => {
    expect(await warmUp({ cluster: 'west', zone: 'west-a', identity, timeouts: defaultTimeouts, requests: 0 })).toEqual({ ms: 0, answered: 0 });
    expect(defaultWarmUpRequests({})).toBe(1000);
    expect(defaultWarmUpRequests({ ISTHMUS_SIDECAR_WARM_UP_REQUESTS: '20' })).toBe(20);
    expect(defaultWarmUpRequests({ ISTHMUS_SIDECAR_WARM_UP_REQUESTS: 'lots' })).toBe(1000);
  });

  test('a warm-up still running at its deadline stops sending and returns what it did, without an error: the sidecar serves on time', async () => {
    const result = await warmUp({ cluster: 'west', zone: 'west-a', identity, timeouts: defaultTimeouts, requests: 10_000, deadlineMs: 300 });
    expect(result.error).toBeUndefined();
    expect(result.cutShort).toBe(true);
    expect(result.answered).toBeGreaterThan(0);
    // The requests in flight at the deadline finish; nothing more is sent.
    expect(result.answered).toBeLessThan(10_000);
  });
});
