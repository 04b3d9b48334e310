import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect, createServer as createTlsServer, type Server } from 'node:tls';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parse, stringify } from 'yaml';
import { readClusterCa } from '../../src/trust/ca-files.js';
import { issueCertificate } from '../../src/trust/ca.js';
import { clusterRoleId } from '../../src/trust/spiffe.js';
import { apiClient, isthmusBin, isthmusOk, waitFor } from '../helpers/cli.js';
import { TestMesh, freePort, type TestCluster } from '../helpers/mesh.js';
import { etcdArgs } from '../helpers/etcd.js';

let mesh: TestMesh;
let west: TestCluster;
let workload: Server;
let gateway: ChildProcess;
let gatewayLogs = '';
let gatewayAddress: { host: string; port: number };
let adminUrl: string;
const execFileAsync = promisify(execFile);
const ledgerId = 'spiffe://mesh.test/ns/demo/sa/ledger';

beforeAll(async () => {
  mesh = await TestMesh.create();
  const ca = await mesh.caInit('ca', 'mesh.test');
  gatewayAddress = { host: '127.0.2.1', port: await freePort('127.0.2.1') };
  const adminPort = await freePort('127.0.2.1');
  west = await mesh.join('west', { index: 2, ca, region: 'us-west' });
  // The operator's config: one gateway entry (join --gateway writes the same), a short ClientHello timeout.
  const config = parse(readFileSync(west.config, 'utf8'));
  config.gateways = [{ id: 'gw-1', address: `${gatewayAddress.host}:${gatewayAddress.port}`, admin: `127.0.2.1:${adminPort}`, clientHelloTimeout: '1s' }];
  writeFileSync(west.config, stringify(config));
  adminUrl = `http://127.0.2.1:${adminPort}`;

  // A TLS workload with its own certificate from west's CA: the gateway must never see its key.
  const leaf = issueCertificate({ identity: ledgerId, issuer: readClusterCa(west.dir).ca });
  workload = createTlsServer({ cert: `${leaf.certPem}${readClusterCa(west.dir).ca.certPem}`, key: leaf.keyPem }, (socket) => {
    socket.end('ledger says hello\n');
  });
  await new Promise<void>((resolve) => workload.listen(0, '127.0.2.1', resolve));
  const port = (workload.address() as { port: number }).port;
  await isthmusOk(['register', 'ledger', '-n', 'demo', '-c', west.config, '--address', `127.0.2.1:${port}`]);
  await isthmusOk(['export', 'ledger', '-n', 'demo', '--cluster', 'west', ...etcdArgs(mesh.etcd)]);
  await mesh.startFederation('west');

  gateway = spawn(process.execPath, [isthmusBin, 'gateway', '--config', west.config, '--log-level', 'debug'], { stdio: ['ignore', 'pipe', 'pipe'] });
  gateway.stdout?.on('data', (c: Buffer) => { gatewayLogs += c.toString(); });
  gateway.stderr?.on('data', (c: Buffer) => { gatewayLogs += c.toString(); });
  await waitFor(async () => (await fetch(`${adminUrl}/readyz`)).status === 200, 20_000, 'gateway ready');
}, 120_000);

afterAll(async () => {
  gateway?.kill('SIGKILL');
  workload?.close();
  await mesh?.close();
});

/** The whole TLS session through the gateway; returns what the destination sent and its certificate. */
function tlsThroughGateway(servername: string | undefined): Promise<{ data: string; peerIdentity: string | undefined }> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({
      host: gatewayAddress.host, port: gatewayAddress.port, ca: readFileSync(west.rootCert, 'utf8'),
      ...(servername ? { servername } : {}),
      checkServerIdentity: () => undefined, // identity is checked below, by SPIFFE ID
    });
    let data = '';
    socket.on('data', (c: Buffer) => { data += c.toString(); });
    socket.on('end', () => resolve({ data, peerIdentity: socket.getPeerCertificate().subjectaltname?.replace(/^URI:/, '') }));
    socket.on('error', reject);
  });
}

function rawExchange(bytes: Buffer | undefined, waitMs = 3000): Promise<{ closed: boolean; reply: Buffer }> {
  return new Promise((resolve) => {
    const socket = netConnect(gatewayAddress.port, gatewayAddress.host);
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => { socket.destroy(); resolve({ closed: false, reply: Buffer.concat(chunks) }); }, waitMs);
    socket.on('connect', () => { if (bytes) socket.write(bytes); });
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => undefined);
    socket.on('close', () => { clearTimeout(timer); resolve({ closed: true, reply: Buffer.concat(chunks) }); });
  });
}

