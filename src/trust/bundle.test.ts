import { X509Certificate } from 'node:crypto';
import { beforeAll, describe, expect, test } from 'vitest';
import { isIsthmusError } from '../core/errors.js';
import { addRoot, meshRoots, newBundle, removeRoot, validateBundle, type TrustBundle } from './bundle.js';
import { createIntermediateCa, createRootCa, issueCertificate, type CertAndKey } from './ca.js';
import { failure } from '../../test/helpers/failure.js';
import { opensslRoot } from '../../test/helpers/openssl-certs.js';

let root: CertAndKey;
let nextRoot: CertAndKey;
let otherRoot: CertAndKey;
let east: CertAndKey;
let leaf: CertAndKey;

const fingerprint = (pem: string) => new X509Certificate(pem).fingerprint256;


beforeAll(() => {
  root = createRootCa({ trustDomain: 'example.org' });
  nextRoot = createRootCa({ trustDomain: 'example.org' });
  otherRoot = createRootCa({ trustDomain: 'other.org' });
  east = createIntermediateCa({ root, trustDomain: 'example.org', cluster: 'east' });
  leaf = issueCertificate({ identity: 'spiffe://example.org/ns/a/sa/b', issuer: east });
});

describe('building bundles', () => {
  test('newBundle holds one canonical root and is frozen', () => {
    const bundle = newBundle('example.org', `\n\n${root.certPem.replace(/\n/g, '\r\n')}`);
    expect(bundle).toEqual({ version: 1, trustDomain: 'example.org', roots: [new X509Certificate(root.certPem).toString()] });
    expect(Object.isFrozen(bundle)).toBe(true);
    expect(Object.isFrozen(bundle.roots)).toBe(true);
  });

  test('a rotation: add the new root, adding it again changes nothing, then remove the old one', () => {
    const start = newBundle('example.org', root.certPem);
    const both = addRoot(start, nextRoot.certPem);
    expect(both.roots.map(fingerprint)).toEqual([fingerprint(root.certPem), fingerprint(nextRoot.certPem)]);
    expect(start.roots).toHaveLength(1);
    expect(addRoot(both, nextRoot.certPem)).toBe(both);
    expect(addRoot(both, root.certPem)).toBe(both);

    const oldFingerprint = fingerprint(root.certPem);
    const done = removeRoot(both, oldFingerprint);
    expect(done.roots.map(fingerprint)).toEqual([fingerprint(nextRoot.certPem)]);
    expect(removeRoot(both, oldFingerprint.replace(/:/g, '').toLowerCase())).toEqual(done);
    expect(removeRoot(done, oldFingerprint)).toBe(done);
  });

  test('refuses to remove the last root', () => {
    const result = failure(() => removeRoot(newBundle('example.org', root.certPem), fingerprint(root.certPem)));
    expect(result.code).toBe('ISTHMUS_ERR_TRUST_CERT_INVALID');
    expect(result.message).toMatch(/only root.*Add the new root first/);
  });

  test.each<[string, () => unknown, RegExp]>([
    ['an intermediate as root', () => newBundle('example.org', east.certPem), /not self-signed/],
    ['a leaf as root', () => newBundle('example.org', leaf.certPem), /not a CA certificate/],
    ['the root of another trust domain', () => addRoot(newBundle('example.org', root.certPem), otherRoot.certPem), /spiffe:\/\/other.org, not of trust domain "example.org"/],
    ['a certificate with its key', () => newBundle('example.org', root.certPem + root.keyPem), /private key/],
    ['two roots in one entry', () => newBundle('example.org', root.certPem + nextRoot.certPem), /holds 2 certificates/],
    ['a bad trust domain', () => newBundle('Example.org', root.certPem), /lower-case DNS name/],
    ['a root with no URI SAN', () => newBundle('example.org', opensslRoot('/O=example.org/CN=plain root', undefined).certPem), /carries no URI SAN; a root enters the bundle of "example.org" only with exactly one, spiffe:\/\/example.org/],
    ['a root with a DNS name only', () => newBundle('example.org', opensslRoot('/O=example.org/CN=dns root', 'DNS:ca.example.org').certPem), /carries no URI SAN/],
    ['a root naming two trust domains', () => newBundle('example.org', opensslRoot('/O=example.org/CN=two', 'URI:spiffe://example.org,URI:spiffe://other.org').certPem), /carries the URI SANs spiffe:\/\/example.org, spiffe:\/\/other.org/],
    ['a root whose SAN is a workload, not the trust domain', () => newBundle('example.org', opensslRoot('/O=example.org/CN=wl', 'URI:spiffe://example.org/ns/demo/sa/admin').certPem), /carries the URI SANs spiffe:\/\/example.org\/ns\/demo\/sa\/admin/],
  ])('refuses %s', (_name, call, message) => {
    const result = failure(call);
    expect(result.code).toMatch(/^ISTHMUS_ERR_TRUST_(CERT|SPIFFE)_INVALID$/);
    expect(result.message).toMatch(message);
  });
});

