import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { connect as tlsConnect } from 'node:tls';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { keys } from '../../src/core/keys.js';
import { startDevMesh, type DevMesh } from '../../src/dev/dev-mesh.js';
import { loadClusterConfig } from '../../src/federation/config.js';
import { FederationStore } from '../../src/federation/store.js';
import type { IssuedRecord } from '../../src/federation/issued-ledger.js';
import { isSignedBy } from '../../src/trust/verify.js';
import { isthmus, isthmusOk, waitFor } from '../helpers/cli.js';
import { etcdEnv, startEtcd, storeOptions, type TestEtcd } from '../helpers/etcd.js';
import { printFigure } from '../helpers/faults.js';
import { steadyTraffic } from '../helpers/proxy.js';
import { sidecarIdentities, type HeldIdentity } from '../helpers/held-identities.js';

// Two clusters on 127.0.44.1 (east) and 127.0.45.1 (west), etcd on 127.0.46.1; ledger runs only
// in west, so east's client crosses clusters through west's gateway all along. Workload
// certificates live 10 minutes, so no renewal falls due on schedule during the test: every move
// to the new root is the sidecars' and gateways' answer to the federation's new intermediate.
let etcd: TestEtcd;
let mesh: DevMesh;
let stateDir: string;
let store: FederationStore;

beforeAll(async () => {
  stateDir = mkdtempSync(join(tmpdir(), 'isthmus-root-rotation-'));
  etcd = await startEtcd({ host: '127.0.46.1' });
  mesh = await startDevMesh({ clusters: ['east', 'west'], stateDir, trustDomain: 'rot.test', hostBase: 44, etcd: etcd.url, etcdTls: etcd.tls, gateways: 1, workloadTtl: '10m', progress: () => undefined });
  store = await FederationStore.connect(storeOptions(etcd));
}, 180_000);

