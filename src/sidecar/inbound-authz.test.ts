import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { connect as h2Connect } from 'node:http2';
import { connect as netConnect, createServer as createNetServer, type AddressInfo, type Server } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { h2Get } from '../../test/helpers/h2.js';
import { clientId, testPki, trustDomain, type TestPki } from '../../test/helpers/sidecar-fixtures.js';
import { channels, type AuthzDeniedMessage } from '../core/channels.js';
import { silentLogger } from '../core/log.js';
import { policyRecordFromDocument } from '../model/policy-kinds.js';
import type { PolicyRecord } from '../model/policy-records.js';
import { issueCertificate, type CertAndKey } from '../trust/ca.js';
import { InboundAuthorization } from './authz-layer.js';
import { Inbound } from './inbound.js';
import { TcpInbound } from './tcp-inbound.js';
import { tcpAlpn } from './tcp-protocol.js';

/**
 * The authorization step on a real inbound (TLS from our CA, a real app behind it), reached
 * with raw bytes so that nothing between the test and the inbound normalises the path first.
 */
// 127.0.119.1: this area's loopback range (the integration test's meshes take 127.0.111–112)
const host = '127.0.119.1';
const otherId = `spiffe://${trustDomain}/ns/other/sa/intruder`;
let pki: TestPki;
let intruder: CertAndKey;
let app: HttpServer;
let inbound: Inbound;
let address: string;
const authz = new InboundAuthorization('demo', 'echo');
const denied: AuthzDeniedMessage[] = [];
const onDenied = (m: AuthzDeniedMessage) => { if (m.origin === authz) denied.push(m); };

function policy(kind: string, name: string, spec: object): PolicyRecord {
  const metadata = kind === 'MeshNamespace' ? { name } : { name, namespace: 'demo' };
  return policyRecordFromDocument({ apiVersion: 'isthmus.dev/v1alpha1', kind, metadata, spec }, `${name}.yaml`, new Date()) as PolicyRecord;
}
const echoPolicy = policy('AuthorizationPolicy', 'echo-access', {
  service: 'echo',
  allow: [{ name: 'clients', from: { identities: [clientId] }, to: { paths: [{ prefix: '/public/' }, { exact: '/admin' }] } }],
  deny: [{ name: 'no-admin', to: { paths: [{ prefix: '/admin' }] } }],
});

beforeAll(async () => {
  pki = testPki();
  intruder = issueCertificate({ identity: otherId, issuer: pki.west });
  // The app answers with the path it was given and who the sidecar said called.
  app = createHttpServer((req, res) => res.end(JSON.stringify({ path: req.url, xfcc: req.headers['x-forwarded-client-cert'] ?? null })));
  await new Promise<void>((resolve) => app.listen(0, host, resolve));
  const appAddress = `${host}:${(app.address() as AddressInfo).port}`;
  inbound = new Inbound({ certPem: pki.echo.certPem, chainPem: [pki.west.certPem], keyPem: pki.echo.keyPem, trustBundle: [pki.root.certPem], identity: 'spiffe://example.org/ns/demo/sa/echo' },
    appAddress, silentLogger, {}, undefined, 'http', authz);
  await new Promise<void>((resolve) => (inbound.server as unknown as Server).listen(0, host, resolve));
  address = `${host}:${((inbound.server as unknown as Server).address() as AddressInfo).port}`;
  channels.authzDenied.subscribe(onDenied);
});

afterAll(async () => {
  channels.authzDenied.unsubscribe(onDenied);
  await inbound?.close();
  await new Promise((resolve) => app?.close(resolve));
});

interface Answer { status: number; code?: string; message?: string; path?: string; xfcc?: string | null }

function parse(text: string): Answer {
  const split = text.indexOf('\r\n\r\n');
  const head = split === -1 ? text : text.slice(0, split);
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? Number.NaN);
  let body: { path?: string; xfcc?: string | null; error?: { code: string; message: string } } = {};
  try { body = JSON.parse(text.slice(split + 4)); } catch { /* not JSON */ }
  return { status, ...(body.error ? { code: body.error.code, message: body.error.message } : { path: body.path, xfcc: body.xfcc }) };
}

