import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { silentLogger } from '../../src/core/log.js';
import { loadListenerTls, type ListenerTls } from '../../src/core/tls-files.js';
import { startAdmin } from '../../src/gateway/admin.js';
import { Gateway } from '../../src/gateway/gateway.js';
import { startSidecarAdmin } from '../../src/sidecar/admin.js';
import { startTelemetryServer, type TelemetryServer } from '../../src/telemetry/http.js';
import { issueOperatorCertificate, type CertAndKey } from '../../src/trust/ca.js';
import { mintOperatorToken } from '../../src/trust/operator.js';
import { isthmus, isthmusBin, waitFor } from '../helpers/cli.js';
import { etcdArgs, startEtcd, type TestEtcd } from '../helpers/etcd.js';
import { opensslIssue, opensslRoot } from '../helpers/openssl-certs.js';
import { echoId, routingTo, testPki, trustDomain, type TestPki } from '../helpers/sidecar-fixtures.js';

/**
 * The dashboard and the admin ports serve HTTPS when given a certificate and key, checked with
 * curl --cacert and openssl s_client as an operator would; the operator credential rules are the
 * same as over plain HTTP; a bad file stops the listener before it starts, naming the file.
 */
// 127.0.115.1: this test's own loopback range.
const host = '127.0.115.1';
let dir: string;
let ca: CertAndKey;
let files: { ca: string; cert: string; key: string; otherKey: string; notPem: string };
let tls: ListenerTls;
let pki: TestPki;
let operatorToken: string;
let etcd: TestEtcd | undefined;
const children: ChildProcess[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'isthmus-https-listeners-'));
  // A server certificate from the operator's own CA tooling (openssl here), naming the address dialled.
  ca = opensslRoot('/CN=Isthmus listener test CA', undefined);
  const server = opensslIssue(ca, '/CN=dashboard', `subjectAltName=IP:${host}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE`);
  const other = opensslIssue(ca, '/CN=other', `subjectAltName=IP:${host}\nextendedKeyUsage=serverAuth`);
  files = { ca: join(dir, 'ca.pem'), cert: join(dir, 'dash.pem'), key: join(dir, 'dash-key.pem'), otherKey: join(dir, 'other-key.pem'), notPem: join(dir, 'not-pem.pem') };
  writeFileSync(files.ca, ca.certPem);
  writeFileSync(files.cert, server.certPem + ca.certPem);
  writeFileSync(files.key, server.keyPem, { mode: 0o600 });
  writeFileSync(files.otherKey, other.keyPem, { mode: 0o600 });
  writeFileSync(files.notPem, 'this is not a certificate\n');
  tls = loadListenerTls({ cert: files.cert, key: files.key }, 'the test');
  pki = testPki();
  const operator = issueOperatorCertificate({ name: 'alice', issuer: pki.root, ttlSeconds: 3600 });
  operatorToken = mintOperatorToken({ certPem: operator.certPem, chainPem: operator.chainPem, keyPem: operator.keyPem, ttlSeconds: 300 }).token;
}, 30_000);

afterAll(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await etcd?.destroy();
  rmSync(dir, { recursive: true, force: true });
});

/** curl --cacert: the status and body, or curl's own error when TLS failed. */
function curl(url: string, args: string[] = []): Promise<{ status: number; body: string; error: string }> {
  return new Promise((resolve) => {
    execFile('curl', ['-sS', '--cacert', files.ca, '-w', '\n%{http_code}', ...args, url], { timeout: 10_000 }, (_err, stdout, stderr) => {
      const split = stdout.lastIndexOf('\n');
      resolve({ status: Number(stdout.slice(split + 1)), body: stdout.slice(0, split), error: stderr.trim() });
    });
  });
}

/**
 * openssl s_client against host:port with our CA, checking the certificate names the IP: its
 * output. Asynchronous: the server under test runs in this process.
 */
function sClient(port: number): Promise<string> {
  return new Promise((resolve) => {
    const child = execFile('openssl', ['s_client', '-connect', `${host}:${port}`, '-CAfile', files.ca, '-verify_ip', host, '-verify_return_error', '-brief'], { timeout: 10_000 }, (_err, stdout, stderr) => resolve(`${stdout}${stderr}`));
    child.stdin?.end('Q\n');
  });
}

const bearer = () => ['-H', `authorization: Bearer ${operatorToken}`];

describe('the sidecar admin port with admin.tls', () => {
  let admin: Server;
  let port: number;
  beforeAll(async () => {
    admin = await startSidecarAdmin({
      cluster: 'west', zone: 'west-a', identity: () => echoId, routing: routingTo([]), services: () => [],
      snapshot: () => ({ catalogRevision: 1, source: 'test' }),
      operators: { rootsPem: () => [pki.root.certPem], trustDomain: () => trustDomain },
    }, host, 0, tls);
    port = (admin.address() as AddressInfo).port;
  });
  afterAll(async () => {
    admin.closeAllConnections();
    await new Promise((resolve) => admin.close(resolve));
  });

  test('serves HTTPS that curl --cacert verifies; plain HTTP gets no answer', async () => {
    expect(await curl(`https://${host}:${port}/healthz`)).toMatchObject({ status: 200, body: expect.stringContaining('"ok"') });
    expect((await curl(`http://${host}:${port}/healthz`)).status).not.toBe(200);
  });

  test('POST /trace still needs an operator, on loopback too: 401 without, past the check with one', async () => {
    const without = await curl(`https://${host}:${port}/trace`, ['-X', 'POST', '-d', '{}']);
    expect(without.status).toBe(401);
    expect(without.body).toContain('ISTHMUS_ERR_AUTH_CREDENTIAL_MISSING');
    const withToken = await curl(`https://${host}:${port}/trace`, ['-X', 'POST', '-H', 'content-type: application/json', '-d', '{"service":"echo.demo"}', ...bearer()]);
    expect(withToken.body).toContain('ISTHMUS_ERR_TRACE_NO_SIDECAR');
  });
});

