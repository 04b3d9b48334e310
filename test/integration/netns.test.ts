import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parse, stringify } from 'yaml';
import { isthmusBin, isthmusOk, startFederation, waitFor, type FederationProcess } from '../helpers/cli.js';
import { testOperator, type TestOperator } from '../helpers/mesh.js';
import { etcdArgs, startEtcd, type TestEtcd } from '../helpers/etcd.js';
import { addRoute, createNsLink, deleteNsLink, freeSubnets, killAndWait, netnsUnavailable, spawnNodeIn, tcpProbeIn, type NsLink, type NsProcess } from '../helpers/netns.js';
import { freePort } from '../helpers/ports.js';
import { viaProxy } from '../helpers/proxy.js';

/*
 * Each cluster's workloads in their own network namespace. The root namespace runs etcd
 * (127.0.0.1), both federation services and west's gateway, on the root ends of two veth pairs:
 *   E (east workloads): <e>.2 ── <e>.1 root: east federation
 *   W (west workloads): <w>.2 ── <w>.1 root: west federation, west gateway
 * E's only way out of its /24 is a host route to <w>.1 (west's gateway): it has no route to W's
 * /24, so east can reach west only through the gateway, whatever the root's ip_forward says.
 * Ports inside the fresh namespaces cannot collide with anything, so they are fixed.
 */
const unavailable = netnsUnavailable();
if (unavailable) console.warn(`netns.test.ts: SKIPPING the network namespace tests: ${unavailable} (they need root and iproute2)`);
const skipped = unavailable ? ` [skipped: ${unavailable}]` : '';
const app = 18080;
const inbound = 15006;
const proxyPort = 15001;

let east: NsLink | undefined;
let west: NsLink | undefined;
let etcd: TestEtcd | undefined;
let dir: string | undefined;
const federations: FederationProcess[] = [];
const children: ChildProcess[] = [];
const nsProcesses: NsProcess[] = [];
let gatewayLogs = '';
let gateway = { host: '', port: 0, admin: '' };
let operator: TestOperator;
let eastAdmin = '';
let proxy = '';
let trustDomain = '';

const ledgerApp = `require('http').createServer((req, res) => {
  const body = JSON.stringify({ service: 'ledger', cluster: 'west', path: req.url, caller: req.headers['x-forwarded-client-cert'] || null });
  res.writeHead(200, { 'content-type': 'application/json' }).end(body);
}).listen(Number(process.argv[1]), '127.0.0.1', () => console.log('listening'));`;

async function teardown(): Promise<void> {
  await Promise.all(nsProcesses.splice(0).map((p) => p.kill()));
  await Promise.all(children.splice(0).map((c) => killAndWait(c)));
  await Promise.all(federations.splice(0).map((f) => f.stop('SIGKILL')));
  await etcd?.destroy().catch(() => undefined);
  etcd = undefined;
  for (const link of [east, west]) if (link) deleteNsLink(link);
  east = west = undefined;
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
}

/** What the east client sidecar (in E) and the ledger sidecar (in W) run with. */
function sidecarConfig(file: string, c: { cluster: string; service: string; federation: string; rootCert: string; token: string; outbound: string; admin: string; inbound?: { listen: string; app: string } }): string {
  writeFileSync(file, stringify({
    cluster: c.cluster, zone: 'a', namespace: 'demo', service: c.service,
    federation: { url: `https://${c.federation}`, rootCert: c.rootCert }, token: c.token,
    stateDir: `${file}.state`, outbound: { listen: c.outbound }, admin: { listen: c.admin }, ...(c.inbound ? { inbound: c.inbound } : {}),
  }));
  return file;
}

