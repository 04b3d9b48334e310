import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startDevMesh, type DevMesh } from '../../src/dev/dev-mesh.js';
import { isthmus, isthmusOk, waitFor } from '../helpers/cli.js';
import { etcdEnv, startEtcd, type TestEtcd } from '../helpers/etcd.js';
import { printFigure, trafficFigure } from '../helpers/faults.js';
import { steadyTraffic } from '../helpers/proxy.js';
import { sidecarIdentities } from '../helpers/held-identities.js';

// Two clusters on 127.0.97.1 (east) and 127.0.98.1 (west), etcd on 127.0.99.1; ledger runs only
// in west, so east's client crosses clusters. Workload certificates live 20 s, so every sidecar
// renews about every 10 s (at half its life).
let etcd: TestEtcd;
let mesh: DevMesh;
let stateDir: string;
const eastProxy = () => mesh.file.clusters.east!.client.proxy;

beforeAll(async () => {
  stateDir = mkdtempSync(join(tmpdir(), 'isthmus-cert-rotation-'));
  etcd = await startEtcd({ host: '127.0.99.1' });
  mesh = await startDevMesh({ clusters: ['east', 'west'], stateDir, trustDomain: 'dev.test', hostBase: 97, etcd: etcd.url, etcdTls: etcd.tls, gateways: 1, workloadTtl: '20s', progress: () => undefined });
}, 180_000);

afterAll(async () => {
  await mesh?.stop();
  await etcd?.destroy();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

const fingerprint = (pem: string) => new X509Certificate(pem).fingerprint256;

describe('certificates renewed and a new root added under steady cross-cluster traffic', () => {
  test('every sidecar renews its certificate while traffic flows (about every 10 s): no request fails', async () => {
    const serials = new Map<string, Set<string>>();
    const traffic = steadyTraffic(eastProxy(), 'http://ledger.demo.mesh/');
    const startedAt = Date.now();
    while (Date.now() - startedAt < 35_000) {
      for (const [name, held] of sidecarIdentities(stateDir)) serials.set(name, (serials.get(name) ?? new Set()).add(new X509Certificate(held.cert).serialNumber));
      await new Promise((r) => setTimeout(r, 500));
    }
    const results = await traffic.stop();
    const renewals = [...serials.values()].map((s) => s.size - 1);

    printFigure(trafficFigure('workload certificates renewed (20 s life)', results, startedAt, { sidecars: serials.size, fewestRenewals: Math.min(...renewals), mostRenewals: Math.max(...renewals) }));
    expect(serials.size).toBeGreaterThanOrEqual(4); // east's hello ×2 and client, west's hello ×2, ledger and client
    // Three renewals are due in 35 s; at least one is required, since a busy machine delays them.
    expect(Object.fromEntries([...serials].filter(([, s]) => s.size < 2).map(([name, s]) => [name, s.size]))).toEqual({});
    expect(results.filter((r) => !r.ok).slice(0, 5)).toEqual([]);
    expect(results.every((r) => r.cluster === 'west')).toBe(true);
  }, 90_000);

  test('a second root added with `isthmus ca add-root` reaches every sidecar\'s trust bundle; no request fails', async () => {
    const newRoot = join(stateDir, 'ca-new');
    await isthmusOk(['ca', 'init', '--trust-domain', 'dev.test', '--out', newRoot]);
    const oldPrint = fingerprint(readFileSync(join(mesh.file.ca, 'root-cert.pem'), 'utf8'));
    const newPrint = fingerprint(readFileSync(join(newRoot, 'root-cert.pem'), 'utf8'));

    const traffic = steadyTraffic(eastProxy(), 'http://ledger.demo.mesh/');
    await new Promise((r) => setTimeout(r, 2000));
    const addedAt = Date.now();
    const added = JSON.parse((await isthmusOk(['ca', 'add-root', '--ca', newRoot, '-o', 'json'], etcdEnv(etcd))).stdout) as { changed: boolean; roots: { fingerprint256: string }[] };
    await waitFor(async () => {
      const held = [...sidecarIdentities(stateDir).values()];
      return held.length > 0 && held.every((h) => h.trustBundle.map(fingerprint).includes(newPrint) && h.trustBundle.map(fingerprint).includes(oldPrint));
    }, 60_000, 'every sidecar holding both roots');
    const trustedAt = Date.now();
    await new Promise((r) => setTimeout(r, 2000));
    const results = await traffic.stop();

    printFigure(trafficFigure('second root added', results, addedAt, { everySidecarTrustsIt: `${trustedAt - addedAt}ms` }));
    expect(added.changed).toBe(true);
    expect(added.roots.map((r) => r.fingerprint256)).toEqual([oldPrint, newPrint]);
    expect(results.filter((r) => !r.ok).slice(0, 5)).toEqual([]);
    // Again: nothing to do, said so.
    const again = JSON.parse((await isthmusOk(['ca', 'add-root', '--ca', newRoot, '-o', 'json'], etcdEnv(etcd))).stdout) as { changed: boolean };
    expect(again.changed).toBe(false);
  }, 120_000);
});

describe('isthmus ca remove-root', () => {
  test('refuses a root still in use, naming why; --force removes it with a warning; refuses the last root of a trust domain and a trust domain etcd has no bundle for, one line each', async () => {
    const env = etcdEnv(etcd);
    const newPrint = fingerprint(readFileSync(join(stateDir, 'ca-new', 'root-cert.pem'), 'utf8'));
    // Both clusters still sign with intermediates of the first root.
    const inUse = await isthmus(['ca', 'remove-root', '--ca', mesh.file.ca], env);
    expect(inUse.code).not.toBe(0);
    expect(inUse.stderr).toMatch(/^isthmus ca remove-root: Refusing to remove root .* of dev\.test while it is in use.*cluster east still signs with an intermediate of this root.*cluster west still signs/);
    const forced = await isthmusOk(['ca', 'remove-root', '--ca', mesh.file.ca, '--force', '-o', 'json'], env);
    expect(forced.stderr).toMatch(/^warning: removing root .* although it is still in use \(--force\): cluster east still signs/);
    expect(JSON.parse(forced.stdout)).toMatchObject({ changed: true, roots: [{ fingerprint256: newPrint }] });

    const last = await isthmus(['ca', 'remove-root', '--ca', join(stateDir, 'ca-new')], env);
    expect(last.code).not.toBe(0);
    expect(last.stderr).toMatch(/^isthmus ca remove-root: Refusing to remove the only root of trust domain "dev\.test".*isthmus ca add-root/);

    const other = join(stateDir, 'ca-other');
    await isthmusOk(['ca', 'init', '--trust-domain', 'other.test', '--out', other]);
    const unknown = await isthmus(['ca', 'add-root', '--ca', other], env);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toMatch(/^isthmus ca add-root: etcd holds no trust bundle for other\.test/);
    for (const result of [inUse, last, unknown]) {
      expect(result.stderr.trim().split('\n')).toHaveLength(1);
      expect(result.stderr).not.toMatch(/\n\s+at /);
    }
  }, 60_000);
});