/** `GET <target>` exactly as written, over mTLS as `leaf`. */
function rawTls(target: string, leaf: CertAndKey = pki.client): Promise<Answer> {
  const [h, port] = address.split(':');
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: h, port: Number(port), cert: leaf.certPem + pki.west.certPem, key: leaf.keyPem, ca: pki.root.certPem, checkServerIdentity: () => undefined, ALPNProtocols: ['http/1.1'] });
    let text = '';
    socket.on('secureConnect', () => socket.write(`GET ${target} HTTP/1.1\r\nhost: echo.demo.mesh\r\nconnection: close\r\n\r\n`));
    socket.on('data', (c: Buffer) => { text += c.toString('latin1'); });
    socket.on('end', () => resolve(parse(text)));
    socket.on('error', reject);
  });
}

/** The same in plain text: what a caller without a sidecar sends while its namespace migrates. */
function rawPlain(target: string): Promise<Answer | { closed: string }> {
  const [h, port] = address.split(':');
  return new Promise((resolve) => {
    const socket = netConnect({ host: h as string, port: Number(port) });
    let text = '';
    socket.on('connect', () => socket.write(`GET ${target} HTTP/1.1\r\nhost: echo.demo.mesh\r\nx-forwarded-client-cert: URI=${clientId}\r\nconnection: close\r\n\r\n`));
    socket.on('data', (c: Buffer) => { text += c.toString('latin1'); });
    socket.on('close', () => resolve(text.startsWith('HTTP/') ? parse(text) : { closed: `no HTTP answer (${text.length} bytes)` }));
    socket.on('error', () => undefined);
  });
}

/** A client sidecar's HTTP/2 session to the inbound. */
function h2Session() {
  const [h, port] = address.split(':');
  return h2Connect(`https://${h}:${port}`, { cert: pki.client.certPem + pki.west.certPem, key: pki.client.keyPem, ca: pki.root.certPem, checkServerIdentity: () => undefined });
}

describe('without authorization policies the inbound passes requests as they came', () => {
  test('a path with dot segments reaches the app untouched, as before', async () => {
    authz.set([]);
    expect(await rawTls('/public/../admin')).toMatchObject({ status: 200, path: '/public/../admin' });
  });
});

describe('an AuthorizationPolicy on the inbound', () => {
  beforeAll(() => authz.set([echoPolicy]));

  test('the allowed caller reaches an allowed path; the app gets the caller in XFCC', async () => {
    const answer = await rawTls('/public/a?x=1');
    expect(answer).toMatchObject({ status: 200, path: '/public/a?x=1' });
    expect(answer.xfcc).toContain(`URI=${clientId}`);
  });

  test('another identity: 403 ISTHMUS_ERR_AUTHZ_DENIED, no rule allows it, and a denial is published', async () => {
    denied.length = 0;
    const answer = await rawTls('/public/a', intruder);
    expect(answer.status).toBe(403);
    expect(answer.code).toBe('ISTHMUS_ERR_AUTHZ_DENIED');
    expect(answer.message).toBe(`${otherId} (cluster west) may not GET /public/a on demo/echo: no rule allows it (demo/echo has an allow list: AuthorizationPolicy demo/echo-access)`);
    expect(denied.map((m) => [m.service, m.caller, m.cluster, m.reason, m.rule])).toEqual([['demo/echo', otherId, 'west', 'no_rule_allows', undefined]]);
  });

  test('the deny rule wins over the allow rule that names the same path', async () => {
    const answer = await rawTls('/admin');
    expect(answer).toMatchObject({ status: 403, code: 'ISTHMUS_ERR_AUTHZ_DENIED' });
    expect(answer.message).toContain('denied by AuthorizationPolicy demo/echo-access deny rule 0 (no-admin)');
  });

  // Each trick aims at /admin from an allowed prefix; each is refused (400), denied (403, the path
  // was normalised to /admin first), or reaches the app with the normalised path it was matched as.
  test.each([
    ['/public/../admin', 403],
    ['/public/%2e%2e/admin', 403],
    ['/public/%2E%2E/admin', 403],
    ['/public/.%2e/admin', 403],
    ['/public/./../admin', 403],
    ['//admin', 403],
    ['/public//../admin', 403],
    ['/%61dmin', 403],
    ['/public/%2e%2e%2fadmin', 400],
    ['/public/..%2Fadmin', 400],
    ['/public/..%5Cadmin', 400],
    ['/public/..\\admin', 400],
    ['/admin.', 400],
    ['/admin%2e', 400],
    ['/public/%zz', 400],
    ['/admin#/public/', 403],
    ['/admin?/public/', 403],
  ])('%s → %d', async (target, status) => {
    const answer = await rawTls(target);
    expect(answer.status).toBe(status);
    expect(answer.code).toBe(status === 400 ? 'ISTHMUS_ERR_AUTHZ_PATH_REFUSED' : 'ISTHMUS_ERR_AUTHZ_DENIED');
  });

  test.each([
    ['/public/x/../y', '/public/y'],
    ['/public//y', '/public/y'],
    ['/public/%7Ey', '/public/~y'],
    ['/public/a%20b', '/public/a%20b'],
    ['/public/./y?q=/../admin', '/public/y?q=/../admin'],
  ])('%s reaches the app as %s', async (target, path) => {
    expect(await rawTls(target)).toMatchObject({ status: 200, path });
  });

  test('case matters: /ADMIN is not /admin, and it is not allowed either (an allow list is the safe way for case-blind apps)', async () => {
    expect(await rawTls('/ADMIN')).toMatchObject({ status: 403, code: 'ISTHMUS_ERR_AUTHZ_DENIED' });
    expect((await rawTls('/ADMIN')).message).toContain('no rule allows it');
  });

  test('HTTP/2 gets the same answer', async () => {
    const s = h2Session();
    try {
      expect((await h2Get(s, '/public/%2e%2e/admin')).status).toBe(403);
      expect((await h2Get(s, '/public/..%2Fadmin')).status).toBe(400);
      const ok = await h2Get(s, '/public/x/../y');
      expect({ status: ok.status, path: JSON.parse(ok.body).path }).toEqual({ status: 200, path: '/public/y' });
    } finally {
      s.close();
    }
  });
});

