import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { isthmusOk } from '../../test/helpers/cli.js';
import { freePort, TestMesh, type TestCluster } from '../../test/helpers/mesh.js';
import { silentLogger } from '../core/log.js';
import { createRootCa, issueCertificate } from '../trust/ca.js';
import { certificateInfo } from '../trust/verify.js';
import { firstCertificateAttempts, WorkloadIdentity, type WorkloadCredentials } from './identity.js';
import { rawEtcd } from '../../test/helpers/etcd.js';

let mesh: TestMesh;
let cluster: TestCluster;
let token: string;
/** Tokens are single-use: each test that buys a first certificate has its own. */
let watcherToken: string;
let rootCertPem: string;
let stateDir: string;
let identity: WorkloadIdentity | undefined;
const expectedId = 'spiffe://mesh.test/ns/demo/sa/client';
const federationUrl = () => `https://${cluster.apiAddress}`;

beforeAll(async () => {
  mesh = await TestMesh.create();
  const ca = await mesh.caInit('ca', 'mesh.test');
  cluster = await mesh.join('east', { index: 5, ca, leaseTtl: '3s' });
  // A 6 s certificate so renewal at half-life happens within a test.
  const config = parse(readFileSync(cluster.config, 'utf8')) as Record<string, unknown>;
  writeFileSync(cluster.config, stringify({ ...config, certificates: { workloadTtl: '6s', caDir: '.' } }));
  const registered = await isthmusOk(['register', 'client', '-n', 'demo', '-c', cluster.config, '--address', '127.0.5.1:1', '-o', 'json']);
  token = (JSON.parse(registered.stdout) as { token: string }).token;
  const watcher = await isthmusOk(['register', 'watcher', '-n', 'demo', '-c', cluster.config, '--address', '127.0.5.1:2', '-o', 'json']);
  watcherToken = (JSON.parse(watcher.stdout) as { token: string }).token;
  rootCertPem = readFileSync(cluster.rootCert, 'utf8');
  stateDir = join(mesh.dir, 'sidecar-state');
  await mesh.startFederation('east');
});

afterAll(async () => {
  await identity?.stop();
  await mesh?.close();
});

const start = (opts: { bootstrapToken?: string; stateDir?: string; federationUrl?: string } = {}) =>
  WorkloadIdentity.start({ federationUrl: federationUrl(), rootCertPem, stateDir, logger: silentLogger, ...opts });

function nextRenewal(subject: WorkloadIdentity): Promise<{ credentials: WorkloadCredentials; at: number }> {
  return new Promise((resolve) => subject.once('renewed', (credentials: WorkloadCredentials) => resolve({ credentials, at: Date.now() })));
}

