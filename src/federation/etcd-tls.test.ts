import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { isthmus } from '../../test/helpers/cli.js';
import { etcdArgs, etcdEnv, rawEtcd, startEtcd, type TestEtcd } from '../../test/helpers/etcd.js';
import { initEtcdCa, issueEtcdClient, type EtcdClientFiles } from '../trust/etcd-ca.js';
import { grpcCredentials, loadEtcdTls, type EtcdTlsFiles } from './etcd-tls.js';
import { FederationStore } from './store.js';

// etcd over TLS with client certificates (docs/security.md, "etcd"): what a client without a
// certificate, or with one of another CA, gets from a locked etcd, and what every reader says.
const run = promisify(execFile);
let etcd: TestEtcd;
let dir: string;
let intruder: EtcdClientFiles; // a client certificate of another etcd CA
let otherCa: string;

beforeAll(async () => {
  etcd = await startEtcd({ host: '127.0.131.1' });
  dir = mkdtempSync(join(tmpdir(), 'isthmus-etcd-tls-'));
  otherCa = join(dir, 'other-ca');
  initEtcdCa(otherCa, { hosts: ['127.0.131.1'] });
  intruder = issueEtcdClient(otherCa, 'intruder');
});
afterAll(async () => {
  await etcd?.destroy();
  rmSync(dir, { recursive: true, force: true });
});