describe('mTLS mode', () => {
  test('strict (the default): a plain-text caller gets no HTTP answer at all', async () => {
    authz.set([]);
    expect(await rawPlain('/public/a')).toMatchObject({ closed: expect.stringContaining('no HTTP answer') });
  });

  test('permissive: a plain-text caller reaches the app without an identity (a forged XFCC is dropped), and mTLS callers still come in with theirs', async () => {
    authz.set([policy('MeshNamespace', 'demo', { mtls: { mode: 'permissive' } })]);
    expect(await rawPlain('/public/a')).toEqual({ status: 200, path: '/public/a', xfcc: null });
    const tls = await rawTls('/public/a');
    expect(tls).toMatchObject({ status: 200, path: '/public/a' });
    expect(tls.xfcc).toContain(`URI=${clientId}`);
  });

  test('permissive with an allow list that names callers: the plain-text caller is denied, the named one allowed', async () => {
    authz.set([policy('MeshNamespace', 'demo', { mtls: { mode: 'permissive' } }), echoPolicy]);
    expect(await rawPlain('/public/a')).toMatchObject({ status: 403, code: 'ISTHMUS_ERR_AUTHZ_DENIED', message: expect.stringContaining('a plain-text caller may not GET /public/a on demo/echo') });
    expect(await rawTls('/public/a')).toMatchObject({ status: 200 });
  });

  test('permissive: a plain-text HTTP/2 caller (prior knowledge, as gRPC clients send it) is accepted without an identity; strict refuses it', async () => {
    const [h, port] = address.split(':');
    const h2c = () => {
      const s = h2Connect(`http://${h}:${port}`);
      s.on('error', () => undefined);
      return s;
    };
    authz.set([policy('MeshNamespace', 'demo', { mtls: { mode: 'permissive' } })]);
    const s = h2c();
    try {
      const answer = await h2Get(s, '/public/h2c');
      expect({ status: answer.status, ...JSON.parse(answer.body) }).toEqual({ status: 200, path: '/public/h2c', xfcc: null });
    } finally {
      s.close();
    }
    authz.set([]);
    const strict = h2c();
    try {
      // The TLS server reads the preface as a broken handshake: no answer, however the client reports it.
      expect((await h2Get(strict, '/public/h2c').catch(() => ({ status: 0, body: '' }))).status).toBe(0);
    } finally {
      strict.destroy();
    }
  });

  test('permissive: HTTP/2 over mTLS still works (the TLS bytes pass through the sniffed stream)', async () => {
    authz.set([policy('MeshNamespace', 'demo', { mtls: { mode: 'permissive' } })]);
    const s = h2Session();
    try {
      const { body } = await h2Get(s, '/public/h2');
      expect(JSON.parse(body)).toMatchObject({ path: '/public/h2', xfcc: expect.stringContaining(`URI=${clientId}`) });
    } finally {
      s.close();
    }
  });

  test('a plain-text connection kept open from permissive mode is refused per request once the namespace is strict again', async () => {
    authz.set([policy('MeshNamespace', 'demo', { mtls: { mode: 'permissive' } })]);
    const [h, port] = address.split(':');
    const socket = netConnect({ host: h as string, port: Number(port) });
    let text = '';
    socket.on('data', (c: Buffer) => { text += c.toString('latin1'); });
    const ask = async () => {
      text = '';
      socket.write('GET /public/a HTTP/1.1\r\nhost: echo.demo.mesh\r\n\r\n');
      for (let i = 0; i < 100 && !/\r\n\r\n[\s\S]*\}$/.test(text); i += 1) await new Promise((r) => setTimeout(r, 20));
      return parse(text);
    };
    try {
      expect((await ask()).status).toBe(200);
      authz.set([]);
      expect(await ask()).toMatchObject({ status: 403, code: 'ISTHMUS_ERR_TRUST_IDENTITY_DENIED' });
    } finally {
      socket.destroy();
    }
  });

  test('back to strict: plain text is refused again', async () => {
    authz.set([]);
    expect(await rawPlain('/public/a')).toMatchObject({ closed: expect.stringContaining('no HTTP answer') });
  });
});