describe('a sidecar gets, renews and keeps its workload certificate', () => {
  test('the first certificate, bought with the bootstrap token, names the workload and verifies with openssl', async () => {
    identity = await start({ bootstrapToken: token });
    const first = identity.current();
    expect(first.identity).toBe(expectedId);
    expect(certificateInfo(first.certPem).identity).toBe(expectedId);
    expect(first.trustBundle.map((pem) => pem.trim())).toContain(rootCertPem.trim());
    const dir = mkdtempSync(join(mesh.dir, 'openssl-'));
    writeFileSync(join(dir, 'leaf.pem'), first.certPem);
    writeFileSync(join(dir, 'chain.pem'), first.chainPem.join('\n'));
    const out = execFileSync('openssl', ['verify', '-CAfile', cluster.rootCert, '-untrusted', join(dir, 'chain.pem'), join(dir, 'leaf.pem')], { encoding: 'utf8' });
    expect(out).toMatch(/leaf\.pem: OK/);
    // It holds the private key: only the owner may read it.
    expect(statSync(join(stateDir, 'identity.json')).mode & 0o777).toBe(0o600);
  });

  test('renews at half-life with a new serial and the same identity, and no handshake fails across the renewal', async () => {
    const subject = identity as WorkloadIdentity;
    const server = createServer({ requestCert: true, rejectUnauthorized: true, SNICallback: (_name, cb) => cb(null, subject.secureContext()) }, (socket) => socket.end('ok'));
    await new Promise<void>((resolve) => server.listen(0, cluster.host, resolve));
    const port = (server.address() as { port: number }).port;
    const served = new Set<string>();
    const failures: string[] = [];
    let handshakes = 0;
    const handshake = () => new Promise<void>((resolve) => {
      const socket: TLSSocket = connect({ host: cluster.host, port, servername: 'client.demo', secureContext: subject.secureContext(), checkServerIdentity: () => undefined });
      socket.setTimeout(5000, () => socket.destroy(new Error('handshake timed out')));
      let reply = '';
      socket.on('secureConnect', () => served.add(socket.getPeerCertificate().serialNumber));
      socket.on('data', (chunk: Buffer) => { reply += chunk.toString(); });
      socket.on('end', () => { if (reply === 'ok') handshakes++; else failures.push(`reply ${JSON.stringify(reply)}`); resolve(); });
      socket.on('error', (err) => { failures.push(err.message); resolve(); });
    });
    let looping = true;
    const pending: Promise<void>[] = [];
    const loop = (async () => {
      while (looping) {
        pending.push(handshake());
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    try {
      const first = await nextRenewal(subject);
      const second = await nextRenewal(subject);
      await new Promise((r) => setTimeout(r, 300));
      looping = false;
      await loop;
      await Promise.all(pending);
      // What a workload relies on: a certificate is replaced before it expires, and not in a
      // loop (half-life renewal of a 6 s certificate; the exact moment is not a promise).
      expect(second.at).toBeLessThan(certificateInfo(first.credentials.certPem).notAfter.getTime());
      expect(second.at - first.at).toBeGreaterThan(1000);
      const serials = [first, second].map((r) => certificateInfo(r.credentials.certPem).serialNumber);
      expect(new Set(serials).size).toBe(2);
      expect(second.credentials.identity).toBe(expectedId);
      expect(second.credentials.keyPem).not.toBe(first.credentials.keyPem);
      // Every handshake tried across the renewal succeeded, with the old certificate and the new.
      expect(failures).toEqual([]);
      expect(handshakes).toBe(pending.length);
      expect(served.size).toBeGreaterThanOrEqual(2);
    } finally {
      looping = false;
      server.close();
    }
  });

  test('a root added to the mesh (trust federation, rotation) reaches the trust bundle and the secure context', async () => {
    const watcher = await start({ bootstrapToken: watcherToken, stateDir: join(mesh.dir, 'trust-watch') });
    try {
      const before = watcher.secureContext();
      const changed = new Promise<string[]>((resolve) => watcher.once('trust-bundle', resolve));
      const foreign = createRootCa({ trustDomain: 'other.test' }).certPem;
      const etcd = rawEtcd(mesh.etcd);
      const putAt = Date.now();
      try {
        await etcd.put('/isthmus/v1/trust/bundles/other.test').value(JSON.stringify({ version: 1, trustDomain: 'other.test', roots: [foreign] }));
      } finally {
        etcd.close();
      }
      const roots = await changed;
      // The trust bundle is long-polled: the change arrives as the federation sees it, not when
      // the poll's 30 s wait runs out.
      expect(Date.now() - putAt).toBeLessThan(20_000);
      expect(roots.map((pem) => pem.trim())).toEqual(expect.arrayContaining([foreign.trim(), rootCertPem.trim()]));
      expect(watcher.current().trustBundle).toEqual(roots);
      expect(watcher.secureContext()).not.toBe(before);
      const saved = JSON.parse(readFileSync(join(mesh.dir, 'trust-watch', 'identity.json'), 'utf8')) as { trustBundle: string[] };
      expect(saved.trustBundle).toEqual(roots);
    } finally {
      await watcher.stop();
    }
  });

  test('a token that already bought a certificate is refused to a second sidecar with nothing saved', async () => {
    const err = await start({ bootstrapToken: token, stateDir: join(mesh.dir, 'second-buyer') }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ISTHMUS_ERR_TRUST_TOKEN_INVALID' });
    expect((err as Error).message).toMatch(/already used to get a certificate; tokens are single-use/);
  });

  test('a bad bootstrap token is refused with a code and says how to get a new one', async () => {
    const err = await start({ bootstrapToken: `isth_${'A'.repeat(43)}`, stateDir: join(mesh.dir, 'bad-token') }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ISTHMUS_ERR_TRUST_TOKEN_INVALID' });
    expect((err as Error).message).toMatch(/isthmus register/);
  });

  test('an unreachable federation with nothing saved is an error that names the URL', async () => {
    const url = `https://127.0.5.1:${await freePort('127.0.5.1')}`;
    const err = await start({ bootstrapToken: token, stateDir: join(mesh.dir, 'unreachable'), federationUrl: url }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ISTHMUS_ERR_API_UNREACHABLE' });
    expect((err as Error).message).toContain(url);
  });

  test('a federation that takes the certificate request and never answers: asked again, then an error naming the timeout, not a silent wait', async () => {
    // A TLS server the sidecar trusts, at an address its certificate names, that reads requests and answers none.
    const root = createRootCa({ trustDomain: 'silent.test' });
    const leaf = issueCertificate({ identity: 'spiffe://silent.test/ns/x/sa/federation', issuer: root, ipAddresses: ['127.0.5.1'] });
    let requests = 0;
    const silent = createServer({ cert: leaf.certPem, key: leaf.keyPem }, (socket) => {
      socket.on('data', (chunk: Buffer) => { requests += chunk.toString('latin1').split('POST /v1/certificates').length - 1; });
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.5.1', resolve));
    try {
      const url = `https://127.0.5.1:${(silent.address() as { port: number }).port}`;
      const started = Date.now();
      const err = await WorkloadIdentity.start({
        federationUrl: url, rootCertPem: root.certPem, stateDir: join(mesh.dir, 'silent'), logger: silentLogger, bootstrapToken: token, certificateRequestTimeoutMs: 300,
      }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'ISTHMUS_ERR_API_UNREACHABLE' });
      expect((err as Error).message).toContain(url);
      expect((err as Error).message).toMatch(/no answer within 300 ms/);
      expect(requests).toBe(firstCertificateAttempts);
      expect(Date.now() - started).toBeLessThan(30_000);
    } finally {
      silent.close();
    }
  });

  test('a restart with the federation down uses the saved certificate', async () => {
    const subject = identity as WorkloadIdentity;
    // Right after a renewal the saved certificate has most of its life left.
    const { credentials } = await nextRenewal(subject);
    await subject.stop();
    identity = undefined;
    await cluster.federation?.stop();
    identity = await start();
    expect(identity.current().identity).toBe(expectedId);
    expect(identity.current().certPem).toBe(credentials.certPem);
    expect(identity.current().keyPem).toBe(credentials.keyPem);
  });
});