async function etcdctl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run('etcdctl', ['--endpoints', etcd.url, '--dial-timeout', '2s', '--command-timeout', '3s', ...args], { env: { ...process.env, ETCDCTL_API: '3' } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

async function bareCall(files: EtcdTlsFiles): Promise<unknown> {
  const tls = loadEtcdTls([etcd.url], files)!;
  const client = new Etcd3({ hosts: etcd.url, credentials: grpcCredentials(tls) });
  try {
    return await client.get('/isthmus/v1/clusters/east').string().then(() => 'answered', (err: unknown) => err);
  } finally {
    client.close();
  }
}

describe('an etcd with --client-cert-auth', () => {
  test('answers a client with a certificate of its CA (etcd3 and etcdctl)', async () => {
    const raw = rawEtcd(etcd);
    try {
      await raw.put('/isthmus-test/tls').value('yes');
      expect(await raw.get('/isthmus-test/tls').string()).toBe('yes');
    } finally {
      raw.close();
    }
    const got = await etcdctl(['--cacert', etcd.tls.ca, '--cert', etcd.tls.cert, '--key', etcd.tls.key, 'get', '/isthmus-test/tls', '--print-value-only']);
    expect(got, got.stderr).toMatchObject({ code: 0, stdout: 'yes\n' });
  });

  test('refuses a client without a certificate: the etcd3 client and etcdctl get nothing', async () => {
    const err = await bareCall({ ca: etcd.tls.ca });
    expect(String(err)).toMatch(/UNAVAILABLE.*bad certificate|bad certificate/s);
    const got = await etcdctl(['--cacert', etcd.tls.ca, 'get', '/isthmus-test/tls']);
    expect(got.code).not.toBe(0);
    expect(got.stdout).toBe('');
    expect(got.stderr).toMatch(/bad certificate|deadline exceeded|context deadline/i);
  });

  test('refuses a client certificate of another CA: the etcd3 client and etcdctl get nothing', async () => {
    const err = await bareCall({ ca: etcd.tls.ca, cert: intruder.cert, key: intruder.key });
    expect(String(err)).toMatch(/bad certificate/);
    const got = await etcdctl(['--cacert', etcd.tls.ca, '--cert', intruder.cert, '--key', intruder.key, 'put', '/isthmus/v1/trust/bundles/mesh.test', '{}']);
    expect(got.code).not.toBe(0);
    const check = rawEtcd(etcd);
    try {
      expect(await check.get('/isthmus/v1/trust/bundles/mesh.test').string()).toBeNull();
    } finally {
      check.close();
    }
  });
});

describe('FederationStore.connect names the TLS problem instead of timing out', () => {
  const cases: [string, () => { endpoints: string; tls?: EtcdTlsFiles }, RegExp][] = [
    ['no client certificate', () => ({ endpoints: etcd.url, tls: { ca: etcd.tls.ca } }), /requires a client certificate and none was given: pass one signed by etcd's CA with --etcd-cert and --etcd-key/],
    ['a client certificate of another CA', () => ({ endpoints: etcd.url, tls: { ca: etcd.tls.ca, cert: intruder.cert, key: intruder.key } }), /refused the client certificate .*client-intruder\.pem.*not signed by the CA etcd trusts/],
    ['a CA that did not sign etcd\'s certificate', () => ({ endpoints: etcd.url, tls: { ca: intruder.ca, cert: etcd.tls.cert, key: etcd.tls.key } }), /server certificate that the etcd CA .*other-ca\/ca\.pem did not sign .*pass the CA that signed etcd's --cert-file with --etcd-ca/],
    ['no CA at all (Node\'s public CAs)', () => ({ endpoints: etcd.url }), /server certificate that no public CA \(nor NODE_EXTRA_CA_CERTS\) signed, and no --etcd-ca was given/],
    ['http:// for a TLS etcd', () => ({ endpoints: etcd.url.replace('https://', 'http://') }), /speaks TLS, but the address is http:\/\/: write it as https:\/\//],
  ];
  test.each(cases)('%s: ISTHMUS_ERR_ETCD_TLS_FAILED saying so', async (_name, options, message) => {
    const err = await FederationStore.connect({ ...options(), dialTimeoutMs: 3_000 }).then(async (s) => { await s.close(); return undefined; }, (e: unknown) => e);
    expect(err).toMatchObject({ code: 'ISTHMUS_ERR_ETCD_TLS_FAILED' });
    expect((err as Error).message).toMatch(message);
  });
});

describe('TLS files are checked before anything connects, and the error names the file', () => {
  const file = (name: string, content: string) => {
    const path = join(dir, name);
    writeFileSync(path, content);
    return path;
  };
  const cases: [string, () => EtcdTlsFiles, RegExp][] = [
    ['a CA file that does not exist', () => ({ ca: join(dir, 'nope.pem') }), /The etcd CA certificate .*nope\.pem \(--etcd-ca, ISTHMUS_ETCD_CA or etcd\.ca in the cluster config\) cannot be read: it does not exist; pass the CA/],
    ['a CA file that holds no certificate', () => ({ ca: file('junk.pem', 'not a certificate\n') }), /junk\.pem .* holds no PEM certificate/],
    ['a client certificate as the CA', () => ({ ca: etcd.tls.cert }), /client-operator\.pem .* holds no CA certificate/],
    ['a certificate without its key', () => ({ ca: etcd.tls.ca, cert: etcd.tls.cert }), /client certificate was given without its key: pass both --etcd-key and --etcd-cert/],
    ['a key of another certificate', () => ({ ca: etcd.tls.ca, cert: etcd.tls.cert, key: intruder.key }), /The etcd client key .*client-intruder-key\.pem .* does not belong to the client certificate .*client-operator\.pem/],
    ['an expired client certificate', () => {
      const old = issueEtcdClient(otherCa, 'expired', { now: new Date(Date.now() - 3 * 86_400_000), validityDays: 1 });
      return { ca: etcd.tls.ca, cert: old.cert, key: old.key };
    }, /client-expired\.pem .* expired at /],
  ];
  test.each(cases)('%s: ISTHMUS_ERR_ETCD_TLS_FILE_INVALID', async (_name, files, message) => {
    const err = await FederationStore.connect({ endpoints: etcd.url, tls: files() }).then(async (s) => { await s.close(); return undefined; }, (e: unknown) => e);
    expect(err).toMatchObject({ code: 'ISTHMUS_ERR_ETCD_TLS_FILE_INVALID' });
    expect((err as Error).message).toMatch(message);
  });

  test('TLS files with an http:// address are refused, not silently unused', async () => {
    await expect(FederationStore.connect({ endpoints: 'http://127.0.131.1:2379', tls: etcd.tls })).rejects.toMatchObject({ code: 'ISTHMUS_ERR_CONFIG_INVALID', message: expect.stringContaining('write it as https://') });
  });
});

describe('the CLI', () => {
  test('reads a TLS etcd with --etcd-ca/--etcd-cert/--etcd-key or their environment variables, and says what is wrong without them', async () => {
    const flags = await isthmus(['clusters', '-o', 'json', ...etcdArgs(etcd)]);
    expect(flags, flags.stderr).toMatchObject({ code: 0 });
    expect(JSON.parse(flags.stdout)).toMatchObject({ clusters: [] });
    const env = await isthmus(['clusters', '-o', 'json'], etcdEnv(etcd));
    expect(env, env.stderr).toMatchObject({ code: 0 });
    // An empty etcd fails other checks, so the checks' JSON is followed by the error's: read the first document.
    const checked = (await isthmus(['check', '-o', 'json'], etcdEnv(etcd))).stdout;
    const check = JSON.parse(checked.slice(0, checked.indexOf('\n}\n') + 2)) as { checks: { name: string; status: string; detail: string }[] };
    expect(check.checks.find((c) => c.name === 'etcd TLS')).toMatchObject({ status: 'ok', detail: expect.stringMatching(/client certificate .*client-operator\.pem, valid for 36[45] more days/) });

    const bare = await isthmus(['clusters', '-o', 'json', '--etcd', etcd.url, '--etcd-ca', etcd.tls.ca]);
    expect(bare.code).toBe(1);
    expect(JSON.parse(bare.stdout).error).toMatchObject({ code: 'ISTHMUS_ERR_ETCD_TLS_FAILED', message: expect.stringContaining('requires a client certificate') });
    expect(bare.stderr).not.toMatch(/DeprecationWarning/);

    // Without --etcd-ca, etcd's certificate is checked against Node's public CAs and
    // NODE_EXTRA_CA_CERTS: trusted there, nothing else is needed.
    const systemRoots = await isthmus(['clusters', '-o', 'json', '--etcd', etcd.url, '--etcd-cert', etcd.tls.cert, '--etcd-key', etcd.tls.key], { NODE_EXTRA_CA_CERTS: etcd.tls.ca });
    expect(systemRoots, systemRoots.stderr).toMatchObject({ code: 0 });

    const missing = await isthmus(['clusters', '-o', 'json', ...etcdArgs(etcd).slice(0, -1), join(dir, 'gone-key.pem')]);
    expect(missing.code).toBe(1);
    expect(JSON.parse(missing.stdout).error).toMatchObject({ code: 'ISTHMUS_ERR_ETCD_TLS_FILE_INVALID', message: expect.stringContaining(`${join(dir, 'gone-key.pem')} (--etcd-key`) });
  });
});

describe('gRPC credentials for etcd', () => {
  test('once made, Node\'s DEP0123 warning (an IP address as TLS SNI, which gRPC sends) is dropped and every other warning still shows', async () => {
    const seen: string[] = [];
    const listener = (w: Error & { code?: string }) => seen.push(w.code ?? w.name);
    process.on('warning', listener);
    try {
      grpcCredentials({ ca: Buffer.from('unused') } as Parameters<typeof grpcCredentials>[0]);
      process.emitWarning('Setting the TLS ServerName to an IP address is not permitted by RFC 6066.', { type: 'DeprecationWarning', code: 'DEP0123' });
      process.emitWarning('Setting the TLS ServerName to an IP address is not permitted by RFC 6066.', 'DeprecationWarning', 'DEP0123');
      process.emitWarning('another deprecation', { type: 'DeprecationWarning', code: 'DEP0999' });
      await new Promise((r) => setImmediate(r));
      expect(seen).toEqual(['DEP0999']);
    } finally {
      process.off('warning', listener);
    }
  });
});
