import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createIntermediateCa, createRootCa, type CertAndKey } from './ca.js';
import { readClusterCa, readRootCa, writeClusterCa, writeRootCa } from './ca-files.js';
import { failure } from '../../test/helpers/failure.js';

let base: string;
let root: CertAndKey;
let otherRoot: CertAndKey;
let east: CertAndKey;
let counter = 0;

const fresh = () => join(base, `case-${++counter}`);
const mode = (path: string) => statSync(path).mode & 0o777;


function clusterFiles(intermediate: CertAndKey = east, rootCa: CertAndKey = root) {
  return { caCert: intermediate.certPem, caKey: intermediate.keyPem, rootCert: rootCa.certPem, certChain: intermediate.certPem + rootCa.certPem };
}

beforeAll(() => {
  base = mkdtempSync(join(tmpdir(), 'isthmus-ca-files-test-'));
  root = createRootCa({ trustDomain: 'example.org' });
  otherRoot = createRootCa({ trustDomain: 'other.org' });
  east = createIntermediateCa({ root, trustDomain: 'example.org', cluster: 'east' });
});

afterAll(() => rmSync(base, { recursive: true, force: true }));

describe('root CA directory', () => {
  test('writes the key 0600 and the certificate 0644 in a new 0700 directory, and reads them back', () => {
    const dir = join(fresh(), 'nested');
    writeRootCa(dir, root);
    expect(mode(dir)).toBe(0o700);
    expect(mode(join(dir, 'root-key.pem'))).toBe(0o600);
    // 0644 less the umask: readable, never writable or executable by anyone but the owner.
    expect(mode(join(dir, 'root-cert.pem')) & 0o600).toBe(0o600);
    expect(mode(join(dir, 'root-cert.pem')) & 0o133).toBe(0);
    expect(readRootCa(dir)).toEqual({ ...root, trustDomain: 'example.org' });
  });

  test('writes into an existing empty directory', () => {
    const dir = fresh();
    mkdirSync(dir);
    writeRootCa(dir, root);
    expect(readRootCa(dir).trustDomain).toBe('example.org');
  });

  test.each([['root-cert.pem'], ['root-key.pem']])('refuses to overwrite when %s exists, and leaves it untouched', (name) => {
    const dir = fresh();
    mkdirSync(dir);
    writeFileSync(join(dir, name), 'precious');
    const result = failure(() => writeRootCa(dir, root));
    expect(result.code).toBe('ISTHMUS_ERR_TRUST_CA_EXISTS');
    expect(result.message).toContain(name);
    expect(result.message).toMatch(/another --out directory.*remove/);
    expect(readFileSync(join(dir, name), 'utf8')).toBe('precious');
    const other = name === 'root-key.pem' ? 'root-cert.pem' : 'root-key.pem';
    expect(failure(() => statSync(join(dir, other))).message).toMatch(/ENOENT/);
  });

  test('refuses to write a key that does not belong to the certificate', () => {
    expect(failure(() => writeRootCa(fresh(), { certPem: root.certPem, keyPem: otherRoot.keyPem })).code).toBe('ISTHMUS_ERR_TRUST_CA_MISSING');
  });

  const broken: [string, (dir: string) => void, RegExp][] = [
    ['no directory at all', (dir) => rmSync(dir, { recursive: true }), /There is no CA directory .* \(looked for root-cert.pem\)/],
    ['a missing key', (dir) => unlinkSync(join(dir, 'root-key.pem')), /root-key.pem does not exist/],
    ['a missing certificate', (dir) => unlinkSync(join(dir, 'root-cert.pem')), /root-cert.pem does not exist/],
    ['a key of another CA', (dir) => writeFileSync(join(dir, 'root-key.pem'), otherRoot.keyPem), /root-key.pem does not belong to .*root-cert.pem/],
    ['a key that is not PEM', (dir) => writeFileSync(join(dir, 'root-key.pem'), 'garbage'), /root-key.pem is not a readable PEM private key/],
    ['a certificate that is not a root', (dir) => writeFileSync(join(dir, 'root-cert.pem'), east.certPem), /root-cert.pem is not a self-signed root CA/],
    ['a damaged certificate', (dir) => writeFileSync(join(dir, 'root-cert.pem'), 'garbage'), /root-cert.pem is not usable/],
    ['a directory as key file', (dir) => { unlinkSync(join(dir, 'root-key.pem')); mkdirSync(join(dir, 'root-key.pem')); }, /root-key.pem could not be read \(EISDIR\)/],
  ];

  test.each(broken)('readRootCa names the problem with %s and says what to run', (_name, breakIt, message) => {
    const dir = fresh();
    writeRootCa(dir, root);
    breakIt(dir);
    const result = failure(() => readRootCa(dir));
    expect(result.code).toBe('ISTHMUS_ERR_TRUST_CA_MISSING');
    expect(result.message).toMatch(message);
    expect(result.message).toContain(`isthmus ca init --trust-domain <td> --out ${dir}`);
  });
});

