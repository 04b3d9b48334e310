import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startDevMesh, type DevMesh } from '../../src/dev/dev-mesh.js';
import { isthmusOk, waitFor } from '../helpers/cli.js';
import { etcdEnv } from '../helpers/etcd.js';
import { viaProxy } from '../helpers/proxy.js';

// Two clusters on 127.0.125.1 (east) / 127.0.126.1 (west), as `isthmus dev up` builds them:
// ledger runs only in west, so east's client has one upstream for it, west's gateway. CONNECT
// tunnels to ledger are opened through east's client proxy and held open.
let mesh: DevMesh;
let stateDir: string;
const env = () => ({ ...etcdEnv(mesh.file), ISTHMUS_OPERATOR_DIR: mesh.file.operator });
const proxy = () => mesh.file.clusters.east!.client.proxy;

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
  stateDir = mkdtempSync(join(tmpdir(), 'isthmus-tunnel-breaker-'));
  mesh = await startDevMesh({ clusters: ['east', 'west'], stateDir, trustDomain: 'dev.test', gateways: 1, hostBase: 125, progress: () => undefined });
}, 120_000);

afterAll(async () => {
  await mesh?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
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