describe('the east-west gateway', () => {
  test('routes TLS by SNI to the exported service, end to end: the client sees the workload\'s own certificate', async () => {
    const result = await tlsThroughGateway('ledger.demo.svc.west.isthmus');
    expect(result.data).toBe('ledger says hello\n');
    expect(result.peerIdentity).toBe(ledgerId);

    // openssl agrees: the certificate that answers through the gateway is the workload's.
    // Asynchronously: the workload's TLS server lives in this process and must keep answering.
    // The workload closes without close_notify, which OpenSSL 3 reports as an error after the
    // handshake; what matters here is the verified certificate it printed.
    const out = await execFileAsync('openssl', ['s_client', '-connect', `${gatewayAddress.host}:${gatewayAddress.port}`, '-servername', 'ledger.demo.svc.west.isthmus', '-CAfile', west.rootCert, '-verify_return_error'], { timeout: 10_000 })
      .then((r) => r.stdout, (err: { stdout?: string }) => err.stdout ?? '');
    expect(out).toMatch(/Verify return code: 0 \(ok\)/);
    const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(out)?.[0] ?? '';
    const san = execFileSync('openssl', ['x509', '-noout', '-ext', 'subjectAltName'], { input: pem, encoding: 'utf8' });
    expect(san).toContain(`URI:${ledgerId}`);
  });

  test('publishes itself under the cluster lease, so other clusters see the gateway address', async () => {
    const clusters = JSON.parse((await isthmusOk(['clusters', '-o', 'json', ...etcdArgs(mesh.etcd)])).stdout).clusters;
    expect(clusters[0].gateways).toEqual([{ id: 'gw-1', address: gatewayAddress.host, port: gatewayAddress.port, zone: 'a' }]);
  });

  test('replicas of one gateway id: the first to drain leaves the record to the other, the last takes it away; only the gateway role may', async () => {
    const ca = readClusterCa(west.dir).ca;
    const leaf = issueCertificate({ identity: clusterRoleId('mesh.test', 'west', 'gateway'), issuer: ca });
    const asGateway = apiClient(west.rootCert, { cert: `${leaf.certPem}${ca.certPem}`, key: leaf.keyPem });
    const published = async () => {
      const clusters = JSON.parse((await isthmusOk(['clusters', '-o', 'json', ...etcdArgs(mesh.etcd)])).stdout).clusters;
      return (clusters[0].gateways as { id: string }[]).some((g) => g.id === 'gw-r');
    };
    const base = `https://${west.apiAddress}/v1/gateways`;
    // pod-b reports as a live replica does, within the TTL (3 s here) until it drains itself.
    let reporting: Promise<unknown> = Promise.resolve();
    const report = () => { reporting = asGateway.post(base, { id: 'gw-r', address: '127.0.2.1:19443', instance: 'pod-b' }); };
    const reports = setInterval(report, 500);
    try {
      expect((await asGateway.post(base, { id: 'gw-r', address: '127.0.2.1:19443', instance: 'pod-a' })).status).toBe(200);
      report();
      expect((await reporting as { status: number }).status).toBe(200);
      await waitFor(published, 10_000, 'the replicas\' record in etcd');

      const operator = apiClient(west.rootCert, (await mesh.operator(west.dir)).tls);
      expect((await operator.delete(`${base}/gw-r?instance=pod-b`)).status).toBe(403);
      await operator.close();
      expect((await asGateway.delete(`${base}/gw-r?instance=${encodeURIComponent('no spaces')}`)).status).toBe(400);

      expect(await asGateway.delete(`${base}/gw-r?instance=pod-a`)).toEqual({ status: 200, body: { cluster: 'west', id: 'gw-r', withdrawn: false, replicasLeft: 1 } });
      await new Promise((r) => setTimeout(r, 1500));
      expect(await published()).toBe(true);

      clearInterval(reports);
      await reporting;
      expect(await asGateway.delete(`${base}/gw-r?instance=pod-b`)).toEqual({ status: 200, body: { cluster: 'west', id: 'gw-r', withdrawn: true, replicasLeft: 0 } });
      await waitFor(async () => !(await published()), 10_000, 'the record withdrawn from etcd');
      // Withdrawing what is gone is no error: a gateway whose report was lost can still drain.
      expect((await asGateway.delete(`${base}/gw-r?instance=pod-b`)).body).toMatchObject({ withdrawn: false, replicasLeft: 0 });
    } finally {
      clearInterval(reports);
      await reporting.catch(() => undefined);
      await asGateway.close();
    }
  });

  test.each([
    ['no SNI', undefined, 'no-sni'],
    ['an SNI of another cluster', 'ledger.demo.svc.east.isthmus', 'sni-other-cluster'],
    ['an SNI of a service not exported', 'hello.demo.svc.west.isthmus', 'service-not-exported'],
    ['an SNI outside the mesh', 'example.com', 'sni-not-mesh'],
  ])('refuses %s with a TLS alert, and counts it', async (_what, servername, reason) => {
    const before = ((await (await fetch(`${adminUrl}/stats`)).json()) as any).refused[reason] ?? 0;
    await expect(tlsThroughGateway(servername)).rejects.toThrow(/unrecognized name|alert number 112/i);
    const after = ((await (await fetch(`${adminUrl}/stats`)).json()) as any).refused[reason];
    expect(after).toBe(before + 1);
  });

  test('the built gateway copies routed bytes on the native relay, and says so in /stats and its start line', async () => {
    const stats = (await (await fetch(`${adminUrl}/stats`)).json()) as { relay?: string };
    expect(stats.relay).toBe('native');
    expect(gatewayLogs).toMatch(/"relay":"native".*gateway listening|gateway listening.*"relay":"native"/);
  });

  test('refuses bytes that are not a ClientHello, and a ClientHello that never arrives; stays up', async () => {
    const refused = async () => ((await (await fetch(`${adminUrl}/stats`)).json()) as { refused: Record<string, number> }).refused;
    const before = await refused();
    const http = await rawExchange(Buffer.from('GET / HTTP/1.1\r\nHost: ledger\r\n\r\n'));
    expect(http.closed).toBe(true);
    const ssh = await rawExchange(Buffer.from('SSH-2.0-OpenSSH_9.2\r\n'));
    expect(ssh.closed).toBe(true);
    const silent = await rawExchange(undefined, 4000);
    expect(silent.closed).toBe(true); // clientHelloTimeout is 1 s
    // Counted once each, by reason: the counters are cumulative, so compare with before.
    const after = await refused();
    expect((after['not-client-hello'] ?? 0) - (before['not-client-hello'] ?? 0)).toBe(2);
    expect((after['client-hello-timeout'] ?? 0) - (before['client-hello-timeout'] ?? 0)).toBe(1);
    expect((await tlsThroughGateway('ledger.demo.svc.west.isthmus')).data).toBe('ledger says hello\n');
    expect(gateway.exitCode).toBeNull();
  });

  test('/debug/connections (callers, SNIs, endpoints) needs an operator credential of the gateway\'s trust domain', async () => {
    await tlsThroughGateway('ledger.demo.svc.west.isthmus');
    const anonymous = await fetch(`${adminUrl}/debug/connections`);
    expect(anonymous.status).toBe(401);
    expect(((await anonymous.json()) as { error: { code: string } }).error.code).toBe('ISTHMUS_ERR_AUTH_CREDENTIAL_MISSING');
    const forged = await fetch(`${adminUrl}/debug/connections`, { headers: { authorization: 'Bearer isthop_e30.AA' } });
    expect(((await forged.json()) as { error: { code: string } }).error.code).toBe('ISTHMUS_ERR_AUTH_CREDENTIAL_INVALID');
    const foreign = await mesh.operator(await mesh.caInit('other-ca', 'other.test'));
    const elsewhere = await fetch(`${adminUrl}/debug/connections`, { headers: foreign.headers() });
    expect(elsewhere.status).toBe(401); // another trust domain's root is not in this gateway's trust
    const operator = await mesh.operator(west.dir);
    const res = await fetch(`${adminUrl}/debug/connections`, { headers: operator.headers() });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { connections: { sni: string }[] }).connections.map((c) => c.sni)).toContain('ledger.demo.svc.west.isthmus');
  });

  test('a gateway that dies is withdrawn from the mesh', async () => {
    gateway.kill('SIGKILL');
    await waitFor(async () => {
      const clusters = JSON.parse((await isthmusOk(['clusters', '-o', 'json', ...etcdArgs(mesh.etcd)])).stdout).clusters;
      return clusters[0].gateways.length === 0;
    }, 10_000, 'gateway withdrawn');
    const anonymous = apiClient(west.rootCert);
    const unauthenticated = await anonymous.post(`https://${west.apiAddress}/v1/gateways`, { id: 'rogue', address: '127.0.9.9:15443' });
    await anonymous.close();
    expect(unauthenticated.status).toBe(401);
    // A mesh certificate that is not west's gateway role (an operator's) may read, not register a gateway.
    const api = apiClient(west.rootCert, (await mesh.operator(west.dir)).tls);
    const refused = await api.post(`https://${west.apiAddress}/v1/gateways`, { id: 'rogue', address: '127.0.9.9:15443' });
    await api.close();
    expect(refused.status).toBe(403); // only a certificate of west's gateway role may register one
  });
});