afterAll(async () => {
  await store?.close();
  await mesh?.stop();
  await etcd?.destroy();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

const fingerprint = (pem: string) => new X509Certificate(pem).fingerprint256;
const issuedBy = (held: HeldIdentity, rootPem: string) => held.chain[0] !== undefined && isSignedBy(new X509Certificate(held.chain[0]), new X509Certificate(rootPem));

/** `openssl verify` of a leaf and its chain against the roots in `caFile`: true when it verifies. */
function opensslVerifies(caFile: string, held: { cert: string; chain: string[] }, name: string): boolean {
  const leaf = join(stateDir, `${name}-leaf.pem`);
  const chain = join(stateDir, `${name}-chain.pem`);
  writeFileSync(leaf, held.cert);
  writeFileSync(chain, held.chain.join('\n'));
  try {
    execFileSync('openssl', ['verify', '-CAfile', caFile, '-untrusted', chain, leaf], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}

interface SavedIdentity extends HeldIdentity { key: string }

/**
 * A TLS client presenting `held` to a sidecar's inbound listener, then one request: what a peer
 * sidecar would do. `answered` when an HTTP response came back (the listener took the
 * certificate); otherwise the error that ended the connection (TLS 1.3 refuses a client
 * certificate after the client's handshake is done, with an alert).
 */
function presentTo(address: string, held: SavedIdentity): Promise<string> {
  const split = address.lastIndexOf(':');
  return new Promise((resolve) => {
    let reply = '';
    const socket = tlsConnect({
      host: address.slice(0, split), port: Number(address.slice(split + 1)),
      cert: [held.cert, ...held.chain].join('\n'), key: held.key, ca: held.trustBundle, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'],
    });
    const timer = setTimeout(() => { socket.destroy(); resolve(reply.startsWith('HTTP/1.1') ? 'answered' : 'silence'); }, 5000);
    socket.once('secureConnect', () => socket.write('GET / HTTP/1.1\r\nhost: ledger.demo.mesh\r\nconnection: close\r\n\r\n'));
    socket.on('data', (chunk: Buffer) => { reply += chunk.toString(); });
    socket.once('close', () => { clearTimeout(timer); resolve(reply.startsWith('HTTP/1.1') ? 'answered' : 'closed'); });
    socket.once('error', (err) => { clearTimeout(timer); socket.destroy(); resolve(reply.startsWith('HTTP/1.1') ? 'answered' : err.message); });
  });
}

/** `isthmus check`'s "root rotation" check, as `-o json` gives it. */
async function rotationCheck(env: Record<string, string>): Promise<{ status: string; detail: string; hint?: string } | undefined> {
  const result = await isthmus(['check', '-o', 'json'], env);
  return (JSON.parse(result.stdout) as { checks: { name: string; status: string; detail: string; hint?: string }[] }).checks.find((c) => c.name === 'root rotation');
}

describe('a whole root rotation under steady cross-cluster traffic', () => {
  test('add the new root, rotate both intermediates, every workload and gateway moves to it, remove the old root: no request fails', async () => {
    const env = etcdEnv(etcd);
    const oldRootPem = readFileSync(join(mesh.file.ca, 'root-cert.pem'), 'utf8');
    const newRootDir = join(stateDir, 'ca-new');
    await isthmusOk(['ca', 'init', '--trust-domain', 'rot.test', '--out', newRootDir]);
    const newRootPem = readFileSync(join(newRootDir, 'root-cert.pem'), 'utf8');
    const [oldPrint, newPrint] = [fingerprint(oldRootPem), fingerprint(newRootPem)];
    const before = [...sidecarIdentities(stateDir).values()];
    expect(before.length).toBeGreaterThanOrEqual(4);
    expect(before.every((h) => issuedBy(h, oldRootPem))).toBe(true);
    const oldLeaf = before[0]! as SavedIdentity;
    // ledger's sidecar listens (inbound, mTLS) 1000 ports above its app in a dev mesh (src/dev/dev-mesh.ts).
    const ledgerApp = mesh.file.clusters.west!.services.find((s) => s.name === 'ledger')!.instances[0]!;
    const ledgerInbound = `${ledgerApp.slice(0, ledgerApp.lastIndexOf(':'))}:${Number(ledgerApp.slice(ledgerApp.lastIndexOf(':') + 1)) + 1000}`;
    expect(await presentTo(ledgerInbound, oldLeaf)).toBe('answered');

    // Before the new root is in the bundle, no cluster may take an intermediate of it, and nothing is written.
    const eastCaCert = join(loadClusterConfig(mesh.file.clusters.east!.config).caDir, 'ca-cert.pem');
    const eastIntermediate = readFileSync(eastCaCert, 'utf8');
    const tooEarly = await isthmus(['ca', 'rotate-intermediate', '--ca', newRootDir, '-c', mesh.file.clusters.east!.config], env);
    expect(tooEarly.code).not.toBe(0);
    expect(tooEarly.stderr).toMatch(/^isthmus ca rotate-intermediate: the root in .* is not in the mesh bundle of rot\.test.*isthmus ca add-root/);
    expect(tooEarly.stderr.trim().split('\n')).toHaveLength(1);
    expect(readFileSync(eastCaCert, 'utf8')).toBe(eastIntermediate);

    const traffic = steadyTraffic(mesh.file.clusters.east!.client.proxy, 'http://ledger.demo.mesh/');
    await new Promise((r) => setTimeout(r, 2000));
    const phases: Record<string, string> = {};
    const started = Date.now();

    // 1. The new root joins the bundle; every sidecar holds both.
    await isthmusOk(['ca', 'add-root', '--ca', newRootDir], env);
    const trusted = await waitFor(async () => {
      const held = [...sidecarIdentities(stateDir).values()];
      return held.length > 0 && held.every((h) => h.trustBundle.map(fingerprint).includes(newPrint) && h.trustBundle.map(fingerprint).includes(oldPrint));
    }, 90_000, 'every sidecar holding both roots');
    // Gateways long-poll the same federations for the roots as the sidecars: a moment more for them.
    await new Promise((r) => setTimeout(r, 1000));
    phases.bothRootsTrusted = `${trusted.ms}ms`;

    // 2. East gets an intermediate of the new root; the old root is still in use by west's, so
    //    removing it is refused, with the reason named.
    const rotateAt = Date.now();
    const east = JSON.parse((await isthmusOk(['ca', 'rotate-intermediate', '--ca', newRootDir, '-c', mesh.file.clusters.east!.config, '-o', 'json'], env)).stdout) as { changed: boolean; root: string };
    expect(east).toMatchObject({ changed: true, root: newPrint });
    expect(isSignedBy(new X509Certificate(readFileSync(eastCaCert, 'utf8')), new X509Certificate(newRootPem))).toBe(true);
    const early = await isthmus(['ca', 'remove-root', '--ca', mesh.file.ca], env);
    expect(early.code).not.toBe(0);
    expect(early.stderr).toMatch(/^isthmus ca remove-root: Refusing to remove root .* while it is in use.*cluster west still signs with an intermediate of this root/);
    expect(early.stderr.trim().split('\n')).toHaveLength(1);
    const west = JSON.parse((await isthmusOk(['ca', 'rotate-intermediate', '--ca', newRootDir, '-c', mesh.file.clusters.west!.config, '-o', 'json'], env)).stdout) as { changed: boolean };
    expect(west.changed).toBe(true);
    phases.intermediatesRotated = `${Date.now() - rotateAt}ms`;
    // What `isthmus check` says between the steps: the old root is still in use, and why.
    const during = await rotationCheck(env);
    expect(during?.status).toBe('warn');
    expect(during?.detail).toMatch(new RegExp(`rot\\.test: old root ${oldPrint} still in use: `));
    // Again: nothing to do, said so.
    const again = JSON.parse((await isthmusOk(['ca', 'rotate-intermediate', '--ca', newRootDir, '-c', mesh.file.clusters.west!.config, '-o', 'json'], env)).stdout) as { changed: boolean };
    expect(again.changed).toBe(false);

    // 3. Every sidecar renews onto the new chain, and every federation's record of what its
    //    certificates chain to (leaves it signed, its gateways' certificates) names only the new root.
    const moved = await waitFor(async () => {
      const held = [...sidecarIdentities(stateDir).values()];
      return held.length === before.length && held.every((h) => issuedBy(h, newRootPem));
    }, 120_000, 'every sidecar holding a certificate of the new root');
    phases.workloadsOnNewRoot = `${moved.ms}ms`;
    const records = await waitFor(async () => {
      const { records: issued } = await store.list<IssuedRecord>(keys.issued);
      const roots = issued.flatMap((r) => r.value.roots.map((x) => x.root));
      return issued.length === 2 && roots.includes(newPrint) && !roots.includes(oldPrint) ? issued : false;
    }, 60_000, 'no certificate of the old root left in either cluster\'s record');
    phases.gatewaysAndLedgersOnNewRoot = `${Date.now() - rotateAt}ms`;
    expect(records.value.map((r) => r.value.cluster).sort()).toEqual(['east', 'west']);
    const ready = await rotationCheck(env);
    expect(ready).toMatchObject({ status: 'warn', detail: `rot.test: nothing uses old root ${oldPrint} any more` });
    expect(ready?.hint).toMatch(/isthmus ca remove-root/);

    // 4. The old root leaves the bundle; every sidecar drops it.
    const removeAt = Date.now();
    const removed = JSON.parse((await isthmusOk(['ca', 'remove-root', '--ca', mesh.file.ca, '-o', 'json'], env)).stdout) as { changed: boolean; roots: { fingerprint256: string }[] };
    expect(removed).toMatchObject({ changed: true, roots: [{ fingerprint256: newPrint }] });
    const dropped = await waitFor(async () => {
      const held = [...sidecarIdentities(stateDir).values()];
      return held.length === before.length && held.every((h) => h.trustBundle.length === 1 && fingerprint(h.trustBundle[0]!) === newPrint);
    }, 90_000, 'every sidecar trusting only the new root');
    phases.oldRootDropped = `${dropped.ms}ms`;
    expect(await rotationCheck(env)).toMatchObject({ status: 'ok', detail: 'no rotation under way (one root per trust domain)' });
    await new Promise((r) => setTimeout(r, 3000));
    const results = await traffic.stop();
    const failed = results.filter((r) => !r.ok);

    printFigure({ scenario: 'root rotation (add root, rotate intermediates, remove old root)', sent: results.length, failed: failed.length, extra: { ...phases, total: `${Date.now() - started}ms` } });
    expect(failed.slice(0, 5)).toEqual([]);
    expect(results.filter((r) => r.at > removeAt).length).toBeGreaterThan(0);
    expect(results.every((r) => r.cluster === 'west')).toBe(true);

    // What openssl says: every final leaf chains to the new root and not to the old one; a leaf
    // of the old root, valid until its end, no longer verifies against the bundle the mesh holds.
    const newRootFile = join(stateDir, 'new-root.pem');
    const oldRootFile = join(stateDir, 'old-root.pem');
    const bundleFile = join(stateDir, 'final-bundle.pem');
    writeFileSync(newRootFile, newRootPem);
    writeFileSync(oldRootFile, oldRootPem);
    const final = [...sidecarIdentities(stateDir)];
    writeFileSync(bundleFile, final[0]![1].trustBundle.join('\n'));
    for (const [name, held] of final) {
      const file = name.replace(/\//g, '-');
      expect({ name, newRoot: opensslVerifies(newRootFile, held, file), oldRoot: opensslVerifies(oldRootFile, held, file) }).toEqual({ name, newRoot: true, oldRoot: false });
    }
    expect(opensslVerifies(oldRootFile, oldLeaf, 'old-leaf')).toBe(true);
    expect(opensslVerifies(bundleFile, oldLeaf, 'old-leaf')).toBe(false);
    // And a sidecar refuses it: the same leaf ledger's sidecar took before the rotation, still
    // within its validity, now ends the handshake.
    expect(new Date(new X509Certificate(oldLeaf.cert).validTo).getTime()).toBeGreaterThan(Date.now());
    const refused = await presentTo(ledgerInbound, oldLeaf);
    process.stdout.write(`old leaf presented to ledger's sidecar after removal: ${refused}\n`);
    expect(refused).toMatch(/alert|certificate|unknown ca|^closed$|ECONNRESET/i);
  }, 480_000);
});
