import { execFileSync } from 'node:child_process';
import { createPrivateKey, createPublicKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { isIsthmusError } from '../core/errors.js';
import { createCsr, createIntermediateCa, createRootCa, issueCertificate, signWorkloadCsr, type CertAndKey } from './ca.js';
import { readCsr } from './csr.js';
import { verifyChain } from './verify.js';

const openssl = '/usr/bin/openssl';
const td = 'example.org';
const alice = 'spiffe://example.org/ns/shop/sa/alice';

let dir: string;
let root: CertAndKey;
let east: CertAndKey;

function file(name: string, content: string): string {
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
}

/** Runs openssl; returns its output, or throws with stdout+stderr so a failure explains itself. */
function run(args: string[], input?: string): string {
  try {
    return execFileSync(openssl, args, { input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    throw new Error(`openssl ${args.join(' ')} failed:\n${e.stdout ?? ''}${e.stderr ?? ''}`);
  }
}

function opensslVerify(leafPem: string, opts: { purpose?: string; untrusted?: string } = {}): string {
  const args = ['verify', '-x509_strict', '-CAfile', file('root.pem', root.certPem)];
  if (opts.purpose) args.push('-purpose', opts.purpose);
  if (opts.untrusted) args.push('-untrusted', file('untrusted.pem', opts.untrusted));
  args.push(file('subject.pem', leafPem));
  return run(args);
}

const text = (pem: string) => run(['x509', '-noout', '-text'], pem);

/** An openssl-made CSR: a key type of our choosing, and any subject and extensions the requester likes. */
function opensslCsr(keyArgs: string[], extra: string[] = []): string {
  const keyPath = join(dir, 'csr-key.pem');
  run(['genpkey', ...keyArgs, '-out', keyPath]);
  return run(['req', '-new', '-key', keyPath, '-subj', '/O=requester/CN=whatever', ...extra]);
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return isIsthmusError(err) ? err.code : `not an IsthmusError: ${String(err)}`;
  }
  return undefined;
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'isthmus-ca-test-'));
  root = createRootCa({ trustDomain: td });
  east = createIntermediateCa({ root, trustDomain: td, cluster: 'east' });
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('root CA', () => {
  test('passes openssl -x509_strict and has the promised profile', () => {
    expect(opensslVerify(root.certPem)).toMatch(/: OK/);
    const out = text(root.certPem);
    expect(out).toMatch(/Basic Constraints: critical\s+CA:TRUE\n/);
    expect(out).toMatch(/Key Usage: critical\s+Certificate Sign, CRL Sign/);
    expect(out).toContain('Subject: O = example.org, CN = Isthmus root CA');
    expect(out).toContain('URI:spiffe://example.org\n');
    const ski = /Subject Key Identifier:\s+([0-9A-F:]+)/.exec(out)?.[1];
    expect(ski).toBeDefined();
    expect(out).toMatch(new RegExp(`Authority Key Identifier:\\s+(keyid:)?${ski}`));
  });

  test('defaults to ten years of validity', () => {
    const now = new Date('2030-01-01T00:00:00Z');
    const cert = new X509Certificate(createRootCa({ trustDomain: td, now }).certPem);
    expect(new Date(cert.validTo).toISOString()).toBe('2039-12-30T00:00:00.000Z');
  });

  test('encodes dates from 2050 on as GeneralizedTime (RFC 5280 §4.1.2.5)', () => {
    const cert = createRootCa({ trustDomain: td, now: new Date('2045-06-01T12:00:00Z'), validityDays: 3650 });
    expect(new Date(new X509Certificate(cert.certPem).validTo).toISOString()).toBe('2055-05-30T12:00:00.000Z');
    expect(run(['asn1parse'], cert.certPem)).toMatch(/GENERALIZEDTIME\s+:20550530120000Z/);
  });

  test.each([
    ['Example.org', 'ISTHMUS_ERR_TRUST_SPIFFE_INVALID'],
    ['', 'ISTHMUS_ERR_TRUST_SPIFFE_INVALID'],
  ])('refuses trust domain %j', (trustDomain, code) => {
    expect(codeOf(() => createRootCa({ trustDomain }))).toBe(code);
  });

  test('serial numbers are positive, about 128 bits, and never repeat', () => {
    const serials = [root, east, ...Array.from({ length: 5 }, () => issueCertificate({ identity: alice, issuer: east }))].map(
      (ca) => new X509Certificate(ca.certPem).serialNumber,
    );
    expect(new Set(serials).size).toBe(serials.length);
    for (const serial of serials) {
      expect(serial.length).toBeGreaterThanOrEqual(30);
      expect(serial.length).toBeLessThanOrEqual(34);
    }
    const asn1 = run(['asn1parse'], east.certPem);
    expect(asn1).not.toMatch(/INTEGER\s+:-/);
  });
});

describe('intermediate CA', () => {
  test('passes openssl -x509_strict against the root, with pathlen 0 and its cluster identity', () => {
    expect(opensslVerify(east.certPem)).toMatch(/: OK/);
    const out = text(east.certPem);
    expect(out).toMatch(/Basic Constraints: critical\s+CA:TRUE, pathlen:0/);
    expect(out).toContain('URI:spiffe://example.org/cluster/east/ca');
    expect(out).toContain('Issuer: O = example.org, CN = Isthmus root CA');
  });

  test('is clipped to the root notAfter', () => {
    const now = new Date('2030-01-01T00:00:00Z');
    const shortRoot = createRootCa({ trustDomain: td, validityDays: 30, now });
    const clipped = createIntermediateCa({ root: shortRoot, trustDomain: td, cluster: 'east', now });
    expect(new X509Certificate(clipped.certPem).validTo).toBe(new X509Certificate(shortRoot.certPem).validTo);
  });

  test.each<[string, () => CertAndKey, string]>([
    ['an intermediate as the root (pathLen 0)', () => createIntermediateCa({ root: east, trustDomain: td, cluster: 'west' }), 'ISTHMUS_ERR_TRUST_CHAIN_INVALID'],
    ['another trust domain', () => createIntermediateCa({ root, trustDomain: 'other.org', cluster: 'west' }), 'ISTHMUS_ERR_TRUST_IDENTITY_DENIED'],
    ['a bad cluster name', () => createIntermediateCa({ root, trustDomain: td, cluster: 'West_1' }), 'ISTHMUS_ERR_TRUST_SPIFFE_INVALID'],
    ['a key that is not the root key', () => createIntermediateCa({ root: { certPem: root.certPem, keyPem: east.keyPem }, trustDomain: td, cluster: 'w' }), 'ISTHMUS_ERR_TRUST_CA_MISSING'],
    ['a root that has expired', () => createIntermediateCa({ root, trustDomain: td, cluster: 'w', now: new Date('2100-01-01T00:00:00Z') }), 'ISTHMUS_ERR_TRUST_CERT_EXPIRED'],
    ['zero validity', () => createIntermediateCa({ root, trustDomain: td, cluster: 'w', validityDays: 0 }), 'ISTHMUS_ERR_CONFIG_INVALID'],
  ])('refuses %s', (_name, make, code) => {
    expect(codeOf(make)).toBe(code);
  });
});

describe('leaves', () => {
  const leafCases: [string, () => string][] = [
    ['a sidecar CSR (createCsr, RSA)', () => signWorkloadCsr({ csrPem: createCsr().csrPem, identity: alice, issuer: east }).certPem],
    ['an openssl CSR with an EC P-256 key', () => signWorkloadCsr({ csrPem: opensslCsr(['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256']), identity: alice, issuer: east }).certPem],
    ['an openssl CSR with an EC P-384 key', () => signWorkloadCsr({ csrPem: opensslCsr(['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-384']), identity: alice, issuer: east }).certPem],
    ['issueCertificate', () => issueCertificate({ identity: alice, issuer: east, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1', '::1'] }).certPem],
  ];

  test.each(leafCases)('%s passes openssl -x509_strict as client and server, and names the chosen identity', (_name, make) => {
    const leaf = make();
    for (const purpose of ['sslclient', 'sslserver']) {
      expect(opensslVerify(leaf, { purpose, untrusted: east.certPem })).toMatch(/: OK/);
    }
    const out = text(leaf);
    expect(out).toMatch(/Basic Constraints: critical\s+CA:FALSE/);
    expect(out).toMatch(/Extended Key Usage:\s+TLS Web Server Authentication, TLS Web Client Authentication/);
    expect(out).toMatch(/Key Usage: critical\s+Digital Signature/);
    expect(out).toMatch(/Subject Alternative Name:\s+URI:spiffe:\/\/example.org\/ns\/shop\/sa\/alice/);
    expect(out).toContain('Subject: O = example.org\n');
    expect(verifyChain({ leafPem: leaf, intermediatesPem: [east.certPem], rootsPem: [root.certPem] }).identity).toBe(alice);
  });

  test('RSA leaves may encipher keys; EC leaves, ours included, only sign (RFC 8813 §3)', () => {
    const rsa = signWorkloadCsr({ csrPem: opensslCsr(['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048']), identity: alice, issuer: east }).certPem;
    expect(text(rsa)).toMatch(/Digital Signature, Key Encipherment/);
    const ec = signWorkloadCsr({ csrPem: opensslCsr(['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256']), identity: alice, issuer: east }).certPem;
    expect(text(ec)).toMatch(/Key Usage: critical\s+Digital Signature\n/);
    const ours = issueCertificate({ identity: alice, issuer: east });
    expect(text(ours.certPem)).toMatch(/Key Usage: critical\s+Digital Signature\n/);
    expect(text(ours.certPem)).toMatch(/Public Key Algorithm: id-ecPublicKey[\s\S]*NIST CURVE: P-256/);
  });

  test('issueCertificate puts DNS names and IP addresses in the SAN and returns a key that matches', () => {
    const issued = issueCertificate({ identity: alice, issuer: east, dnsNames: ['gw.example.org', '*.svc.local'], ipAddresses: ['10.0.0.7', '::ffff:192.0.2.1', 'fe80::1'] });
    const cert = new X509Certificate(issued.certPem);
    expect(cert.checkHost('gw.example.org')).toBe('gw.example.org');
    expect(cert.checkHost('a.svc.local')).toBe('*.svc.local');
    expect(cert.checkHost('other.example.org')).toBeUndefined();
    expect(cert.checkIP('10.0.0.7')).toBe('10.0.0.7');
    expect(cert.checkIP('fe80::1')).toBe('fe80::1');
    expect(text(issued.certPem)).toContain('IP Address:0:0:0:0:0:FFFF:C000:201');
    expect(cert.checkPrivateKey(createPrivateKey(issued.keyPem))).toBe(true);
  });

  test('validity runs from a minute ago for the TTL (default 24 h), clipped to the issuer notAfter', () => {
    const now = new Date('2030-01-01T00:00:00Z');
    const r = createRootCa({ trustDomain: td, now });
    const i = createIntermediateCa({ root: r, trustDomain: td, cluster: 'c', validityDays: 2, now });
    const dates = (pem: string) => {
      const c = new X509Certificate(pem);
      return [new Date(c.validFrom).toISOString(), new Date(c.validTo).toISOString()];
    };
    expect(dates(issueCertificate({ identity: alice, issuer: i, now }).certPem)).toEqual(['2029-12-31T23:59:00.000Z', '2030-01-02T00:00:00.000Z']);
    expect(dates(issueCertificate({ identity: alice, issuer: i, now, ttlSeconds: 600 }).certPem)[1]).toBe('2030-01-01T00:10:00.000Z');
    expect(dates(issueCertificate({ identity: alice, issuer: i, now, ttlSeconds: 10 * 86_400 }).certPem)[1]).toBe('2030-01-03T00:00:00.000Z');
  });

  test('signs the caller identity, not a URI SAN or subject the CSR asks for', () => {
    const csrPem = opensslCsr(['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048'], ['-addext', 'subjectAltName=URI:spiffe://example.org/ns/kube-system/sa/admin,DNS:evil.example.org']);
    expect(run(['req', '-noout', '-text'], csrPem)).toContain('URI:spiffe://example.org/ns/kube-system/sa/admin');
    const leaf = signWorkloadCsr({ csrPem, identity: alice, issuer: east }).certPem;
    const cert = new X509Certificate(leaf);
    expect(cert.subjectAltName).toBe(`URI:${alice}`);
    expect(cert.subject).toBe('O=example.org');
  });

  test('a CSR for a foreign trust domain is refused, saying which domain this CA serves', () => {
    let error: unknown;
    try {
      signWorkloadCsr({ csrPem: createCsr().csrPem, identity: 'spiffe://other.org/ns/shop/sa/alice', issuer: east });
    } catch (err) {
      error = err;
    }
    expect(isIsthmusError(error, 'ISTHMUS_ERR_TRUST_IDENTITY_DENIED')).toBe(true);
    expect((error as Error).message).toMatch(/foreign trust domain "other.org".*serves "example.org"/);
  });
});

describe('CSR checks', () => {
  let sidecar: { csrPem: string; keyPem: string };
  beforeAll(() => {
    sidecar = createCsr();
  });

  /** Flips one byte of the CSR's DER at `at` (negative counts from the end). */
  function tamper(csrPem: string, at: number): string {
    const der = Buffer.from(csrPem.replace(/-----[A-Z ]+-----|\s/g, ''), 'base64');
    const index = at < 0 ? der.length + at : at;
    der[index] = (der[index] ?? 0) ^ 0x01;
    return `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
  }

  /** The sidecar's CSR with its public key swapped for another: a CSR for a key the sender does not hold. */
  function swappedKey(csrPem: string): string {
    const der = Buffer.from(csrPem.replace(/-----[A-Z ]+-----|\s/g, ''), 'base64');
    const own = createPublicKey(sidecar.keyPem).export({ type: 'spki', format: 'der' });
    const other = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey.export({ type: 'spki', format: 'der' });
    const at = der.indexOf(own);
    expect(at).toBeGreaterThan(0);
    expect(other.length).toBe(own.length);
    other.copy(der, at);
    return `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
  }

  /** The same CSR with its outer length in non-minimal long form (one leading zero byte more): valid BER, not DER. */
  function berLength(csrPem: string): string {
    const der = Buffer.from(csrPem.replace(/-----[A-Z ]+-----|\s/g, ''), 'base64');
    const lengthBytes = (der[1] as number) & 0x7f;
    expect((der[1] as number) & 0x80).toBe(0x80);
    const ber = Buffer.concat([Buffer.from([0x30, 0x80 | (lengthBytes + 1), 0x00]), der.subarray(2)]);
    return `-----BEGIN CERTIFICATE REQUEST-----\n${ber.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
  }

  test.each<[string, () => string, string]>([
    ['a non-DER (BER) encoding', () => berLength(sidecar.csrPem), 'ISTHMUS_ERR_TRUST_CSR_INVALID'],
    ['a flipped signature byte', () => tamper(sidecar.csrPem, -5), 'ISTHMUS_ERR_TRUST_CSR_INVALID'],
    ['a public key the sender does not hold', () => swappedKey(sidecar.csrPem), 'ISTHMUS_ERR_TRUST_CSR_INVALID'],
    ['an RSA 1024 key', () => opensslCsr(['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:1024']), 'ISTHMUS_ERR_TRUST_CSR_INVALID'],
    ['an EC P-521 key', () => opensslCsr(['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-521']), 'ISTHMUS_ERR_TRUST_CSR_INVALID'],
    ['an Ed25519 key', () => opensslCsr(['-algorithm', 'ED25519']), 'ISTHMUS_ERR_TRUST_CSR_INVALID'],
    ['a SHA-1 signature', () => opensslCsr(['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048'], ['-sha1']), 'ISTHMUS_ERR_TRUST_CSR_INVALID'],
    ['a private key instead of a CSR', () => sidecar.keyPem, 'ISTHMUS_ERR_TRUST_CSR_INVALID'],
    ['a certificate instead of a CSR', () => east.certPem, 'ISTHMUS_ERR_TRUST_CSR_INVALID'],
    ['base64 garbage', () => '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n', 'ISTHMUS_ERR_TRUST_CSR_INVALID'],
    ['no PEM at all', () => 'hello', 'ISTHMUS_ERR_TRUST_CSR_INVALID'],
  ])('refuses a CSR with %s', (_name, make, code) => {
    const csrPem = make();
    expect(codeOf(() => signWorkloadCsr({ csrPem, identity: alice, issuer: east }))).toBe(code);
  });

  test('says why proof of possession failed', () => {
    expect(() => readCsr(swappedKey(sidecar.csrPem))).toThrow(/signature does not verify with the public key it contains/);
  });

  test.each<[string, () => unknown, string]>([
    ['a malformed identity', () => signWorkloadCsr({ csrPem: sidecar.csrPem, identity: 'spiffe://example.org/a//b', issuer: east }), 'ISTHMUS_ERR_TRUST_SPIFFE_INVALID'],
    ['the bare trust domain as identity', () => signWorkloadCsr({ csrPem: sidecar.csrPem, identity: 'spiffe://example.org', issuer: east }), 'ISTHMUS_ERR_TRUST_IDENTITY_DENIED'],
    ['a leaf as issuer', () => signWorkloadCsr({ csrPem: sidecar.csrPem, identity: alice, issuer: issueCertificate({ identity: alice, issuer: east }) }), 'ISTHMUS_ERR_TRUST_CA_MISSING'],
    ['an issuer whose CA has expired', () => signWorkloadCsr({ csrPem: sidecar.csrPem, identity: alice, issuer: east, now: new Date('2099-01-01T00:00:00Z') }), 'ISTHMUS_ERR_TRUST_CERT_EXPIRED'],
    ['a negative TTL', () => signWorkloadCsr({ csrPem: sidecar.csrPem, identity: alice, issuer: east, ttlSeconds: -1 }), 'ISTHMUS_ERR_CONFIG_INVALID'],
    ['a DNS name with upper case', () => signWorkloadCsr({ csrPem: sidecar.csrPem, identity: alice, issuer: east, dnsNames: ['Evil.com'] }), 'ISTHMUS_ERR_TRUST_CERT_INVALID'],
  ])('refuses %s', (_name, call, code) => {
    expect(codeOf(call)).toBe(code);
  });

  test('createCsr makes a CSR openssl verifies, with no subject and no attributes, for a new ECDSA P-256 key', () => {
    const out = run(['req', '-verify', '-noout', '-text'], sidecar.csrPem);
    expect(out).toMatch(/Public Key Algorithm: id-ecPublicKey[\s\S]*NIST CURVE: P-256/);
    expect(out).toMatch(/Subject:\s*\n/);
    expect(out).toMatch(/Attributes:\s*\n\s*\(none\)/);
    expect(out).not.toContain('URI:');
  });

  test('createCsr reuses a given key, so a renewal keeps the key', () => {
    const again = createCsr({ keyPem: sidecar.keyPem });
    expect(again.keyPem).toBe(sidecar.keyPem);
    const spki = (pem: string) => readCsr(pem).export({ type: 'spki', format: 'der' });
    expect(spki(again.csrPem).equals(spki(sidecar.csrPem))).toBe(true);
    expect(codeOf(() => createCsr({ keyPem: 'not a key' }))).toBe('ISTHMUS_ERR_TRUST_CSR_INVALID');
  });

  test('createCsr works with an EC key too', () => {
    const keyPem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    const { csrPem } = createCsr({ keyPem });
    expect(() => run(['req', '-verify', '-noout'], csrPem)).not.toThrow();
    expect(readCsr(csrPem).asymmetricKeyType).toBe('ec');
  });

  test('reads a CSR file from disk as written by openssl', () => {
    const path = join(dir, 'disk.csr');
    writeFileSync(path, opensslCsr(['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048']));
    expect(readCsr(readFileSync(path, 'utf8')).asymmetricKeyDetails?.modulusLength).toBe(2048);
  });
});
