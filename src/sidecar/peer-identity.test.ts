import { createPrivateKey, createPublicKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { createServer, connect, type TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { beforeAll, describe, expect, test } from 'vitest';
import { createIntermediateCa, createRootCa, issueCertificate, type CertAndKey } from '../trust/ca.js';
import { buildCertificate, issuerFromCertificate } from '../trust/certificate-builder.js';
import { opensslIssue, opensslRoot } from '../../test/helpers/openssl-certs.js';
import { IssuingClusters } from './authz-layer.js';
import { checkDestination, peerIdentity } from './peer-identity.js';

/**
 * The check a sidecar runs on the destination of every mTLS connection, over real handshakes:
 * Node verifies the chain against every root of the mesh bundle, and peer-identity.ts decides
 * whether that root may vouch for the identity the leaf claims.
 */
const admin = 'spiffe://example.org/ns/demo/sa/admin';
let root: CertAndKey;
let east: CertAndKey;

beforeAll(() => {
  root = createRootCa({ trustDomain: 'example.org' });
  east = createIntermediateCa({ root, trustDomain: 'example.org', cluster: 'east' });
});

/** Connects to a TLS server presenting `chainPem`, trusting `roots`, checking the destination may be `allowed`; resolves the error or 'ok'. */
async function dial(server: { certPem: string; keyPem: string; chainPem: string }, roots: string[], allowed: string[]): Promise<string> {
  const tlsServer = createServer({ cert: server.certPem + server.chainPem, key: server.keyPem }, (socket) => socket.end());
  await new Promise<void>((resolve) => tlsServer.listen(0, '127.0.0.1', resolve));
  const { port } = tlsServer.address() as AddressInfo;
  try {
    return await new Promise<string>((resolve) => {
      const socket: TLSSocket = connect({ host: '127.0.0.1', port, servername: 'admin.demo.mesh', ca: roots, checkServerIdentity: checkDestination(allowed) });
      socket.once('secureConnect', () => { socket.destroy(); resolve('ok'); });
      socket.once('error', (err) => resolve(`${(err as { code?: string }).code}: ${err.message}`));
    });
  } finally {
    await new Promise((resolve) => tlsServer.close(resolve));
  }
}

describe('a destination\'s identity over a real handshake', () => {
  test('a genuine leaf of the mesh passes', async () => {
    const leaf = issueCertificate({ identity: admin, issuer: east });
    expect(await dial({ ...leaf, chainPem: east.certPem }, [root.certPem], [admin])).toBe('ok');
  });

  test.each([
    ['no URI SAN', undefined],
    ['two trust-domain SANs', 'URI:spiffe://example.org,URI:spiffe://other.org'],
  ])('a leaf for %s\'s root claiming a mesh identity is refused, though the bundle trusts that root', async (_what, san) => {
    // The attack: a root without a trust-domain SAN slipped into the bundle mints spiffe://example.org/... identities.
    const rogue = opensslRoot('/O=rogue/CN=rogue root', san);
    const forged = opensslIssue(rogue, '/O=rogue', `basicConstraints=critical,CA:FALSE\nsubjectAltName=URI:${admin}`);
    const outcome = await dial({ ...forged, chainPem: '' }, [root.certPem, rogue.certPem], [admin]);
    expect(outcome).toMatch(/^ISTHMUS_ERR_TRUST_IDENTITY_DENIED: spiffe:\/\/example.org\/ns\/demo\/sa\/admin chains to a root that names no single trust domain/);
  });

  test('a leaf of the mesh CA whose extended key usage leaves out serverAuth is refused by the handshake itself', async () => {
    // OpenSSL checks the purpose during the handshake (both ways: a client certificate without
    // clientAuth is refused by a server too), so no identity check runs on such a peer.
    const clientOnly = opensslIssue(east, '/O=example.org', `basicConstraints=critical,CA:FALSE\nextendedKeyUsage=clientAuth\nsubjectAltName=URI:${admin}`);
    expect(await dial({ ...clientOnly, chainPem: east.certPem }, [root.certPem], [admin])).toBe('INVALID_PURPOSE: unsuitable certificate purpose');
  });

  test('a SAN whose value hides ", URI:" is one quoted name, not a second identity', async () => {
    const rogueValue = `spiffe://example.org/ns/demo/sa/guest, URI:${admin}`;
    // openssl's config syntax would split the value at the comma; our builder writes it as one URI.
    const eastKey = createPrivateKey(east.keyPem);
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const certPem = buildCertificate({
      profile: 'leaf', subject: [{ oid: '2.5.4.10', value: 'example.org' }], publicKey,
      issuer: issuerFromCertificate(new X509Certificate(east.certPem).raw, eastKey, createPublicKey(eastKey)),
      notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 3_600_000), uris: [rogueValue],
    });
    const crafted = { certPem, keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string };
    const outcome = await dial({ ...crafted, chainPem: east.certPem }, [root.certPem], [admin]);
    expect(outcome).toBe(`ISTHMUS_ERR_TRUST_IDENTITY_DENIED: peer certificate names ${JSON.stringify(rogueValue)}, which is not a valid SPIFFE ID`);
  });
});

describe('a caller\'s identity on a resumed TLS session (as the inbound checks it)', () => {
  test('the resumed session carries the leaf without its chain, and the identity still holds; its issuing cluster is remembered from the full handshake', async () => {
    const server = issueCertificate({ identity: 'spiffe://example.org/ns/demo/sa/ledger', issuer: east });
    const caller = issueCertificate({ identity: admin, issuer: east });
    const clusters = new IssuingClusters();
    const tlsServer = createServer({ cert: server.certPem + east.certPem, key: server.keyPem, ca: root.certPem, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' }, (socket) => {
      const cert = socket.getPeerCertificate(true);
      const peer = peerIdentity(cert);
      const facts = 'error' in peer ? undefined : clusters.facts(cert, peer);
      socket.end(JSON.stringify({ resumed: socket.isSessionReused(), peer, facts }));
    });
    await new Promise<void>((resolve) => tlsServer.listen(0, '127.0.0.1', resolve));
    const { port } = tlsServer.address() as AddressInfo;
    const ask = (session?: Buffer) => new Promise<{ answer: { resumed: boolean; peer: unknown; facts: unknown }; session?: Buffer }>((resolve, reject) => {
      let got: Buffer | undefined;
      const socket = connect({ host: '127.0.0.1', port, ca: root.certPem, cert: caller.certPem + east.certPem, key: caller.keyPem, checkServerIdentity: () => undefined, ...(session ? { session } : {}) });
      let text = '';
      socket.on('session', (s: Buffer) => { got = s; });
      socket.on('data', (c: Buffer) => { text += c.toString(); });
      socket.on('end', () => resolve({ answer: JSON.parse(text), ...(got ? { session: got } : {}) }));
      socket.on('error', reject);
    });
    try {
      const first = await ask();
      expect(first.answer).toEqual({ resumed: false, peer: { identity: admin, cluster: 'east' }, facts: { identity: admin, cluster: 'east' } });
      const second = await ask(first.session);
      expect(second.answer).toEqual({ resumed: true, peer: { identity: admin }, facts: { identity: admin, cluster: 'east' } });
    } finally {
      await new Promise((resolve) => tlsServer.close(resolve));
    }
  });
});
