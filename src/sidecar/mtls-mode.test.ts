import { execFile } from 'node:child_process';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { connect as h2Connect } from 'node:http2';
import { connect as netConnect, type AddressInfo, type Server } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { h2Get } from '../../test/helpers/h2.js';
import { freePort } from '../../test/helpers/ports.js';
import { clientId, echoId, testPki, type TestPki } from '../../test/helpers/sidecar-fixtures.js';
import { channels, type AuthzDeniedMessage } from '../core/channels.js';
import { silentLogger } from '../core/log.js';
import { startRedisInstance } from '../dev/redis-sample.js';
import type { SampleInstance } from '../dev/sample-service.js';
import { policyRecordFromDocument } from '../model/policy-kinds.js';
import type { PolicyRecord } from '../model/policy-records.js';
import { createMetrics, type Metrics } from '../telemetry/metrics.js';
import { InboundAuthorization } from './authz-layer.js';
import { Inbound } from './inbound.js';
import { TcpInbound } from './tcp-inbound.js';
import { tcpAlpn } from './tcp-protocol.js';

/**
 * The namespace's mTLS mode on real inbounds: a TCP inbound in front of a real redis-server,
 * called with the real redis-cli in plain text and with mTLS from our CA; an HTTP inbound in
 * front of a real HTTP app. A refused plain-text caller is counted in isthmus_authz_denied_total
 * (reason plaintext) and published as an authz-denied event, in strict mode too, where nothing
 * of the connection is read before TLS.
 */
// 127.0.114.1: this test's own loopback range.
const host = '127.0.114.1';
let pki: TestPki;
let redis: SampleInstance;
let httpApp: HttpServer;
const tcpAuthz = new InboundAuthorization('demo', 'redis');
const httpAuthz = new InboundAuthorization('demo', 'echo');
let tcp: TcpInbound;
let http: Inbound;
let tcpPort: number;
let httpPort: number;
let metrics: Metrics;
const denied: AuthzDeniedMessage[] = [];
const onDenied = (m: AuthzDeniedMessage) => { if (m.origin === tcpAuthz || m.origin === httpAuthz) denied.push(m); };

function policy(kind: string, name: string, spec: object): PolicyRecord {
  const metadata = kind === 'MeshNamespace' ? { name } : { name, namespace: 'demo' };
  return policyRecordFromDocument({ apiVersion: 'isthmus.dev/v1alpha1', kind, metadata, spec }, `${name}.yaml`, new Date()) as PolicyRecord;
}
const permissive = policy('MeshNamespace', 'demo', { mtls: { mode: 'permissive' } });
const strict = policy('MeshNamespace', 'demo', { mtls: { mode: 'strict' } });
/** An allow list that names callers: a plain-text caller has no identity, so nothing allows it. */
const clientsOnly = (service: string) => policy('AuthorizationPolicy', `${service}-clients`, { service, allow: [{ name: 'clients', from: { identities: [clientId] } }] });
/** A rule without `from` matches every caller, a plain-text one too. */
const anyone = (service: string) => policy('AuthorizationPolicy', `${service}-anyone`, { service, allow: [{ name: 'anyone' }] });

beforeAll(async () => {
  pki = testPki();
  redis = await startRedisInstance({ service: 'redis', cluster: 'west', zone: 'west-a', instance: 'redis-mtls-mode', host, port: await freePort(host) });
  tcp = new TcpInbound({ certPem: pki.echo.certPem, chainPem: [pki.west.certPem], keyPem: pki.echo.keyPem, trustBundle: [pki.root.certPem] }, redis.address, silentLogger, undefined, tcpAuthz);
  await new Promise<void>((resolve) => tcp.server.listen(0, host, resolve));
  tcpPort = (tcp.server.address() as AddressInfo).port;
  httpApp = createHttpServer((req, res) => res.end(JSON.stringify({ path: req.url, xfcc: req.headers['x-forwarded-client-cert'] ?? null })));
  await new Promise<void>((resolve) => httpApp.listen(0, host, resolve));
  http = new Inbound({ certPem: pki.echo.certPem, chainPem: [pki.west.certPem], keyPem: pki.echo.keyPem, trustBundle: [pki.root.certPem], identity: echoId },
    `${host}:${(httpApp.address() as AddressInfo).port}`, silentLogger, {}, undefined, 'http', httpAuthz);
  await new Promise<void>((resolve) => (http.server as unknown as Server).listen(0, host, resolve));
  httpPort = ((http.server as unknown as Server).address() as AddressInfo).port;
  metrics = createMetrics('sidecar', { cluster: 'west' }, { service: 'demo/redis', origins: [tcpAuthz, httpAuthz, tcp, http] });
  channels.authzDenied.subscribe(onDenied);
}, 20_000);

