import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'undici';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { keys } from '../../src/core/keys.js';
import type { Catalog } from '../../src/model/catalog.js';
import { applyServiceChanges } from '../../src/model/service-changes.js';
import { createCsr } from '../../src/trust/ca.js';
import { apiClient, isthmusOk, sleep, waitFor, type ApiClient } from '../helpers/cli.js';
import { TestMesh, testOperator, type TestCluster, type TestOperator } from '../helpers/mesh.js';
import { opensslIssue, opensslRoot } from '../helpers/openssl-certs.js';
import { etcdArgs, rawEtcd } from '../helpers/etcd.js';

// Three clusters on their own loopback addresses; north brings its own root (trust federation).
let mesh: TestMesh;
let east: TestCluster;
let west: TestCluster;
let north: TestCluster;
const clients = new Map<string, ApiClient>();
let operator: TestOperator;

/** The federation API as an operator calls it: any mesh certificate reads, and mesh.test's operator is one in every cluster. */
function client(cluster: TestCluster): ApiClient {
  let c = clients.get(cluster.name);
  if (!c) {
    c = apiClient(cluster.rootCert, operator.tls);
    clients.set(cluster.name, c);
  }
  return c;
}

async function catalogOf(cluster: TestCluster): Promise<any> {
  const res = await client(cluster).get(`https://${cluster.apiAddress}/v1/catalog`);
  expect(res.status).toBe(200);
  return res.body;
}

function served(catalog: any, ns: string, name: string, from: string): any {
  return catalog.services.find((s: any) => s.namespace === ns && s.name === name)?.clusters.find((c: any) => c.cluster === from);
}

beforeAll(async () => {
  mesh = await TestMesh.create();
  const ca = await mesh.caInit('ca', 'mesh.test');
  const northCa = await mesh.caInit('north-ca', 'north.test');
  east = await mesh.join('east', { index: 1, ca, region: 'us-east', zones: ['a', 'b'] });
  west = await mesh.join('west', { index: 2, ca, region: 'us-west' });
  north = await mesh.join('north', { index: 3, ca: northCa, region: 'eu-north' });
  operator = await mesh.operator(ca);
  for (const [cluster, service] of [[east, 'hello'], [west, 'hello'], [west, 'ledger'], [north, 'hello']] as const) {
    const address = await mesh.workload(cluster.name);
    await isthmusOk(['register', service, '-n', 'demo', '-c', cluster.config, '--address', address]);
  }
  await Promise.all(['east', 'west', 'north'].map((n) => mesh.startFederation(n)));
}, 120_000);

afterAll(async () => {
  for (const c of clients.values()) await c.close();
  await mesh?.close();
});

