import { describe, expect, test } from 'vitest';
import { isIsthmusError } from '../core/errors.js';
import { createCsr, createIntermediateCa, createRootCa, issueCertificate } from '../trust/ca.js';
import { clusterRoleId } from '../trust/spiffe.js';
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