afterAll(async () => {
  channels.authzDenied.unsubscribe(onDenied);
  metrics?.close();
  await tcp?.close();
  await http?.close();
  await new Promise((resolve) => httpApp?.close(resolve));
  await redis?.close();
});

beforeEach(() => {
  denied.length = 0;
});

/** The sum of a metric's samples whose labels include `labels`. */
async function count(name: string, labels: Record<string, string>): Promise<number> {
  const metric = metrics.registry.getSingleMetric(name);
  if (!metric) return 0;
  const { values } = await metric.get();
  return values.filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((sum, v) => sum + v.value, 0);
}
const plaintextDenials = () => count('isthmus_authz_denied_total', { reason: 'plaintext' });

/** The real redis-cli against the TCP inbound, in plain text: its output and exit code. */
function redisCli(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile('redis-cli', ['-h', host, '-p', String(tcpPort), ...args], { timeout: 10_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, out: `${stdout}${stderr}`.trim() });
    });
  });
}

/** A client sidecar's TCP connection: mTLS as demo/client with ALPN isthmus-tcp; one RESP command, the answer. */
function viaMtls(command: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = tlsConnect({ host, port: tcpPort, cert: pki.client.certPem + pki.west.certPem, key: pki.client.keyPem, ca: pki.root.certPem, checkServerIdentity: () => undefined, ALPNProtocols: [tcpAlpn] });
    let answer = '';
    socket.on('secureConnect', () => socket.write(command));
    socket.on('data', (c: Buffer) => {
      answer += c.toString('latin1');
      if (answer.endsWith('\r\n')) socket.end();
    });
    socket.on('close', () => resolve(answer));
    socket.on('error', () => undefined);
  });
}

/** Plain-text bytes to the HTTP inbound: everything it answered before closing. */
function plainHttp(bytes: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = netConnect({ host, port: httpPort });
    let text = '';
    socket.on('connect', () => socket.write(bytes));
    socket.on('data', (c: Buffer) => { text += c.toString('latin1'); });
    socket.on('close', () => resolve(text));
    socket.on('error', () => undefined);
  });
}

describe('a TCP service (inbound appProtocol tcp) in a permissive namespace', () => {
  test('strict (the default): redis-cli in plain text gets nothing from redis; the refusal is counted once and reported as an authz-denied event', async () => {
    tcpAuthz.set([]);
    const before = await plaintextDenials();
    const refusedBefore = tcp.stats.refused.plaintext ?? 0;
    const answer = await redisCli(['SET', 'migrating', 'yes']);
    expect(answer.out).not.toContain('OK');
    expect(await plaintextDenials()).toBe(before + 1);
    expect(tcp.stats.refused.plaintext).toBe(refusedBefore + 1);
    expect(denied.map((m) => [m.service, m.caller, m.reason, m.rule])).toEqual([['demo/redis', undefined, 'plaintext', undefined]]);
    // Nothing reached redis: the key was never set.
    expect(await viaMtlsAllowed('GET migrating')).toBe('$-1\r\n');
  });

  test('permissive: redis-cli in plain text sets and gets through the inbound, counted as an unauthenticated caller; mTLS callers still come in', async () => {
    tcpAuthz.set([permissive]);
    const accepted = () => count('isthmus_inbound_tcp_connections_total', { source_namespace: 'unauthenticated', result: 'accepted' });
    const before = await accepted();
    expect(await redisCli(['SET', 'greeting', 'plain hello'])).toEqual({ code: 0, out: 'OK' });
    expect(await redisCli(['GET', 'greeting'])).toEqual({ code: 0, out: 'plain hello' });
    expect(await accepted()).toBe(before + 2);
    expect(await viaMtls('*2\r\n$3\r\nGET\r\n$8\r\ngreeting\r\n')).toBe('$11\r\nplain hello\r\n');
    expect(denied).toEqual([]);
  });

  test('permissive with an allow list naming callers: the plain-text caller is closed before redis sees a byte (no_rule_allows), demo/client is spliced', async () => {
    tcpAuthz.set([permissive, clientsOnly('redis')]);
    const before = await count('isthmus_authz_denied_total', { reason: 'no_rule_allows' });
    const answer = await redisCli(['SET', 'sneaked', 'yes']);
    expect(answer.out).not.toContain('OK');
    expect(await count('isthmus_authz_denied_total', { reason: 'no_rule_allows' })).toBe(before + 1);
    expect(denied.map((m) => [m.service, m.caller, m.reason])).toEqual([['demo/redis', undefined, 'no_rule_allows']]);
    expect(await viaMtls('*2\r\n$3\r\nGET\r\n$7\r\nsneaked\r\n')).toBe('$-1\r\n');
  });

  test('permissive with a rule that allows any caller: the plain-text caller gets in', async () => {
    tcpAuthz.set([permissive, anyone('redis')]);
    expect(await redisCli(['PING'])).toEqual({ code: 0, out: 'PONG' });
  });

  test('back to strict by a MeshNamespace: plain text is refused again, and the event names that MeshNamespace', async () => {
    tcpAuthz.set([strict]);
    const before = await plaintextDenials();
    expect((await redisCli(['PING'])).out).not.toContain('PONG');
    expect(await plaintextDenials()).toBe(before + 1);
    expect(denied.map((m) => [m.reason, m.rule])).toEqual([['plaintext', 'MeshNamespace demo']]);
    expect(await viaMtls('*1\r\n$4\r\nPING\r\n')).toBe('+PONG\r\n');
  });

  test('a TLS caller without a client certificate is refused but not counted as plain text', async () => {
    tcpAuthz.set([]);
    const before = await plaintextDenials();
    const refused = tcp.stats.refused.handshake ?? 0;
    await new Promise<void>((resolve) => {
      const socket = tlsConnect({ host, port: tcpPort, ca: pki.root.certPem, checkServerIdentity: () => undefined, ALPNProtocols: [tcpAlpn] });
      socket.on('secureConnect', () => socket.write('*1\r\n$4\r\nPING\r\n'));
      socket.on('close', () => resolve());
      socket.on('error', () => undefined);
    });
    await waitUntil(() => (tcp.stats.refused.handshake ?? 0) > refused);
    expect(await plaintextDenials()).toBe(before);
  });
});

