import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { silentLogger } from '../core/log.js';
import { createIntermediateCa, createRootCa, type CertAndKey } from '../trust/ca.js';
import { replaceClusterCa, writeClusterCa } from '../trust/ca-files.js';
import { isSignedBy } from '../trust/verify.js';
import { ClusterIssuer, type IssuerState } from './cluster-issuer.js';

const dir = mkdtempSync(join(tmpdir(), 'isthmus-issuer-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const files = (intermediate: CertAndKey, root: CertAndKey) => ({ caCert: intermediate.certPem, caKey: intermediate.keyPem, rootCert: root.certPem, certChain: `${intermediate.certPem.trim()}\n${root.certPem.trim()}\n` });

describe('ClusterIssuer: a new intermediate taken in place', () => {
  test('the etcd record names it; it is used once the CA directory holds it, and the one before stays accepted', () => {
    const oldRoot = createRootCa({ trustDomain: 'mesh.test' });
    const newRoot = createRootCa({ trustDomain: 'mesh.test' });
    const before = createIntermediateCa({ root: oldRoot, trustDomain: 'mesh.test', cluster: 'east' });
    const after = createIntermediateCa({ root: newRoot, trustDomain: 'mesh.test', cluster: 'east' });
    const caDir = join(dir, 'east');
    writeClusterCa(caDir, files(before, oldRoot));
    const issuer = new ClusterIssuer({ caDir, trustDomain: 'mesh.test', cluster: 'east', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], logger: silentLogger });
    const changes: IssuerState[] = [];
    issuer.onChange((state) => changes.push(state));
    const servingBefore = issuer.current.serving.certPem;

    // The record it already uses, or none: nothing to do.
    expect(issuer.reconcile(before.certPem, 0)).toBe(false);
    expect(issuer.reconcile(undefined, 0)).toBe(false);
    // The record moved first (a Secret not updated yet): the directory is read, refused, and not read again for 2 s.
    expect(issuer.reconcile(after.certPem, 1000)).toBe(false);
    replaceClusterCa(caDir, files(after, newRoot));
    expect(issuer.reconcile(after.certPem, 2000)).toBe(false);
    expect(issuer.reconcile(after.certPem, 3000)).toBe(true);

    expect(changes).toHaveLength(1);
    expect(issuer.current.ca.certPem).toBe(after.certPem);
    expect(issuer.current.rootFingerprint256).toBe(new X509Certificate(newRoot.certPem).fingerprint256);
    expect(issuer.current.serving.certPem).not.toBe(servingBefore);
    expect(isSignedBy(new X509Certificate(issuer.current.serving.certPem), new X509Certificate(after.certPem))).toBe(true);
    expect(issuer.intermediates()).toHaveLength(2);
    expect(issuer.intermediates()[0]).toBe(after.certPem);
    expect(new X509Certificate(issuer.intermediates()[1]!).fingerprint256).toBe(new X509Certificate(before.certPem).fingerprint256);
    // The one before is dropped from the accepted list once it has expired.
    expect(issuer.intermediates(Date.parse(new X509Certificate(before.certPem).validTo) + 1)).toEqual([after.certPem]);
    expect(issuer.reconcile(after.certPem, 10_000)).toBe(false);
  });

  test('the API\'s serving certificate is renewed at half its life from the CA in use, and listeners get it', () => {
    const root = createRootCa({ trustDomain: 'mesh.test' });
    const east = createIntermediateCa({ root, trustDomain: 'mesh.test', cluster: 'east' });
    const caDir = join(dir, 'serving');
    writeClusterCa(caDir, files(east, root));
    const issuer = new ClusterIssuer({ caDir, trustDomain: 'mesh.test', cluster: 'east', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], logger: silentLogger });
    const changes: IssuerState[] = [];
    issuer.onChange((state) => changes.push(state));
    const first = new X509Certificate(issuer.current.serving.certPem);
    const half = Date.parse(first.validFrom) + (Date.parse(first.validTo) - Date.parse(first.validFrom)) / 2;
    expect(issuer.renewServingIfDue(half - 60_000)).toBe(false);
    expect(changes).toHaveLength(0);
    expect(issuer.renewServingIfDue(half + 60_000)).toBe(true);
    expect(changes).toHaveLength(1);
    const renewed = new X509Certificate(issuer.current.serving.certPem);
    expect(renewed.serialNumber).not.toBe(first.serialNumber);
    expect(isSignedBy(renewed, new X509Certificate(east.certPem))).toBe(true);
    expect(renewed.subjectAltName).toBe(first.subjectAltName);
    expect(issuer.current.servingNotAfter.getTime()).toBe(Date.parse(renewed.validTo));
    expect(issuer.current.ca.certPem).toBe(east.certPem);
  });

  test('a directory holding another cluster\'s CA is never taken, whatever the record says', () => {
    const root = createRootCa({ trustDomain: 'mesh.test' });
    const east = createIntermediateCa({ root, trustDomain: 'mesh.test', cluster: 'east' });
    const west = createIntermediateCa({ root, trustDomain: 'mesh.test', cluster: 'west' });
    const caDir = join(dir, 'mixed');
    writeClusterCa(caDir, files(east, root));
    const issuer = new ClusterIssuer({ caDir, trustDomain: 'mesh.test', cluster: 'east', dnsNames: [], ipAddresses: ['127.0.0.1'], logger: silentLogger });
    replaceClusterCa(caDir, files(west, root));
    expect(issuer.reconcile(west.certPem, 0)).toBe(false);
    expect(issuer.current.ca.certPem).toBe(east.certPem);
  });
});