beforeAll(async () => {
  if (unavailable) return;
  try {
    const [eastNet, westNet] = freeSubnets();
    east = createNsLink('e', eastNet);
    west = createNsLink('w', westNet);
    // E reaches west's gateway host (and nothing else of W) through the root end of its link.
    addRoute(east, `${west.outerAddress}/32`);

    etcd = await startEtcd();
    dir = mkdtempSync(join(tmpdir(), 'isthmus-netns-'));
    const ca = join(dir, 'ca');
    trustDomain = 'netns.test';
    await isthmusOk(['ca', 'init', '--trust-domain', trustDomain, '--out', ca]);
    // /stats answers a caller from another address only with an operator credential.
    await isthmusOk(['operator', 'issue', '--name', 'tester', '--ca-dir', ca, '--out', join(dir, 'operator')]);
    operator = testOperator(join(dir, 'operator'));
    gateway = { host: west.outerAddress, port: await freePort(west.outerAddress), admin: `${west.outerAddress}:${await freePort(west.outerAddress)}` };
    const joined: Record<string, { config: string; rootCert: string; api: string }> = {};
    for (const [name, link] of [['east', east], ['west', west]] as const) {
      const api = `${link.outerAddress}:${await freePort(link.outerAddress)}`;
      const out = join(dir, name);
      await isthmusOk([
        'join', name, '--region', `us-${name}`, '--zone', 'a', ...etcdArgs(etcd), '--ca', ca, '--out', out,
        '--federation-host', link.outerAddress, '--api-port', api.split(':')[1]!, '--dashboard-port', String(await freePort(link.outerAddress)),
        ...(name === 'west' ? ['--gateway', `${gateway.host}:${gateway.port}`] : []),
      ]);
      joined[name] = { config: join(out, 'cluster.yaml'), rootCert: join(out, 'root-cert.pem'), api };
    }
    const westYaml = parse(readFileSync(joined.west!.config, 'utf8'));
    westYaml.gateways[0].admin = gateway.admin;
    writeFileSync(joined.west!.config, stringify(westYaml));

    const register = async (service: string, cluster: string, address: string) =>
      JSON.parse((await isthmusOk(['register', service, '-n', 'demo', '-c', joined[cluster]!.config, '--address', address, '-o', 'json'])).stdout).token as string;
    const ledgerToken = await register('ledger', 'west', `${west.innerAddress}:${inbound}`);
    const clientToken = await register('client', 'east', `${east.innerAddress}:1`);
    await isthmusOk(['export', 'ledger', '-n', 'demo', '--cluster', 'west', ...etcdArgs(etcd)]);
    for (const name of ['east', 'west']) federations.push(await startFederation(joined[name]!.config, joined[name]!.api, joined[name]!.rootCert));

    const gw = spawn(process.execPath, [isthmusBin, 'gateway', '--config', joined.west!.config, '--log-level', 'debug'], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(gw);
    gw.stdout?.on('data', (c: Buffer) => { gatewayLogs += c.toString(); });
    gw.stderr?.on('data', (c: Buffer) => { gatewayLogs += c.toString(); });
    await waitFor(async () => (await fetch(`http://${gateway.admin}/readyz`, { signal: AbortSignal.timeout(2000) })).status === 200, 20_000, 'west gateway ready');

    // W: the ledger app on W's own loopback, its sidecar in front of it on W's veth address.
    const ledger = spawnNodeIn(west.ns, ['-e', ledgerApp, String(app)]);
    nsProcesses.push(ledger);
    await waitFor(async () => ledger.logs().includes('listening'), 10_000, 'ledger app listening in W');
    nsProcesses.push(spawnNodeIn(west.ns, [isthmusBin, 'sidecar', '--log-level', 'debug', '--config', sidecarConfig(join(dir, 'ledger-sidecar.yaml'), {
      cluster: 'west', service: 'ledger', federation: joined.west!.api, rootCert: joined.west!.rootCert, token: ledgerToken,
      outbound: `127.0.0.1:${proxyPort}`, admin: '127.0.0.1:15020', inbound: { listen: `${west.innerAddress}:${inbound}`, app: `127.0.0.1:${app}` },
    })]));
    // Its admin port is W's own loopback: ready when its inbound listener accepts (root reaches W).
    await waitFor(async () => (await tcpProbeRoot(west!.innerAddress, inbound)) === 'CONNECTED', 20_000, 'ledger sidecar listening in W');
    // E: the client sidecar; its proxy listens on E's veth address so this test (in root) can use it.
    const eastAddress = east.innerAddress;
    proxy = `${eastAddress}:${proxyPort}`;
    nsProcesses.push(spawnNodeIn(east.ns, [isthmusBin, 'sidecar', '--log-level', 'debug', '--config', sidecarConfig(join(dir, 'client-sidecar.yaml'), {
      cluster: 'east', service: 'client', federation: joined.east!.api, rootCert: joined.east!.rootCert, token: clientToken,
      outbound: proxy, admin: `${eastAddress}:15020`,
    })]));
    await waitFor(async () => (await fetch(`http://${eastAddress}:15020/readyz`, { signal: AbortSignal.timeout(2000) })).status === 200, 20_000, 'east client sidecar ready');
    eastAdmin = `${eastAddress}:15020`;
  } catch (err) {
    const logs = [...nsProcesses.map((p) => p.logs()), gatewayLogs, ...federations.map((f) => f.logs())].join('\n---\n').slice(-6000);
    await teardown();
    throw new Error(`${(err as Error).message}\nlogs:\n${logs}`);
  }
}, 120_000);

afterAll(async () => {
  await teardown();
}, 60_000);

/** A TCP connect from the root namespace, bounded. */
function tcpProbeRoot(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(port, host);
    const done = (what: string) => { clearTimeout(timer); s.destroy(); resolve(what); };
    const timer = setTimeout(() => done('TIMEOUT'), 2000);
    s.on('connect', () => done('CONNECTED'));
    s.on('error', (e: NodeJS.ErrnoException) => done(e.code ?? e.message));
  });
}