/** demo/client over mTLS, whatever the mode: for reading what redis holds. */
async function viaMtlsAllowed(command: string): Promise<string> {
  const [verb, ...args] = command.split(' ');
  const resp = `*${args.length + 1}\r\n${[verb, ...args].map((a) => `$${Buffer.byteLength(a ?? '')}\r\n${a}\r\n`).join('')}`;
  return await viaMtls(resp);
}

async function waitUntil(done: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !done(); i += 1) await new Promise((r) => setTimeout(r, 10));
  expect(done()).toBe(true);
}

describe('plain-text callers refused by a strict HTTP inbound are counted', () => {
  beforeEach(() => httpAuthz.set([]));

  test('an HTTP/1.1 request in plain text: no HTTP answer, one plaintext denial, one event', async () => {
    const before = await plaintextDenials();
    expect(await plainHttp('GET /a HTTP/1.1\r\nhost: echo.demo.mesh\r\nconnection: close\r\n\r\n')).not.toMatch(/^HTTP\//);
    expect(await plaintextDenials()).toBe(before + 1);
    expect(denied.map((m) => [m.service, m.caller, m.reason])).toEqual([['demo/echo', undefined, 'plaintext']]);
  });

  test('the HTTP/2 preface in plain text (h2c) and a CONNECT in plain text: one each', async () => {
    const before = await plaintextDenials();
    await plainHttp('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
    await plainHttp('CONNECT echo.demo.mesh:80 HTTP/1.1\r\nhost: echo.demo.mesh\r\n\r\n');
    expect(await plaintextDenials()).toBe(before + 2);
  });

  test('an mTLS caller and a TLS caller without a certificate are not counted as plain text', async () => {
    const before = await plaintextDenials();
    const s = h2Connect(`https://${host}:${httpPort}`, { cert: pki.client.certPem + pki.west.certPem, key: pki.client.keyPem, ca: pki.root.certPem, checkServerIdentity: () => undefined });
    try {
      expect((await h2Get(s, '/ok')).status).toBe(200);
    } finally {
      s.close();
    }
    await new Promise<void>((resolve) => {
      const socket = tlsConnect({ host, port: httpPort, ca: pki.root.certPem, checkServerIdentity: () => undefined, ALPNProtocols: ['http/1.1'] });
      socket.on('secureConnect', () => socket.write('GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n'));
      socket.on('close', () => resolve());
      socket.on('error', () => undefined);
    });
    expect(await plaintextDenials()).toBe(before);
  });

  test('a plain-text connection kept open from permissive mode: each request refused once strict is counted', async () => {
    httpAuthz.set([permissive]);
    const socket = netConnect({ host, port: httpPort });
    let text = '';
    socket.on('data', (c: Buffer) => { text += c.toString('latin1'); });
    const ask = async () => {
      text = '';
      socket.write('GET /a HTTP/1.1\r\nhost: echo.demo.mesh\r\n\r\n');
      for (let i = 0; i < 200 && !/\r\n\r\n[\s\S]*\}$/.test(text); i += 1) await new Promise((r) => setTimeout(r, 10));
      return Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1]);
    };
    try {
      expect(await ask()).toBe(200);
      httpAuthz.set([]);
      const before = await plaintextDenials();
      expect(await ask()).toBe(403);
      expect(await ask()).toBe(403);
      expect(await plaintextDenials()).toBe(before + 2);
    } finally {
      socket.destroy();
    }
  });
});