describe('a three-cluster mesh', () => {
  test('an export from west appears in east\'s and north\'s catalogs, with healthy counts', async () => {
    await isthmusOk(['export', 'ledger', '-n', 'demo', '--cluster', 'west', ...etcdArgs(mesh.etcd)]);
    for (const cluster of [east, north]) {
      const { value } = await waitFor(async () => served(await catalogOf(cluster), 'demo', 'ledger', 'west')?.zones[0]?.healthy === 1 && served(await catalogOf(cluster), 'demo', 'ledger', 'west'), 10_000, `ledger in ${cluster.name}'s catalog`);
      expect(value).toMatchObject({ cluster: 'west', region: 'us-west', identities: ['spiffe://mesh.test/ns/demo/sa/ledger'], zones: [{ zone: 'a', healthy: 1, total: 1 }] });
    }
    const services = JSON.parse((await isthmusOk(['services', '--output', 'json', ...etcdArgs(mesh.etcd)])).stdout);
    expect(services.services.map((s: any) => `${s.namespace}/${s.name}`)).toContain('demo/ledger');
  });

  test('each federation knows how far behind every other cluster is (sync lag) and streams catalog changes', async () => {
    const status = (await client(east).get(`https://${east.apiAddress}/v1/status`)).body;
    expect(status.clusters.map((c: any) => c.cluster)).toEqual(['east', 'north', 'west']);
    for (const c of status.clusters) {
      expect(c.revision).toBeGreaterThan(0);
      // The age of the last record seen from that cluster, as of this answer (its `now`, taken a moment before).
      const age = Date.parse(status.now) - Date.parse(c.seenAt);
      expect(c.lagMs).toBeGreaterThanOrEqual(age);
      expect(c.lagMs).toBeLessThan(age + 1000);
      expect(c.lagMs).toBeLessThan(10_000); // heartbeats every TTL/3 = 1 s
    }
    // Long-poll: asking with the current version waits for the next change, which an export makes.
    // Twelve callers wait at once, as the sidecars of any cluster do, and the one change answers
    // them all; the federation must not take so many waiting callers for a leak (Node warns once
    // an event has more than ten listeners).
    const current = (await catalogOf(east)).revision;
    const waiting = Array.from({ length: 12 }, () => client(east).get(`https://${east.apiAddress}/v1/catalog?version=${current}&wait=20`));
    await sleep(1500); // the twelve connect (a TLS handshake each) and wait
    await isthmusOk(['export', 'hello', '-n', 'demo', '--cluster', 'west', ...etcdArgs(mesh.etcd)]);
    for (const answer of await Promise.all(waiting)) {
      expect(answer.body.revision).toBeGreaterThan(current);
      expect(served(answer.body, 'demo', 'hello', 'west')).toBeDefined();
    }
    expect(east.federation?.logs()).not.toMatch(/MaxListenersExceeded/);
  });

  test('a reader that names the catalog (or endpoints, or routes) it holds gets only what changed since; one the federation cannot place gets it whole', async () => {
    const url = (held: { revision: number; position: string }) => `https://${east.apiAddress}/v1/catalog?version=${held.revision}&wait=5&since=${held.position}`;
    const whole = await catalogOf(east);
    expect(whole.epoch).toMatch(/^[A-Za-z0-9_-]{8}$/);
    expect(whole.generation).toBeGreaterThan(0);
    const { epoch, generation, ...first } = whole;
    let held = { catalog: first as Catalog, revision: whole.revision as number, position: `${epoch}.${generation}` };
    const answers: any[] = [];
    /** Long-polls with `since` until `done` holds for the catalog the changes make, as a sidecar does. */
    const follow = (what: string, done: (catalog: Catalog) => unknown) => waitFor(async () => {
      const { status, body } = await client(east).get(url(held));
      expect(status).toBe(200);
      expect(body.since, 'an answer of changes').toBe(Number(held.position.split('.')[1]));
      answers.push(body);
      const applied = applyServiceChanges(held.catalog, body);
      if (!('snapshot' in applied)) throw new Error(applied.problem);
      held = { catalog: applied.snapshot, revision: body.revision, position: `${body.epoch}.${body.generation}` };
      return done(held.catalog);
    }, 20_000, what);

    // This cluster's endpoints and its gateways' routes are told the same way.
    const at = async (path: string) => { const { body } = await client(east).get(`https://${east.apiAddress}${path}`); return `${body.epoch}.${body.generation}`; };
    const endpointsAt = await at('/v1/endpoints');
    const routesAt = await at('/v1/gateway/routes');
    await isthmusOk(['register', 'audit', '-n', 'demo', '-c', east.config, '--address', await mesh.workload('east')]);
    await isthmusOk(['export', 'audit', '-n', 'demo', '--cluster', 'east', ...etcdArgs(mesh.etcd)]);
    await follow('audit from east', (catalog) => served(catalog, 'demo', 'audit', 'east'));
    for (const [path, from] of [['/v1/endpoints', endpointsAt], ['/v1/gateway/routes', routesAt]] as const) {
      const { value: changes } = await waitFor(async () => {
        const { body } = await client(east).get(`https://${east.apiAddress}${path}?since=${from}`);
        return body.upserts?.some((s: any) => s.name === 'audit') && body;
      }, 10_000, `audit in the changes to ${path}`);
      expect(changes, path).toMatchObject({ cluster: 'east', since: Number(from.split('.')[1]), removed: [] });
      expect(changes.upserts.find((s: any) => s.name === 'audit').endpoints, path).toHaveLength(1);
    }
    const added = answers.find((a) => a.upserts.some((s: any) => s.name === 'audit'));
    // The one new service, not the catalog again.
    expect(added.upserts.map((s: any) => s.name)).toEqual(['audit']);
    expect(added.removed).toEqual([]);
    // What the changes made is what the federation holds: compared at the same position (health
    // counts may still move; then catch up and compare again).
    const same = await waitFor(async () => {
      const { epoch: e, generation: g, ...now } = await catalogOf(east);
      if (`${e}.${g}` === held.position) return now;
      await follow('catching up', () => true);
      return undefined;
    }, 10_000, 'the whole catalog at the position the changes reached');
    expect(held.catalog).toEqual(same.value);
    await isthmusOk(['unexport', 'audit', '-n', 'demo', '--cluster', 'east', ...etcdArgs(mesh.etcd)]);
    await follow('audit gone', (catalog) => !catalog.services.some((s) => s.name === 'audit'));
    expect(answers.at(-1).removed).toContain('demo/audit');

    // Another process's position (a restarted federation's readers): the catalog whole, with this one's position.
    const foreign = await client(east).get(`https://${east.apiAddress}/v1/catalog?since=elsewhere.${generation}`);
    expect(foreign.status).toBe(200);
    expect(foreign.body.since).toBeUndefined();
    expect(foreign.body.epoch).toBe(epoch);
    expect(foreign.body.services.map((s: any) => `${s.namespace}/${s.name}`)).toEqual(held.catalog.services.map((s) => `${s.namespace}/${s.name}`));
    const malformed = await client(east).get(`https://${east.apiAddress}/v1/catalog?since=yesterday`);
    expect(malformed.status).toBe(400);
    expect(malformed.body.error.code).toBe('ISTHMUS_ERR_API_BAD_REQUEST');
    expect(malformed.body.error.message).toMatch(/since="yesterday" is not a snapshot position/);

    // Once the catalog is quiet, a reader whose position is behind is answered at once, even when
    // the version it sends is the current one: the position, not the version, says whether it
    // holds the latest (a catalog's revision can stay while its content moves).
    const { value: quiet } = await waitFor(async () => {
      const before = await catalogOf(east);
      await sleep(3000);
      const after = await catalogOf(east);
      return after.generation === before.generation && after;
    }, 30_000, 'a quiet catalog');
    const asked = Date.now();
    const behind = await client(east).get(`https://${east.apiAddress}/v1/catalog?version=${quiet.revision}&wait=20&since=${epoch}.${generation}`);
    expect(Date.now() - asked).toBeLessThan(10_000);
    expect(behind.body).toMatchObject({ since: generation, generation: quiet.generation });
  });

  test('every cluster trusts both trust domains without copying a file', async () => {
    const trust = (await client(east).get(`https://${east.apiAddress}/v1/trust`)).body;
    expect(trust.roots).toHaveLength(2);
    const clusters = JSON.parse((await isthmusOk(['clusters', '-o', 'json', ...etcdArgs(mesh.etcd)])).stdout).clusters;
    expect(clusters.map((c: any) => [c.name, c.trustDomain, c.alive])).toEqual([
      ['east', 'mesh.test', true], ['north', 'north.test', true], ['west', 'mesh.test', true],
    ]);
  });

  test('the API\'s reads need a mesh certificate: none, or one the mesh does not trust, is a 401 with a code', async () => {
    const reads = ['/v1/catalog', '/v1/catalog/stream', '/v1/endpoints', '/v1/gateway/routes', '/v1/policies', '/v1/trust', '/v1/status', '/v1/probes'];
    const anonymous = apiClient(east.rootCert);
    // A certificate for an identity of mesh.test under a root nobody in the mesh trusts.
    const rogueRoot = opensslRoot('/CN=rogue', 'URI:spiffe://mesh.test');
    const rogueLeaf = opensslIssue(rogueRoot, '/O=mesh.test', 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=URI:spiffe://mesh.test/ns/demo/sa/admin');
    const rogue = apiClient(east.rootCert, { cert: rogueLeaf.certPem, key: rogueLeaf.keyPem });
    try {
      for (const path of reads) {
        const refused = await anonymous.get(`https://${east.apiAddress}${path}`);
        expect(refused.status, path).toBe(401);
        expect(refused.body.error.code, path).toBe('ISTHMUS_ERR_AUTH_CREDENTIAL_MISSING');
        const untrusted = await rogue.get(`https://${east.apiAddress}${path}`);
        expect(untrusted.status, path).toBe(401);
        expect(untrusted.body.error.code, path).toBe('ISTHMUS_ERR_AUTH_CREDENTIAL_INVALID');
      }
      expect((await anonymous.get(`https://${east.apiAddress}/healthz`)).status).toBe(200);
      // north's own root is in the mesh bundle: an operator of mesh.test reads north's API too.
      expect((await client(north).get(`https://${north.apiAddress}/v1/trust`)).status).toBe(200);
    } finally {
      await anonymous.close();
      await rogue.close();
    }
  });

  test('a catalog stream ends when the certificate that opened it expires', async () => {
    const out = join(mesh.dir, 'operator-brief');
    await isthmusOk(['operator', 'issue', '--name', 'brief', '--ca-dir', join(mesh.dir, 'ca'), '--out', out, '--ttl', '3s']);
    const agent = new Agent({ connect: { ca: readFileSync(east.rootCert, 'utf8'), ...testOperator(out).tls } });
    try {
      const res = await request(`https://${east.apiAddress}/v1/catalog/stream`, { dispatcher: agent });
      expect(res.statusCode).toBe(200);
      // Reading to the end returns only because the server ended the stream.
      expect(await res.body.text()).toMatch(/^id: \d+\nevent: catalog\n/);
    } finally {
      await agent.close();
    }
  });

  test('a workload gets a certificate for the identity its token was issued for, and renews with it', async () => {
    const address = await mesh.workload('east');
    const registered = JSON.parse((await isthmusOk(['register', 'reviews', '-n', 'shop', '-c', east.config, '--address', address, '-o', 'json'])).stdout);
    // Short-lived by default: it only has to last until the sidecar first starts.
    const lifetime = Date.parse(registered.tokenExpiresAt) - Date.now();
    expect(lifetime).toBeGreaterThan(14 * 60_000);
    expect(lifetime).toBeLessThanOrEqual(15 * 60_000);
    const { csrPem, keyPem } = createCsr();
    const signed = await client(east).post(`https://${east.apiAddress}/v1/certificates`, { csr: csrPem }, { authorization: `Bearer ${registered.token}` });
    expect(signed.status).toBe(200);
    expect(signed.body.identity).toBe('spiffe://mesh.test/ns/shop/sa/reviews');
    const dir = mkdtempSync(join(mesh.dir, 'leaf-')); // removed with the mesh
    writeFileSync(join(dir, 'leaf.pem'), signed.body.certificate);
    writeFileSync(join(dir, 'chain.pem'), signed.body.chain.join('\n'));
    const verified = execFileSync('openssl', ['verify', '-x509_strict', '-purpose', 'sslclient', '-CAfile', east.rootCert, '-untrusted', join(dir, 'chain.pem'), join(dir, 'leaf.pem')], { encoding: 'utf8' });
    expect(verified.trim()).toBe(`${join(dir, 'leaf.pem')}: OK`);

    // The token bought that certificate and is spent: presented again, even with a fresh CSR, it is refused.
    const again = await client(east).post(`https://${east.apiAddress}/v1/certificates`, { csr: createCsr().csrPem }, { authorization: `Bearer ${registered.token}` });
    expect(again.status).toBe(401);
    expect(again.body.error.code).toBe('ISTHMUS_ERR_TRUST_TOKEN_INVALID');
    expect(again.body.error.message).toMatch(/^The bootstrap token for spiffe:\/\/mesh.test\/ns\/shop\/sa\/reviews was already used to get a certificate; tokens are single-use/);

    // Renewal: the current certificate is the credential; no token.
    const renewing = apiClient(east.rootCert, { cert: [signed.body.certificate, ...signed.body.chain].join('\n'), key: keyPem });
    const next = createCsr();
    const renewed = await renewing.post(`https://${east.apiAddress}/v1/certificates`, { csr: next.csrPem });
    expect(renewed.status).toBe(200);
    expect(renewed.body.identity).toBe('spiffe://mesh.test/ns/shop/sa/reviews');

    // The same certificate at north (trust domain north.test) is a foreign identity: refused.
    const foreign = apiClient(north.rootCert, { cert: [signed.body.certificate, ...signed.body.chain].join('\n'), key: keyPem });
    const refused = await foreign.post(`https://${north.apiAddress}/v1/certificates`, { csr: next.csrPem });
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe('ISTHMUS_ERR_TRUST_IDENTITY_DENIED');
    // And east's token means nothing to north.
    const wrongToken = await client(north).post(`https://${north.apiAddress}/v1/certificates`, { csr: next.csrPem }, { authorization: `Bearer ${registered.token}` });
    expect(wrongToken.status).toBe(401);
    expect(wrongToken.body.error.code).toBe('ISTHMUS_ERR_TRUST_TOKEN_INVALID');
    await renewing.close();
    await foreign.close();

    // A secret is never in etcd in clear: the token is in no key or value; its spending is recorded under a hash.
    const etcd = rawEtcd(mesh.etcd);
    try {
      const all = await etcd.getAll().prefix('/').strings();
      expect(Object.entries(all).filter(([k, v]) => `${k} ${v}`.includes(registered.token)).map(([k]) => k)).toEqual([]);
      expect(Object.entries(all).filter(([k, v]) => k.includes('/tokens/used/') && v.includes('spiffe://mesh.test/ns/shop/sa/reviews'))).toHaveLength(1);
    } finally {
      etcd.close();
    }
  });

  test('etcd restarted under running federations: they reconnect and the catalog converges with nothing lost', async () => {
    await isthmusOk(['export', 'hello', '-n', 'demo', '--cluster', 'east', ...etcdArgs(mesh.etcd)]);
    await waitFor(async () => served(await catalogOf(west), 'demo', 'hello', 'east'), 2_000, 'hello from east in west');
    await mesh.etcd.stop();
    await new Promise((r) => setTimeout(r, 2_000));
    await mesh.etcd.start();
    // A change made after the restart reaches everyone, and nothing from before was lost.
    await isthmusOk(['export', 'hello', '-n', 'demo', '--cluster', 'north', ...etcdArgs(mesh.etcd)]);
    for (const cluster of [east, west, north]) {
      await waitFor(async () => {
        const catalog = await catalogOf(cluster);
        return served(catalog, 'demo', 'hello', 'north') && served(catalog, 'demo', 'hello', 'east') && served(catalog, 'demo', 'ledger', 'west');
      }, 10_000, `converged catalog in ${cluster.name}`);
    }
  });

  test('a federation killed without warning: its exports vanish from the others within the lease TTL + 2 s', async () => {
    await waitFor(async () => served(await catalogOf(east), 'demo', 'hello', 'north'), 5_000, 'hello from north in east');
    await north.federation!.stop('SIGKILL');
    await waitFor(async () => !served(await catalogOf(east), 'demo', 'hello', 'north'), 3_000 + 2_000, 'north withdrawn from east');
    const clusters = JSON.parse((await isthmusOk(['clusters', '-o', 'json', ...etcdArgs(mesh.etcd)])).stdout).clusters;
    expect(clusters.find((c: any) => c.name === 'north').alive).toBe(false);
  });

  test('a federation stopped with SIGTERM withdraws its exports at once (lease revoked)', async () => {
    expect(await west.federation!.stop('SIGTERM')).toBe(0);
    // The promise (docs/concepts.md, "Graceful stop"): the lease is revoked before the process
    // ends, so west's leased records are gone the moment it has exited, not when the TTL runs out.
    const etcd = rawEtcd(mesh.etcd);
    try {
      const left = [
        ...Object.keys(await etcd.getAll().prefix(keys.exportsOf('west')).strings()),
        ...Object.keys(await etcd.getAll().prefix(keys.gatewaysOf('west')).strings()),
        ...((await etcd.get(keys.alive('west')).string()) === null ? [] : [keys.alive('west')]),
      ];
      expect(left).toEqual([]);
    } finally {
      etcd.close();
    }
    // East's catalog follows on its watch; how fast is not a promise, so the wait has room.
    await waitFor(async () => !served(await catalogOf(east), 'demo', 'ledger', 'west'), 10_000, 'west withdrawn from east');
    // Exports are intent in etcd: they come back with the federation.
    await mesh.startFederation('west');
    await waitFor(async () => served(await catalogOf(east), 'demo', 'ledger', 'west'), 5_000, 'ledger back after restart');
  });

  test('with federation.onStop: keep, a SIGTERM leaves the records for the next federation: east never loses west\'s ledger across the replacement', async () => {
    // As `join --kubeconfig` writes it for a federation pod, whose SIGTERM is most often an update.
    const config = parseYaml(readFileSync(west.config, 'utf8')) as { federation?: Record<string, unknown> };
    config.federation = { ...config.federation, onStop: 'keep', leaseTtl: '15s' };
    expect(await west.federation!.stop('SIGTERM')).toBe(0);
    writeFileSync(west.config, stringifyYaml(config));
    await mesh.startFederation('west');
    await waitFor(async () => served(await catalogOf(east), 'demo', 'ledger', 'west'), 10_000, 'ledger from west in east');

    const etcd = rawEtcd(mesh.etcd);
    const deleted: string[] = [];
    const watcher = await etcd.watch().prefix(keys.exportsOf('west')).create();
    watcher.on('delete', (kv) => deleted.push(kv.key.toString()));
    let missing = 0;
    let polls = 0;
    let polling = true;
    const poll = (async () => {
      while (polling) {
        polls += 1;
        if (!served(await catalogOf(east), 'demo', 'ledger', 'west')) missing += 1;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    })();
    try {
      expect(await west.federation!.stop('SIGTERM')).toBe(0);
      // Still there after the process has gone: nothing was revoked.
      expect(Object.keys(await etcd.getAll().prefix(keys.exportsOf('west')).strings())).not.toEqual([]);
      expect(await etcd.get(keys.alive('west')).string()).not.toBeNull();
      await mesh.startFederation('west');
      // The next federation holds them under its own lease: the old one may now expire.
      await new Promise((resolve) => setTimeout(resolve, 16_000));
    } finally {
      polling = false;
      await poll;
      await watcher.cancel();
      etcd.close();
    }
    expect(polls).toBeGreaterThan(20);
    expect(missing).toBe(0);
    expect(deleted).toEqual([]);
    expect(served(await catalogOf(east), 'demo', 'ledger', 'west')).toBeTruthy();
  });

  test('no private key is ever written to etcd', async () => {
    const etcd = rawEtcd(mesh.etcd);
    try {
      const all = await etcd.getAll().prefix('/').strings();
      expect(Object.keys(all).length).toBeGreaterThan(10);
      const withKeys = Object.entries(all).filter(([, v]) => /PRIVATE KEY/.test(v)).map(([k]) => k);
      expect(withKeys).toEqual([]);
    } finally {
      etcd.close();
    }
  });
});