describe('clusters whose workloads live in separate network namespaces', () => {
  test.skipIf(unavailable)(`east's workloads cannot reach west's workloads, only west's gateway${skipped}`, async () => {
    // The ledger sidecar is up (the root namespace reaches it), yet E has no way to it.
    expect(await tcpProbeRoot(west!.innerAddress, inbound)).toBe('CONNECTED');
    const fromEast = await tcpProbeIn(east!.ns, west!.innerAddress, inbound);
    console.log(`netns: from E, a connect to west's workload ${west!.innerAddress}:${inbound} gave ${fromEast}`);
    expect(['ENETUNREACH', 'EHOSTUNREACH', 'TIMEOUT']).toContain(fromEast);
    expect(await tcpProbeIn(east!.ns, gateway.host, gateway.port)).toBe('CONNECTED');
  });

  test.skipIf(unavailable)(`east's client reaches ledger, served only in west, through west's gateway, with its own identity${skipped}`, async () => {
    const routedBefore = ((await (await fetch(`http://${gateway.admin}/stats`, { headers: operator.headers() })).json()) as { routed: number }).routed;
    const { value: res, ms } = await waitFor(async () => {
      const r = await viaProxy(proxy, 'http://ledger.demo.mesh/accounts?id=7', 3000);
      return r.status === 200 ? r : undefined;
    }, 20_000, 'ledger answering east\'s client through west\'s gateway');
    console.log(`netns: ledger answered east's client after ${ms} ms of polling`);
    expect(res.body).toMatchObject({ service: 'ledger', cluster: 'west', path: '/accounts?id=7' });
    expect(res.body.caller).toMatch(new RegExp(`URI=spiffe://${trustDomain.replace('.', '\\.')}/ns/demo/sa/client$`));
    const routedAfter = ((await (await fetch(`http://${gateway.admin}/stats`, { headers: operator.headers() })).json()) as { routed: number }).routed;
    expect(routedAfter).toBeGreaterThan(routedBefore); // it did go through west's gateway
  });

  test.skipIf(unavailable)(`a sidecar admin port reached from another address: /routes wants an operator, /readyz does not${skipped}`, async () => {
    expect((await fetch(`http://${eastAdmin}/readyz`)).status).toBe(200);
    const anonymous = await fetch(`http://${eastAdmin}/routes`);
    expect(anonymous.status).toBe(401);
    expect(((await anonymous.json()) as { error: { code: string } }).error.code).toBe('ISTHMUS_ERR_AUTH_CREDENTIAL_MISSING');
    expect((await fetch(`http://${eastAdmin}/routes`, { headers: operator.headers() })).status).toBe(200);
  });
});
