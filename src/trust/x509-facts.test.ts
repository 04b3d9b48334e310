import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { altNamesOf, basicConstraintsOf, describeCertificate, keyUsageOf, notAfterOf, notBeforeOf, spiffeIdsOf } from './x509-facts.js';

let dir: string;

/** A self-signed EC certificate from openssl with the given extension section (fast: no RSA keygen). */
function opensslCert(extensions: string): X509Certificate {
  const config = join(dir, `${Math.random().toString(36).slice(2)}.cnf`);
  writeFileSync(config, `[req]\ndistinguished_name = dn\n[dn]\n[ext]\n${extensions}\n`);
  const pem = execFileSync(
    '/usr/bin/openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'key.pem'), '-subj', '/O=example.org/CN=facts', '-days', '1', '-config', config, '-extensions', 'ext'],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
  );
  return new X509Certificate(pem);
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'isthmus-facts-test-'));
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('basicConstraintsOf', () => {
  test.each([
    ['CA with pathlen 0', 'basicConstraints=critical,CA:TRUE,pathlen:0', { ca: true, pathLen: 0 }],
    ['CA with pathlen 3', 'basicConstraints=critical,CA:TRUE,pathlen:3', { ca: true, pathLen: 3 }],
    ['CA without pathlen', 'basicConstraints=critical,CA:TRUE', { ca: true }],
    ['leaf', 'basicConstraints=critical,CA:FALSE', { ca: false }],
    ['no extension', 'keyUsage=digitalSignature', undefined],
  ])('%s', (_name, extensions, expected) => {
    expect(basicConstraintsOf(opensslCert(`${extensions}\nsubjectKeyIdentifier=hash`))).toEqual(expected);
  });
});

describe('keyUsageOf', () => {
  test.each([
    ['leaf RSA', 'keyUsage=critical,digitalSignature,keyEncipherment', [0, 2]],
    ['CA', 'keyUsage=critical,keyCertSign,cRLSign', [5, 6]],
    ['decipherOnly (bit 8, second byte)', 'keyUsage=keyAgreement,decipherOnly', [4, 8]],
    ['no extension', 'basicConstraints=CA:FALSE', undefined],
  ])('%s', (_name, extensions, expected) => {
    const bits = keyUsageOf(opensslCert(extensions));
    expect(bits === undefined ? undefined : [...bits].sort((a, b) => a - b)).toEqual(expected);
  });
});

describe('altNamesOf and spiffeIdsOf', () => {
  test('split every kind of name', () => {
    const cert = opensslCert('subjectAltName=URI:spiffe://example.org/ns/a/sa/b,DNS:a.example.org,IP:10.1.2.3,URI:https://example.org/x,email:a@b.c');
    expect(altNamesOf(cert)).toEqual({ uris: ['spiffe://example.org/ns/a/sa/b', 'https://example.org/x'], dnsNames: ['a.example.org'], ipAddresses: ['10.1.2.3'] });
    expect(spiffeIdsOf(cert)).toEqual(['spiffe://example.org/ns/a/sa/b']);
  });

  test('a URI crafted to look like two names stays one (quoted by Node since CVE-2021-44532)', () => {
    const cert = opensslCert('subjectAltName=@alt\n[alt]\nURI.1 = spiffe://example.org/x, URI:spiffe://evil.org/y\nDNS.1 = a.example.org');
    expect(cert.subjectAltName).toContain('"spiffe://example.org/x');
    expect(altNamesOf(cert)).toEqual({ uris: ['spiffe://example.org/x, URI:spiffe://evil.org/y'], dnsNames: ['a.example.org'], ipAddresses: [] });
    expect(spiffeIdsOf(cert)).toHaveLength(1);
  });

  test('no SAN at all', () => {
    expect(altNamesOf(opensslCert('basicConstraints=CA:FALSE'))).toEqual({ uris: [], dnsNames: [], ipAddresses: [] });
  });
});

describe('dates and descriptions', () => {
  test('notBefore and notAfter are real Dates one day apart', () => {
    const cert = opensslCert('basicConstraints=CA:FALSE\nsubjectAltName=URI:spiffe://example.org/ns/a/sa/b');
    expect(notAfterOf(cert).getTime() - notBeforeOf(cert).getTime()).toBe(86_400_000);
    expect(describeCertificate(cert)).toBe(`spiffe://example.org/ns/a/sa/b (serial ${cert.serialNumber})`);
  });

  test('a certificate without an identity is described by its subject', () => {
    expect(describeCertificate(opensslCert('basicConstraints=CA:FALSE'))).toMatch(/^"O=example.org, CN=facts" \(serial [0-9A-F]+\)$/);
  });
});