describe('cluster CA directory', () => {
  test('writes the four files, the key 0600, and reads back trust domain and cluster', () => {
    const dir = fresh();
    writeClusterCa(dir, clusterFiles());
    expect(mode(join(dir, 'ca-key.pem'))).toBe(0o600);
    for (const name of ['ca-cert.pem', 'root-cert.pem', 'cert-chain.pem']) {
      expect(mode(join(dir, name)) & 0o600).toBe(0o600);
      expect(mode(join(dir, name)) & 0o133).toBe(0);
    }
    expect(readClusterCa(dir)).toEqual({ ca: east, rootCert: root.certPem, certChain: east.certPem + root.certPem, trustDomain: 'example.org', cluster: 'east' });
  });

  test('refuses to overwrite an existing cluster CA', () => {
    const dir = fresh();
    writeClusterCa(dir, clusterFiles());
    const result = failure(() => writeClusterCa(dir, clusterFiles()));
    expect(result.code).toBe('ISTHMUS_ERR_TRUST_CA_EXISTS');
    expect(result.message).toMatch(/ca-key.pem, ca-cert.pem, root-cert.pem, cert-chain.pem/);
  });

  const broken: [string, (dir: string) => void, RegExp][] = [
    ['a missing chain', (dir) => unlinkSync(join(dir, 'cert-chain.pem')), /cert-chain.pem does not exist/],
    ['a missing key', (dir) => unlinkSync(join(dir, 'ca-key.pem')), /ca-key.pem does not exist/],
    ['a chain in the wrong order', (dir) => writeFileSync(join(dir, 'cert-chain.pem'), root.certPem + east.certPem), /cert-chain.pem must hold ca-cert.pem first and root-cert.pem last/],
    ['a root from another CA', (dir) => writeFileSync(join(dir, 'root-cert.pem'), otherRoot.certPem), /ca-cert.pem was not signed by .*root-cert.pem/],
    ['the root key in place of the CA key', (dir) => writeFileSync(join(dir, 'ca-key.pem'), root.keyPem), /ca-key.pem does not belong to .*ca-cert.pem/],
    ['a root certificate as ca-cert.pem', (dir) => writeFileSync(join(dir, 'ca-cert.pem'), root.certPem), /does not belong|cluster\/<cluster>\/ca/],
  ];

  test.each(broken)('readClusterCa names the problem with %s', (_name, breakIt, message) => {
    const dir = fresh();
    writeClusterCa(dir, clusterFiles());
    breakIt(dir);
    const result = failure(() => readClusterCa(dir));
    expect(result.code).toBe('ISTHMUS_ERR_TRUST_CA_MISSING');
    expect(result.message).toMatch(message);
    expect(result.message).toContain(`isthmus join <cluster> --ca <root CA dir> --out ${dir}`);
  });
});