describe('the TCP inbound', () => {
  test('only rules about the caller can allow a connection: the allowed identity is spliced to the app, another is closed before any byte reaches it', async () => {
    const received: string[] = [];
    const tcpApp = createNetServer((socket) => socket.on('data', (c: Buffer) => {
      received.push(c.toString());
      socket.end(`echo ${c.toString()}`);
    }));
    await new Promise<void>((resolve) => tcpApp.listen(0, host, resolve));
    const tcpAuthz = new InboundAuthorization('demo', 'echo');
    tcpAuthz.set([policy('AuthorizationPolicy', 'echo-tcp', { service: 'echo', allow: [{ from: { identities: [clientId] } }, { from: { identities: [otherId] }, to: { paths: [{ prefix: '/' }] } }] })]);
    const tcp = new TcpInbound({ certPem: pki.echo.certPem, chainPem: [pki.west.certPem], keyPem: pki.echo.keyPem, trustBundle: [pki.root.certPem] },
      `${host}:${(tcpApp.address() as AddressInfo).port}`, silentLogger, undefined, tcpAuthz);
    await new Promise<void>((resolve) => tcp.server.listen(0, host, resolve));
    const port = (tcp.server.address() as AddressInfo).port;
    const send = (leaf: CertAndKey, text: string) => new Promise<string>((resolve) => {
      const socket = tlsConnect({ host, port, cert: leaf.certPem + pki.west.certPem, key: leaf.keyPem, ca: pki.root.certPem, checkServerIdentity: () => undefined, ALPNProtocols: [tcpAlpn] });
      let answer = '';
      socket.on('secureConnect', () => socket.write(text));
      socket.on('data', (c: Buffer) => { answer += c.toString(); });
      socket.on('close', () => resolve(answer));
      socket.on('error', () => undefined);
    });
    try {
      expect(await send(pki.client, 'hello')).toBe('echo hello');
      // The intruder's only rule needs a path, which a TCP connection has not: it allows nothing.
      expect(await send(intruder, 'sneak')).toBe('');
      expect(received).toEqual(['hello']);
      expect(tcp.stats.refused).toEqual({ authorization: 1 });
    } finally {
      await tcp.close();
      await new Promise((resolve) => tcpApp.close(resolve));
    }
  });
});
