import { createPublicKey, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createCsr, createIntermediateCa, createRootCa, issueCertificate, signWorkloadCsr, type CertAndKey } from './ca.js';
import { certificateInfo, parseCertificates, verifyChain, verifyKeyMatchesCert } from './verify.js';
import { basicConstraintsOf } from './x509-facts.js';
import { failure } from '../../test/helpers/failure.js';
import { openssl, opensslIssue, opensslRoot } from '../../test/helpers/openssl-certs.js';

const alice = 'spiffe://example.org/ns/shop/sa/alice';
const day = 86_400_000;

let dir: string;
let root: CertAndKey;
let east: CertAndKey;
let leaf: CertAndKey;
let otherRoot: CertAndKey;
let otherWest: CertAndKey;
let otherLeaf: CertAndKey;


function toPem(der: Buffer): string {
  return `-----BEGIN CERTIFICATE-----\n${der.toString('base64')}\n-----END CERTIFICATE-----\n`;
}

/** The certificate with one byte flipped; `where` picks a byte in the signature or inside the signed key. */
function tamper(certPem: string, where: 'signature' | 'tbs'): string {
  const cert = new X509Certificate(certPem);
  const der = Buffer.from(cert.raw);
  const spki = cert.publicKey.export({ type: 'spki', format: 'der' });
  const index = where === 'signature' ? der.length - 7 : der.indexOf(spki) + Math.floor(spki.length / 2);
  der[index] = (der[index] ?? 0) ^ 0x40;
  return toPem(der);
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'isthmus-verify-test-'));
  root = createRootCa({ trustDomain: 'example.org' });
  east = createIntermediateCa({ root, trustDomain: 'example.org', cluster: 'east' });
  leaf = issueCertificate({ identity: alice, issuer: east });
  otherRoot = createRootCa({ trustDomain: 'other.org' });
  otherWest = createIntermediateCa({ root: otherRoot, trustDomain: 'other.org', cluster: 'west' });
  otherLeaf = issueCertificate({ identity: 'spiffe://other.org/ns/shop/sa/alice', issuer: otherWest });
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('parseCertificates', () => {
  test('reads a chain in order and skips text between blocks', () => {
    const certs = parseCertificates(`subject=leaf\n${leaf.certPem}\nsome comment\n${east.certPem}${root.certPem}`);
    expect(certs.map((c) => c.fingerprint256)).toEqual([leaf, east, root].map((c) => new X509Certificate(c.certPem).fingerprint256));
  });

  test.each([
    ['empty text', '', /No "-----BEGIN CERTIFICATE-----" block/],
    ['plain garbage', 'hello world', /No "-----BEGIN CERTIFICATE-----" block/],
    ['a private key', () => leaf.keyPem, /found a "PRIVATE KEY" PEM block.*Never put a private key/],
    ['a certificate followed by its key', () => leaf.certPem + leaf.keyPem, /PRIVATE KEY/],
    ['a CSR', () => createCsr({ keyPem: leaf.keyPem }).csrPem, /"CERTIFICATE REQUEST"/],
    ['a damaged second certificate', () => `${leaf.certPem}-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n`, /Certificate #2 in the PEM could not be parsed/],
  ])('refuses %s', (_name, input, message) => {
    const pem = typeof input === 'function' ? input() : input;
    const result = failure(() => parseCertificates(pem));
    expect(result.code).toBe('ISTHMUS_ERR_TRUST_CERT_INVALID');
    expect(result.message).toMatch(message);
  });
});

describe('verifyChain accepts', () => {
  test('leaf → intermediate → root, returning the identity and the issuer chain', () => {
    const result = verifyChain({ leafPem: leaf.certPem, intermediatesPem: [east.certPem], rootsPem: [root.certPem] });
    expect(result.identity).toBe(alice);
    expect(result.issuerChain.map((c) => c.fingerprint256)).toEqual([east, root].map((c) => new X509Certificate(c.certPem).fingerprint256));
    expect(result.notAfter.toISOString()).toBe(new Date(new X509Certificate(leaf.certPem).validTo).toISOString());
  });

  test('a chain PEM as a peer sends it, against the roots of several trust domains', () => {
    const result = verifyChain({ leafPem: leaf.certPem + east.certPem, rootsPem: [otherRoot.certPem, root.certPem] });
    expect(result.identity).toBe(alice);
  });

  test('during a root rotation, leaves of the old and of the new root (same name, different keys)', () => {
    const newRoot = createRootCa({ trustDomain: 'example.org' });
    const newEast = createIntermediateCa({ root: newRoot, trustDomain: 'example.org', cluster: 'east' });
    const newLeaf = issueCertificate({ identity: alice, issuer: newEast });
    const both = [root.certPem, newRoot.certPem];
    expect(verifyChain({ leafPem: leaf.certPem, intermediatesPem: [east.certPem, newEast.certPem], rootsPem: both }).identity).toBe(alice);
    expect(verifyChain({ leafPem: newLeaf.certPem, intermediatesPem: [east.certPem, newEast.certPem], rootsPem: both }).identity).toBe(alice);
    const onlyOld = failure(() => verifyChain({ leafPem: newLeaf.certPem, intermediatesPem: [newEast.certPem], rootsPem: [root.certPem] }));
    expect(onlyOld.code).toBe('ISTHMUS_ERR_TRUST_CHAIN_INVALID');
    expect(onlyOld.message).toMatch(/different key.*rotation/);
  });

  test('a leaf with no SPIFFE ID, whose identity is then undefined', () => {
    const plain = opensslIssue(east, '/O=example.org', 'basicConstraints=critical,CA:FALSE\nsubjectAltName=DNS:gw.example.org');
    expect(verifyChain({ leafPem: plain.certPem, intermediatesPem: [east.certPem], rootsPem: [root.certPem] }).identity).toBeUndefined();
  });
});

describe('verifyChain refuses', () => {
  const cases: [string, () => Parameters<typeof verifyChain>[0], string, RegExp][] = [
    ['a flipped byte in the signature', () => ({ leafPem: tamper(leaf.certPem, 'signature'), intermediatesPem: [east.certPem], rootsPem: [root.certPem] }), 'ISTHMUS_ERR_TRUST_CHAIN_INVALID', /does not verify.*altered/],
    ['a flipped byte in the signed public key', () => ({ leafPem: tamper(leaf.certPem, 'tbs'), intermediatesPem: [east.certPem], rootsPem: [root.certPem] }), 'ISTHMUS_ERR_TRUST_CHAIN_INVALID', /does not verify/],
    ['a tampered intermediate', () => ({ leafPem: leaf.certPem, intermediatesPem: [tamper(east.certPem, 'signature')], rootsPem: [root.certPem] }), 'ISTHMUS_ERR_TRUST_CHAIN_INVALID', /cluster\/east\/ca.*does not verify/],
    ['a leaf checked after it expired', () => ({ leafPem: leaf.certPem, intermediatesPem: [east.certPem], rootsPem: [root.certPem], now: new Date(Date.now() + 2 * day) }), 'ISTHMUS_ERR_TRUST_CERT_EXPIRED', /The leaf certificate spiffe:\/\/example.org\/ns\/shop\/sa\/alice .*expired at \d{4}-\d\d-\d\dT/],
    ['a leaf issued in the past that has expired', () => ({ leafPem: issueCertificate({ identity: alice, issuer: east, now: new Date(Date.now() - 3 * day), ttlSeconds: 3600 }).certPem, intermediatesPem: [east.certPem], rootsPem: [root.certPem] }), 'ISTHMUS_ERR_TRUST_CERT_EXPIRED', /leaf .*expired at/],
    ['a leaf that is not valid yet', () => ({ leafPem: leaf.certPem, intermediatesPem: [east.certPem], rootsPem: [root.certPem], now: new Date(Date.now() - day) }), 'ISTHMUS_ERR_TRUST_CERT_EXPIRED', /not valid until.*clock/],
    ['a leaf of another root', () => ({ leafPem: otherLeaf.certPem, intermediatesPem: [otherWest.certPem], rootsPem: [root.certPem] }), 'ISTHMUS_ERR_TRUST_CHAIN_INVALID', /cluster\/west\/ca.*neither a trusted root/],
    ['a missing intermediate', () => ({ leafPem: leaf.certPem, rootsPem: [root.certPem] }), 'ISTHMUS_ERR_TRUST_CHAIN_INVALID', /Send the full chain/],
    ['a CA presented as the leaf', () => ({ leafPem: east.certPem, rootsPem: [root.certPem] }), 'ISTHMUS_ERR_TRUST_CHAIN_INVALID', /is a CA certificate, not a leaf/],
    ['no roots at all', () => ({ leafPem: leaf.certPem, intermediatesPem: [east.certPem], rootsPem: [] }), 'ISTHMUS_ERR_TRUST_CHAIN_INVALID', /No trusted roots/],
    ['garbage as the leaf', () => ({ leafPem: 'nope', rootsPem: [root.certPem] }), 'ISTHMUS_ERR_TRUST_CERT_INVALID', /No "-----BEGIN CERTIFICATE-----"/],
  ];

  test.each(cases)('%s', (_name, input, code, message) => {
    const result = failure(() => verifyChain(input()));
    expect(result.code).toBe(code);
    expect(result.message).toMatch(message);
  });

  test('a CA issued by an intermediate (pathLen 0), and the leaves below it', () => {
    const subCa = opensslIssue(
      east,
      '/O=example.org/CN=rogue sub-CA',
      'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectAltName=URI:spiffe://example.org/cluster/rogue/ca',
    );
    expect(basicConstraintsOf(new X509Certificate(subCa.certPem))).toEqual({ ca: true });
    const below = signWorkloadCsr({ csrPem: createCsr().csrPem, identity: alice, issuer: subCa });
    const result = failure(() => verifyChain({ leafPem: below.certPem, intermediatesPem: [subCa.certPem, east.certPem], rootsPem: [root.certPem] }));
    expect(result.code).toBe('ISTHMUS_ERR_TRUST_CHAIN_INVALID');
    expect(result.message).toMatch(/cluster\/east\/ca .*has pathLen 0 but issued the CA .*cluster\/rogue\/ca.*must not issue another CA/);
  });

  test("an identity of one trust domain vouched for by another trust domain's root", () => {
    const forged = opensslIssue(otherWest, '/O=other.org', `basicConstraints=critical,CA:FALSE\nsubjectAltName=URI:${alice}`);
    const result = failure(() => verifyChain({ leafPem: forged.certPem, intermediatesPem: [otherWest.certPem], rootsPem: [root.certPem, otherRoot.certPem] }));
    expect(result.code).toBe('ISTHMUS_ERR_TRUST_CHAIN_INVALID');
    expect(result.message).toMatch(/claims spiffe:\/\/example.org\/ns\/shop\/sa\/alice but chains to the root of trust domain "other.org"/);
  });

  test.each([
    ['no URI SAN at all', undefined],
    ['two trust-domain SANs', 'URI:spiffe://example.org,URI:spiffe://other.org'],
    ['a workload ID instead of the trust domain', 'URI:spiffe://example.org/ns/shop/sa/alice'],
    ['a DNS name only', 'DNS:ca.example.org'],
  ])('an identity under a root with %s: openssl verify accepts the chain, Isthmus does not', (_name, san) => {
    const rogueRoot = opensslRoot('/O=example.org/CN=rogue root', san);
    const rogueCa = opensslIssue(rogueRoot, '/O=example.org/CN=rogue intermediate', 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign');
    const forged = opensslIssue(rogueCa, '/O=example.org', `basicConstraints=critical,CA:FALSE\nsubjectAltName=URI:${alice}`);
    // X.509 has no rule tying a root to a trust domain: path validation alone passes.
    const files = { root: join(dir, 'rogue-root.pem'), chain: join(dir, 'rogue-chain.pem'), leaf: join(dir, 'rogue-leaf.pem') };
    writeFileSync(files.root, rogueRoot.certPem);
    writeFileSync(files.chain, rogueCa.certPem);
    writeFileSync(files.leaf, forged.certPem);
    expect(openssl(['verify', '-CAfile', files.root, '-untrusted', files.chain, files.leaf])).toMatch(/: OK/);
    const result = failure(() => verifyChain({ leafPem: forged.certPem, intermediatesPem: [rogueCa.certPem], rootsPem: [root.certPem, rogueRoot.certPem] }));
    expect(result.code).toBe('ISTHMUS_ERR_TRUST_CHAIN_INVALID');
    expect(result.message).toMatch(/claims spiffe:\/\/example.org\/ns\/shop\/sa\/alice but chains to the root .*which names no single trust domain/);
  });

  test.each([
    ['two SPIFFE IDs', `URI:${alice},URI:spiffe://example.org/ns/shop/sa/bob`, /carries 2 URI SANs/],
    ['a SPIFFE ID and another URI', `URI:${alice},URI:https://example.org/alice`, /carries 2 URI SANs/],
    ['the bare trust domain as its ID', 'URI:spiffe://example.org', /names the trust domain itself/],
    ['a malformed SPIFFE ID', 'URI:spiffe://example.org/a//b', /SPIFFE ID is malformed/],
  ])('a leaf with %s (SPIFFE X509-SVID §2, §3.1)', (_name, san, message) => {
    const bad = opensslIssue(east, '/O=example.org', `basicConstraints=critical,CA:FALSE\nsubjectAltName=${san}`);
    const result = failure(() => verifyChain({ leafPem: bad.certPem, intermediatesPem: [east.certPem], rootsPem: [root.certPem] }));
    expect(result.code).toBe('ISTHMUS_ERR_TRUST_CHAIN_INVALID');
    expect(result.message).toMatch(message);
  });

  test.each([
    ['code signing only', 'codeSigning', 'serverAuth and clientAuth'],
    ['server authentication only', 'serverAuth', 'clientAuth'],
  ])('a leaf whose extended key usage is %s: refused here and by openssl verify -purpose sslclient', (_name, eku, missing) => {
    const bad = opensslIssue(east, '/O=example.org', `basicConstraints=critical,CA:FALSE\nextendedKeyUsage=${eku}\nsubjectAltName=URI:${alice}`);
    const result = failure(() => verifyChain({ leafPem: bad.certPem, intermediatesPem: [east.certPem], rootsPem: [root.certPem] }));
    expect(result.code).toBe('ISTHMUS_ERR_TRUST_CHAIN_INVALID');
    expect(result.message).toMatch(new RegExp(`extended key usage \\([0-9.]+\\) without ${missing};`));
    const files = { root: join(dir, 'eku-root.pem'), chain: join(dir, 'eku-chain.pem'), leaf: join(dir, 'eku-leaf.pem') };
    writeFileSync(files.root, root.certPem);
    writeFileSync(files.chain, east.certPem);
    writeFileSync(files.leaf, bad.certPem);
    expect(() => openssl(['verify', '-purpose', 'sslclient', '-CAfile', files.root, '-untrusted', files.chain, files.leaf])).toThrow(/unsuitable certificate purpose/);
  });

  test('our own leaves carry both purposes and pass', () => {
    expect(verifyChain({ leafPem: leaf.certPem, intermediatesPem: [east.certPem], rootsPem: [root.certPem] }).identity).toBeDefined();
  });

  test('a leaf whose key may sign certificates', () => {
    const bad = opensslIssue(east, '/O=example.org', `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyCertSign\nsubjectAltName=URI:${alice}`);
    const result = failure(() => verifyChain({ leafPem: bad.certPem, intermediatesPem: [east.certPem], rootsPem: [root.certPem] }));
    expect(result.code).toBe('ISTHMUS_ERR_TRUST_CHAIN_INVALID');
    expect(result.message).toMatch(/key usage allows signing certificates/);
  });

  test('a leaf signed by a certificate that is not a CA', () => {
    const notCa = opensslIssue(east, '/O=example.org/CN=not a ca', 'basicConstraints=critical,CA:FALSE\nsubjectAltName=URI:spiffe://example.org/ns/a/sa/b');
    const below = opensslIssue(notCa, '/O=example.org', `basicConstraints=critical,CA:FALSE\nsubjectAltName=URI:${alice}`);
    const result = failure(() => verifyChain({ leafPem: below.certPem, intermediatesPem: [notCa.certPem, east.certPem], rootsPem: [root.certPem] }));
    expect(result.code).toBe('ISTHMUS_ERR_TRUST_CHAIN_INVALID');
    expect(result.message).toMatch(/spiffe:\/\/example.org\/ns\/a\/sa\/b .*is not a CA/);
  });
});

describe('certificateInfo and verifyKeyMatchesCert', () => {
  test('certificateInfo describes leaves and CAs', () => {
    const cert = new X509Certificate(leaf.certPem);
    expect(certificateInfo(leaf.certPem)).toEqual({
      subject: 'O=example.org',
      issuer: 'O=example.org\nCN=Isthmus intermediate CA for cluster east',
      notBefore: new Date(cert.validFrom),
      notAfter: new Date(cert.validTo),
      isCa: false,
      identity: alice,
      fingerprint256: cert.fingerprint256,
      serialNumber: cert.serialNumber,
    });
    expect(certificateInfo(root.certPem)).toMatchObject({ isCa: true, identity: 'spiffe://example.org', subject: 'O=example.org\nCN=Isthmus root CA' });
  });

  test.each<[string, () => [string, string], string | undefined]>([
    ['the matching key', () => [root.certPem, root.keyPem], undefined],
    ["another certificate's key", () => [root.certPem, east.keyPem], 'ISTHMUS_ERR_TRUST_CA_MISSING'],
    ['a public key', () => [root.certPem, createPublicKey(root.keyPem).export({ type: 'spki', format: 'pem' }) as string], 'ISTHMUS_ERR_TRUST_CA_MISSING'],
    ['garbage', () => [root.certPem, 'garbage'], 'ISTHMUS_ERR_TRUST_CA_MISSING'],
  ])('verifyKeyMatchesCert with %s', (_name, pair, code) => {
    const [certPem, keyPem] = pair();
    expect(failure(() => verifyKeyMatchesCert(certPem, keyPem)).code).toBe(code);
  });

  test('the mismatch message names the files it was given', () => {
    expect(() => verifyKeyMatchesCert(root.certPem, east.keyPem, { cert: '/ca/root-cert.pem', key: '/ca/root-key.pem' })).toThrow(
      /\/ca\/root-key.pem does not belong to \/ca\/root-cert.pem/,
    );
  });
});
