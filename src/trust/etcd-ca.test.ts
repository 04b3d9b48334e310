import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { ensureEtcdPki, initEtcdCa, issueEtcdClient } from './etcd-ca.js';
import { altNamesOf } from './x509-facts.js';

const dir = mkdtempSync(join(tmpdir(), 'isthmus-etcd-ca-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const cert = (path: string) => new X509Certificate(readFileSync(path));
const opensslVerify = (ca: string, leaf: string, purpose: string) =>
  execFileSync('openssl', ['verify', '-x509_strict', '-purpose', purpose, '-CAfile', ca, leaf], { encoding: 'utf8' });

describe('etcd\'s own CA', () => {
  const ca = join(dir, 'etcd-ca');
  const server = initEtcdCa(ca, { hosts: ['127.0.0.1', '10.0.0.5', 'etcd.internal'] });
  const client = issueEtcdClient(ca, 'federation-east');

  test('signs a server certificate naming every host, and client certificates whose common name is the etcd user; openssl agrees', () => {
    expect(cert(server.ca).ca).toBe(true);
    expect(altNamesOf(cert(server.ca)).uris).toEqual([]); // no SPIFFE ID: never a mesh root
    expect(altNamesOf(cert(server.cert))).toMatchObject({ ipAddresses: ['127.0.0.1', '10.0.0.5'], dnsNames: ['etcd.internal'], uris: [] });
    expect(cert(client.cert).subject).toContain('CN=federation-east');
    expect(opensslVerify(server.ca, server.cert, 'sslserver')).toContain(': OK');
    expect(opensslVerify(client.ca, client.cert, 'sslclient')).toContain(': OK');
    for (const key of [join(ca, 'ca-key.pem'), server.key, client.key]) expect(statSync(key).mode & 0o777).toBe(0o600);
  });

  test('never overwrites a CA or a client certificate; ensureEtcdPki keeps what exists and adds what is missing', () => {
    expect(() => initEtcdCa(ca, { hosts: ['127.0.0.1'] })).toThrow(expect.objectContaining({ code: 'ISTHMUS_ERR_TRUST_CA_EXISTS' }));
    expect(() => issueEtcdClient(ca, 'federation-east')).toThrow(expect.objectContaining({ code: 'ISTHMUS_ERR_TRUST_CA_EXISTS' }));
    const before = readFileSync(client.cert, 'utf8');
    const ensured = ensureEtcdPki(ca, ['127.0.0.1'], ['federation-east', 'operator']);
    expect(readFileSync(ensured.clients['federation-east']!.cert, 'utf8')).toBe(before);
    expect(cert(ensured.clients.operator!.cert).subject).toContain('CN=operator');
  });

  test.each([['East'], ['a b'], ['-x'], ['']])('refuses the client name %j, naming it', (name) => {
    expect(() => issueEtcdClient(ca, name)).toThrow(expect.objectContaining({ code: 'ISTHMUS_ERR_CONFIG_INVALID' }));
  });

  test('a directory without an etcd CA is ISTHMUS_ERR_TRUST_CA_MISSING saying how to make one', () => {
    expect(() => issueEtcdClient(join(dir, 'empty'), 'operator')).toThrow(expect.objectContaining({ code: 'ISTHMUS_ERR_TRUST_CA_MISSING', message: expect.stringContaining('isthmus ca init-etcd --out') }));
  });
});