describe('the gateway admin port with adminTls', () => {
  let gateway: Gateway;
  let admin: Server;
  let port: number;
  beforeAll(async () => {
    gateway = new Gateway({
      cluster: 'west', trustDomain, id: 'gw-1', zone: 'west-a', listen: { host, port: 0 }, admin: { host, port: 0 },
      federationUrl: 'https://127.0.0.1:1', caDir: '.', clientHelloTimeoutMs: 5_000, connectTimeoutMs: 2_000, idleTimeoutMs: 60_000, drainTimeoutMs: 5_000,
    }, silentLogger);
    admin = await startAdmin(gateway, host, 0, { rootsPem: [pki.root.certPem], trustDomain }, undefined, tls);
    port = (admin.address() as AddressInfo).port;
  });
  afterAll(async () => {
    admin.closeAllConnections();
    await new Promise((resolve) => admin.close(resolve));
    await gateway.close();
  });

  test('openssl s_client verifies its certificate against the CA', async () => {
    expect(await sClient(port)).toMatch(/Verification: OK/);
  });

  test('/debug/connections still needs an operator: 401 without, 200 with', async () => {
    expect((await curl(`https://${host}:${port}/debug/connections`)).status).toBe(401);
    expect(await curl(`https://${host}:${port}/debug/connections`, bearer())).toMatchObject({ status: 200, body: expect.stringContaining('"connections"') });
  });
});

describe('the federation dashboard port with federation.dashboardTls', () => {
  let telemetry: TelemetryServer;
  beforeAll(async () => {
    telemetry = await startTelemetryServer({ host, port: 0, metrics: { exposition: async () => ({ contentType: 'text/plain', body: 'x 1\n' }) }, healthz: () => ({ status: 'ok' }), tls });
  });
  afterAll(() => telemetry.close());

  test('serves /metrics and /healthz over HTTPS', async () => {
    const port = Number(telemetry.address.split(':')[1]);
    expect(await curl(`https://${host}:${port}/metrics`)).toMatchObject({ status: 200, body: 'x 1\n' });
  });
});

describe('isthmus dash --tls-cert --tls-key', () => {
  test('prints an https:// address; curl --cacert and openssl s_client verify it; /api/sidecars still needs an operator', async () => {
    etcd = await startEtcd({ host });
    const child = spawn(process.execPath, [isthmusBin, 'dash', ...etcdArgs(etcd), '--listen', `${host}:0`, '--reads', 'public', '--tls-cert', files.cert, '--tls-key', files.key, '--output', 'json'], {
      env: { ...process.env, ISTHMUS_ETCD: '', ISTHMUS_OPERATOR_DIR: '', XDG_CONFIG_HOME: '/nonexistent/isthmus-test-config', NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    const { value: url } = await waitFor(async () => {
      if (child.exitCode !== null) throw new Error(`isthmus dash exited ${child.exitCode}: ${stdout}${stderr}`);
      return stdout.includes('\n') ? (JSON.parse(stdout.split('\n')[0]!) as { url: string }).url : undefined;
    }, 20_000, 'isthmus dash to print its URL');
    expect(url).toMatch(new RegExp(`^https://${host.replaceAll('.', '\\.')}:\\d+/$`));
    const port = Number(new URL(url).port);
    expect(await sClient(port)).toMatch(/Verification: OK/);
    expect(await curl(`${url}healthz`)).toMatchObject({ status: 200, body: expect.stringContaining('"etcd":"reachable"') });
    expect(await curl(`${url}api/overview`)).toMatchObject({ status: 200 });
    expect((await curl(`${url}api/sidecars`)).status).toBe(401);
    // Without --cacert, curl does not trust the certificate: it is the CA's, not a public one.
    const untrusted = await new Promise<string>((resolve) => execFile('curl', ['-sS', `${url}healthz`], (_e, _o, err) => resolve(err)));
    expect(untrusted).toMatch(/certificate/i);
    child.kill('SIGTERM');
    await new Promise((resolve) => child.once('exit', resolve));
  }, 60_000);

  test.each([
    ['a missing certificate', () => ['--tls-cert', join(dir, 'missing.pem'), '--tls-key', files.key], () => join(dir, 'missing.pem')],
    ['a file that is not PEM', () => ['--tls-cert', files.notPem, '--tls-key', files.key], () => files.notPem],
    ['a key of another certificate', () => ['--tls-cert', files.cert, '--tls-key', files.otherKey], () => files.otherKey],
  ])('%s: a clear error naming the file, before anything listens', async (_name, args, named) => {
    const result = await isthmus(['dash', '--etcd', 'http://127.0.0.1:9', '--listen', `${host}:0`, '--reads', 'public', ...args()], { ISTHMUS_ETCD: '' });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(named());
    expect(result.stderr).toMatch(/--tls-cert and --tls-key/);
  });

  test('--tls-cert without --tls-key is refused', async () => {
    const result = await isthmus(['dash', '--etcd', 'http://127.0.0.1:9', '--listen', `${host}:0`, '--tls-cert', files.cert], { ISTHMUS_ETCD: '' });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/--tls-cert was given without --tls-key/);
  });
});
