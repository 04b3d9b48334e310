import { X509Certificate } from 'node:crypto';
import { beforeAll, describe, expect, test } from 'vitest';
import { createIntermediateCa, createRootCa, issueCertificate, issueOperatorCertificate, type CertAndKey } from './ca.js';
import { isLoopbackAddress, mintOperatorToken, operatorTokenOf, requireOperator, verifyOperatorCertificate, verifyOperatorToken } from './operator.js';
import { verifyChain } from './verify.js';
import { extKeyUsageOf, notAfterOf } from './x509-facts.js';
import { failure } from '../../test/helpers/failure.js';
import { opensslIssue, opensslRoot } from '../../test/helpers/openssl-certs.js';

let root: CertAndKey;
let east: CertAndKey;
let otherRoot: CertAndKey;
let alice: ReturnType<typeof issueOperatorCertificate>;

beforeAll(() => {
  root = createRootCa({ trustDomain: 'example.org' });
  east = createIntermediateCa({ root, trustDomain: 'example.org', cluster: 'east' });
  otherRoot = createRootCa({ trustDomain: 'other.org' });
  alice = issueOperatorCertificate({ name: 'alice', issuer: root, ttlSeconds: 8 * 3600 });
});

describe('operator certificates', () => {
  test('carry spiffe://<td>/operator/<name> and clientAuth only, and verify against the root', () => {
    expect(alice.identity).toBe('spiffe://example.org/operator/alice');
    expect(extKeyUsageOf(new X509Certificate(alice.certPem))).toEqual(['1.3.6.1.5.5.7.3.2']);
    expect(verifyOperatorCertificate({ chainPem: [alice.certPem], rootsPem: [root.certPem, otherRoot.certPem] })).toMatchObject({ name: 'alice', trustDomain: 'example.org' });
  });

  test('may come from a cluster intermediate, presented with it', () => {
    const bob = issueOperatorCertificate({ name: 'bob', issuer: east, issuerChainPem: [east.certPem], ttlSeconds: 3600 });
    expect(verifyOperatorCertificate({ chainPem: [bob.certPem, ...bob.chainPem], rootsPem: [root.certPem] }).identity).toBe('spiffe://example.org/operator/bob');
  });

  test('cannot serve: a mesh peer check (serverAuth and clientAuth) refuses it', () => {
    expect(failure(() => verifyChain({ leafPem: alice.certPem, rootsPem: [root.certPem] })).code).toBe('ISTHMUS_ERR_TRUST_CHAIN_INVALID');
  });

  test('a workload certificate is not an operator credential (403), nor is one of another trust domain when the component names its own', () => {
    const workload = issueCertificate({ identity: 'spiffe://example.org/ns/demo/sa/admin', issuer: east });
    expect(failure(() => verifyOperatorCertificate({ chainPem: [workload.certPem, east.certPem], rootsPem: [root.certPem] })).code).toBe('ISTHMUS_ERR_AUTH_FORBIDDEN');
    const carol = issueOperatorCertificate({ name: 'carol', issuer: otherRoot, ttlSeconds: 3600 });
    expect(verifyOperatorCertificate({ chainPem: [carol.certPem], rootsPem: [root.certPem, otherRoot.certPem] }).trustDomain).toBe('other.org');
    expect(failure(() => verifyOperatorCertificate({ chainPem: [carol.certPem], rootsPem: [root.certPem, otherRoot.certPem], trustDomain: 'example.org' })).code).toBe('ISTHMUS_ERR_AUTH_FORBIDDEN');
  });

  test('an operator ID under a root of another trust domain, or under a root without a SAN, is refused', () => {
    // other.org's root signs an example.org operator: the root-of-its-trust-domain rule refuses it.
    const forged = opensslIssue(otherRoot, '/O=x', 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nsubjectAltName=URI:spiffe://example.org/operator/root');
    expect(failure(() => verifyOperatorCertificate({ chainPem: [forged.certPem], rootsPem: [root.certPem, otherRoot.certPem] })).code).toBe('ISTHMUS_ERR_AUTH_CREDENTIAL_INVALID');
    const sanless = opensslRoot('/CN=no san', undefined);
    const underSanless = opensslIssue(sanless, '/O=x', 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nsubjectAltName=URI:spiffe://example.org/operator/root');
    expect(failure(() => verifyOperatorCertificate({ chainPem: [underSanless.certPem], rootsPem: [root.certPem, sanless.certPem] })).message).toMatch(/names no single trust domain/);
  });

  test('expired, or signed by nobody the mesh trusts: refused', () => {
    const later = new Date(Date.now() + 9 * 3600_000);
    expect(failure(() => verifyOperatorCertificate({ chainPem: [alice.certPem], rootsPem: [root.certPem], now: later })).message).toMatch(/expired/);
    expect(failure(() => verifyOperatorCertificate({ chainPem: [alice.certPem], rootsPem: [otherRoot.certPem] })).code).toBe('ISTHMUS_ERR_AUTH_CREDENTIAL_INVALID');
  });

  test('the operator name must be a DNS subdomain', () => {
    expect(failure(() => issueOperatorCertificate({ name: 'Alice Smith', issuer: root, ttlSeconds: 60 })).code).toBe('ISTHMUS_ERR_TRUST_SPIFFE_INVALID');
  });
});

describe('operator tokens', () => {
  test('a token verifies to its operator until it expires, never past the certificate', () => {
    const now = new Date();
    const { token, expiresAt } = mintOperatorToken({ certPem: alice.certPem, keyPem: alice.keyPem, ttlSeconds: 600, now });
    expect(token).toMatch(/^isthop_[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    expect(verifyOperatorToken(token, { rootsPem: [root.certPem], trustDomain: 'example.org' }).identity).toBe('spiffe://example.org/operator/alice');
    expect(expiresAt.getTime() - now.getTime()).toBeLessThanOrEqual(600_000);
    expect(failure(() => verifyOperatorToken(token, { rootsPem: [root.certPem], now: new Date(now.getTime() + 601_000) })).message).toMatch(/expired/);
    const short = issueOperatorCertificate({ name: 'brief', issuer: root, ttlSeconds: 120 });
    const clipped = mintOperatorToken({ certPem: short.certPem, keyPem: short.keyPem, ttlSeconds: 3600 });
    expect(clipped.expiresAt.getTime()).toBeLessThanOrEqual(notAfterOf(new X509Certificate(short.certPem)).getTime());
  });

  test('an altered payload, another key, a workload key, junk and over-long lifetimes are refused', () => {
    const { token } = mintOperatorToken({ certPem: alice.certPem, keyPem: alice.keyPem, ttlSeconds: 600 });
    const [payload, signature] = token.slice('isthop_'.length).split('.') as [string, string];
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as { exp: number };
    const stretched = Buffer.from(JSON.stringify({ ...claims, exp: claims.exp + 3600 })).toString('base64url');
    expect(failure(() => verifyOperatorToken(`isthop_${stretched}.${signature}`, { rootsPem: [root.certPem] })).message).toMatch(/signature does not verify/);
    const mallory = issueOperatorCertificate({ name: 'mallory', issuer: otherRoot, ttlSeconds: 600 });
    expect(failure(() => mintOperatorToken({ certPem: alice.certPem, keyPem: mallory.keyPem, ttlSeconds: 60 })).code).toBe('ISTHMUS_ERR_AUTH_CREDENTIAL_INVALID');
    const workload = issueCertificate({ identity: 'spiffe://example.org/ns/demo/sa/admin', issuer: east });
    const asWorkload = mintOperatorToken({ certPem: workload.certPem, chainPem: [east.certPem], keyPem: workload.keyPem, ttlSeconds: 60 });
    expect(failure(() => verifyOperatorToken(asWorkload.token, { rootsPem: [root.certPem] })).code).toBe('ISTHMUS_ERR_AUTH_FORBIDDEN');
    for (const junk of ['', 'isthop_', 'isthop_a.b.c', 'Bearer x', `isthop_${'A'.repeat(20_000)}.x`, `isthop_${Buffer.from('{"v":2}').toString('base64url')}.AA`]) {
      expect(failure(() => verifyOperatorToken(junk, { rootsPem: [root.certPem] })).code).toBe('ISTHMUS_ERR_AUTH_CREDENTIAL_INVALID');
    }
    expect(failure(() => mintOperatorToken({ certPem: alice.certPem, keyPem: alice.keyPem, ttlSeconds: 13 * 3600 })).code).toBe('ISTHMUS_ERR_CONFIG_INVALID');
  });

  test('requests carry it as a bearer token or the dashboard cookie; none is a 401 with its own code', () => {
    const { token } = mintOperatorToken({ certPem: alice.certPem, keyPem: alice.keyPem, ttlSeconds: 60 });
    expect(operatorTokenOf({ authorization: `Bearer ${token}` })).toBe(token);
    expect(operatorTokenOf({ cookie: `a=b; isthmus_operator=${token}` })).toBe(token);
    expect(requireOperator({ cookie: `isthmus_operator=${token}` }, { rootsPem: [root.certPem], what: 'x' }).name).toBe('alice');
    const missing = failure(() => requireOperator({}, { rootsPem: [root.certPem], what: 'GET /debug/connections' }));
    expect(missing.code).toBe('ISTHMUS_ERR_AUTH_CREDENTIAL_MISSING');
    expect(missing.message).toMatch(/^GET \/debug\/connections needs an operator credential/);
  });

  test('loopback addresses', () => {
    expect(['127.0.0.1', '127.0.121.1', '::1', '::ffff:127.0.0.1'].map(isLoopbackAddress)).toEqual([true, true, true, true]);
    expect(['10.0.0.1', '::ffff:10.0.0.1', '128.0.0.1', undefined].map(isLoopbackAddress)).toEqual([false, false, false, false]);
  });
});