describe('validateBundle', () => {
  test('accepts a bundle and returns a frozen, canonical copy', () => {
    const input = { version: 1, trustDomain: 'example.org', roots: [root.certPem, nextRoot.certPem] };
    const bundle = validateBundle(JSON.parse(JSON.stringify(input)));
    expect(bundle.roots.map(fingerprint)).toEqual(input.roots.map(fingerprint));
    expect(Object.isFrozen(bundle)).toBe(true);
  });

  const good = () => ({ version: 1, trustDomain: 'example.org', roots: [root.certPem] });
  test.each<[string, () => unknown, string | undefined, RegExp]>([
    ['null', () => null, undefined, /must be a JSON object/],
    ['an array', () => [root.certPem], undefined, /must be a JSON object/],
    ['version 2', () => ({ ...good(), version: 2 }), 'version', /version 2 is not supported/],
    ['a missing version', () => ({ trustDomain: 'example.org', roots: [root.certPem] }), 'version', /version undefined/],
    ['an unknown field', () => ({ ...good(), rootKey: 'x' }), 'rootKey', /"rootKey" is not known/],
    ['a bad trust domain', () => ({ ...good(), trustDomain: 'Example.org' }), 'trustDomain', /trustDomain/],
    ['no roots', () => ({ ...good(), roots: [] }), 'roots', /non-empty list/],
    ['roots that are not strings', () => ({ ...good(), roots: [42] }), 'roots', /non-empty list/],
    ['a root that is not a certificate', () => ({ ...good(), roots: ['hello'] }), 'roots[0]', /roots\[0\] is not a certificate/],
    ['an intermediate as second root', () => ({ ...good(), roots: [root.certPem, east.certPem] }), 'roots[1]', /roots\[1\].*not self-signed/],
    ['a leaf as root', () => ({ ...good(), roots: [leaf.certPem] }), 'roots[0]', /not a CA certificate/],
    ['a root of another trust domain', () => ({ ...good(), roots: [otherRoot.certPem] }), 'roots[0]', /other.org/],
    ['the same root twice', () => ({ ...good(), roots: [root.certPem, root.certPem] }), 'roots', /same root twice/],
    ['a private key in a root', () => ({ ...good(), roots: [root.certPem + root.keyPem] }), undefined, /private key/],
    ['a private key in any field', () => ({ ...good(), note: root.keyPem }), undefined, /private key/],
  ])('refuses %s', (_name, value, field, message) => {
    let error: unknown;
    try {
      validateBundle(value());
    } catch (err) {
      error = err;
    }
    expect(isIsthmusError(error, 'ISTHMUS_ERR_TRUST_CERT_INVALID')).toBe(true);
    expect((error as Error).message).toMatch(message);
    expect((error as { details?: { field?: string } }).details?.field).toBe(field);
  });
});

describe('meshRoots', () => {
  test('lists every root of every trust domain once, in order', () => {
    const example: TrustBundle = addRoot(newBundle('example.org', root.certPem), nextRoot.certPem);
    const other = newBundle('other.org', otherRoot.certPem);
    const copy: TrustBundle = { version: 1, trustDomain: 'example.org', roots: [root.certPem] };
    const roots = meshRoots([example, other, copy]);
    expect(roots.map(fingerprint)).toEqual([root, nextRoot, otherRoot].map((ca) => fingerprint(ca.certPem)));
    expect(meshRoots([])).toEqual([]);
  });
});
