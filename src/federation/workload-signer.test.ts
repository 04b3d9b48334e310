import { X509Certificate } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { isIsthmusError } from '../core/errors.js';
import { createCsr, createIntermediateCa, createRootCa, issueCertificate } from '../trust/ca.js';
import { clusterRoleId } from '../trust/spiffe.js';
import { verifyChain } from '../trust/verify.js';
import { WorkloadSigner } from './workload-signer.js';

// Who gets which identity: always decided by how the caller authenticated, never by the request.
const root = createRootCa({ trustDomain: 'mesh.test' });
const east = createIntermediateCa({ root, trustDomain: 'mesh.test', cluster: 'east' });
const west = createIntermediateCa({ root, trustDomain: 'mesh.test', cluster: 'west' });

function signer(): WorkloadSigner {
  return new WorkloadSigner({
    issuer: east, issuerChain: [east.certPem], trustDomain: 'mesh.test', cluster: 'east', ttlSeconds: 3600,
    tokens: () => [], trustBundle: () => [root.certPem],
    // Stands for the API server's TokenReview: the token is the account's name.
    reviewToken: async (token) => {
      const [namespace = '', serviceAccount = ''] = token.split('/');
      return { namespace, serviceAccount };
    },
    gatewayServiceAccount: 'isthmus-system/isthmus-gateway',
  });
}

describe('identities a signer on the kubernetes platform gives', () => {
  test.each([
    ['demo/ledger', 'spiffe://mesh.test/ns/demo/sa/ledger'],
    ['isthmus-system/isthmus-gateway', 'spiffe://mesh.test/cluster/east/gateway'],
    ['isthmus-system/other', 'spiffe://mesh.test/ns/isthmus-system/sa/other'],
  ])('a reviewed token of %s gets %s', async (account, identity) => {
    expect((await signer().sign(createCsr().csrPem, { bearerToken: account })).identity).toBe(identity);
  });

  test('east\'s gateway renews with its certificate; west\'s gateway certificate buys nothing here', async () => {
    const ours = issueCertificate({ identity: clusterRoleId('mesh.test', 'east', 'gateway'), issuer: east });
    expect((await signer().sign(createCsr().csrPem, { peerChainPem: [ours.certPem, east.certPem] })).identity).toBe('spiffe://mesh.test/cluster/east/gateway');
    const theirs = issueCertificate({ identity: clusterRoleId('mesh.test', 'west', 'gateway'), issuer: west });
    await expect(signer().sign(createCsr().csrPem, { peerChainPem: [theirs.certPem, west.certPem] })).rejects.toSatisfy((err) => isIsthmusError(err, 'ISTHMUS_ERR_TRUST_IDENTITY_DENIED'));
    const federation = issueCertificate({ identity: clusterRoleId('mesh.test', 'east', 'federation'), issuer: east });
    await expect(signer().sign(createCsr().csrPem, { peerChainPem: [federation.certPem, east.certPem] })).rejects.toSatisfy((err) => isIsthmusError(err, 'ISTHMUS_ERR_TRUST_IDENTITY_DENIED'));
  });
});

describe('a new intermediate (ca rotate-intermediate)', () => {
  test('after setIssuer every leaf is signed by it and chains to the new root; a renewal names the serial it replaces', async () => {
    const newRoot = createRootCa({ trustDomain: 'mesh.test' });
    const eastNew = createIntermediateCa({ root: newRoot, trustDomain: 'mesh.test', cluster: 'east' });
    const signed: { serial: string; replaces: string | undefined }[] = [];
    const rotating = new WorkloadSigner({
      issuer: east, issuerChain: [east.certPem], trustDomain: 'mesh.test', cluster: 'east', ttlSeconds: 3600,
      tokens: () => [], trustBundle: () => [root.certPem, newRoot.certPem],
      reviewToken: async () => ({ namespace: 'demo', serviceAccount: 'ledger' }),
      onSigned: (leaf, replaces) => signed.push({ serial: leaf.serial, replaces }),
    });
    const first = await rotating.sign(createCsr().csrPem, { bearerToken: 'demo/ledger' });
    expect(new X509Certificate(first.certificate).checkIssued(new X509Certificate(east.certPem))).toBe(true);
    rotating.setIssuer(eastNew, [eastNew.certPem]);
    const firstKey = createCsr();
    const renewed = await rotating.sign(firstKey.csrPem, { peerChainPem: [first.certificate, ...first.chain] });
    expect(renewed.chain).toEqual([eastNew.certPem]);
    expect(new X509Certificate(renewed.certificate).verify(new X509Certificate(eastNew.certPem).publicKey)).toBe(true);
    expect(verifyChain({ leafPem: renewed.certificate, intermediatesPem: renewed.chain, rootsPem: [newRoot.certPem] }).identity).toBe('spiffe://mesh.test/ns/demo/sa/ledger');
    expect(signed).toEqual([
      { serial: new X509Certificate(first.certificate).serialNumber, replaces: undefined },
      { serial: new X509Certificate(renewed.certificate).serialNumber, replaces: new X509Certificate(first.certificate).serialNumber },
    ]);
  });
});
