import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { connect, createServer, type PeerCertificate, type Server, type TLSSocket } from 'node:tls';
import { afterEach, beforeAll, describe, expect, test } from 'vitest';
import { createCsr, createIntermediateCa, createRootCa, issueCertificate, signWorkloadCsr, type CertAndKey } from './ca.js';
import { verifyChain } from './verify.js';

/**
 * Certificates are only worth something if a real TLS stack accepts them: two workloads in two
 * clusters (leaves from different intermediates of one root) must complete mutual TLS, and a
 * peer that trusts only another trust domain's root must refuse.
 */

const server = 'spiffe://example.org/cluster/east/gateway';
const client = 'spiffe://example.org/ns/shop/sa/checkout';

let root: CertAndKey;
let east: CertAndKey;
let west: CertAndKey;
let serverCert: CertAndKey;
let clientCert: CertAndKey;
let otherRoot: CertAndKey;
const servers: Server[] = [];

beforeAll(() => {
  root = createRootCa({ trustDomain: 'example.org' });
  east = createIntermediateCa({ root, trustDomain: 'example.org', cluster: 'east' });
  west = createIntermediateCa({ root, trustDomain: 'example.org', cluster: 'west' });
  serverCert = issueCertificate({ identity: server, issuer: east, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  const csr = createCsr();
  clientCert = { certPem: signWorkloadCsr({ csrPem: csr.csrPem, identity: client, issuer: west }).certPem, keyPem: csr.keyPem };
  otherRoot = createRootCa({ trustDomain: 'other.org' });
});

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((resolve) => s.close(resolve))));
});

interface Outcome {
  clientError?: string;
  serverError?: string;
  serverSawPeer?: PeerCertificate;
  clientSawPeer?: PeerCertificate;
  clientReceived?: string;
}

/** One mutual-TLS handshake on 127.0.0.1 port 0; each side trusts the roots it is given. */
async function handshake(serverTrusts: string[], clientTrusts: string[]): Promise<Outcome> {
  const outcome: Outcome = {};
  const tlsServer = createServer({
    key: serverCert.keyPem,
    cert: serverCert.certPem + east.certPem,
    ca: serverTrusts,
    requestCert: true,
    rejectUnauthorized: true,
  });
  servers.push(tlsServer);
  const serverDone = new Promise<void>((resolve) => {
    tlsServer.on('secureConnection', (socket: TLSSocket) => {
      outcome.serverSawPeer = socket.getPeerCertificate(true);
      socket.end('hello');
      resolve();
    });
    tlsServer.on('tlsClientError', (err) => {
      outcome.serverError = (err as NodeJS.ErrnoException).code ?? err.message;
      resolve();
    });
  });
  tlsServer.listen(0, '127.0.0.1');
  await once(tlsServer, 'listening');
  const { port } = tlsServer.address() as AddressInfo;

  const socket = connect({
    host: '127.0.0.1',
    port,
    servername: 'localhost',
    key: clientCert.keyPem,
    cert: clientCert.certPem + west.certPem,
    ca: clientTrusts,
    rejectUnauthorized: true,
  });
  await new Promise<void>((resolve) => {
    socket.on('secureConnect', () => {
      outcome.clientSawPeer = socket.getPeerCertificate(true);
    });
    socket.on('data', (chunk: Buffer) => {
      outcome.clientReceived = (outcome.clientReceived ?? '') + chunk.toString();
      socket.end();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      outcome.clientError ??= err.code ?? err.message;
      resolve();
    });
    socket.on('close', () => resolve());
  });
  // A client that refuses the server may close before the server notices; do not wait forever.
  await Promise.race([serverDone, new Promise((resolve) => setTimeout(resolve, 1000))]);
  return outcome;
}

function chainPem(peer: PeerCertificate): string[] {
  const pems: string[] = [];
  for (let cert: PeerCertificate | undefined = peer; cert && !pems.includes(cert.raw.toString('base64')); cert = (cert as { issuerCertificate?: PeerCertificate }).issuerCertificate) {
    pems.push(cert.raw.toString('base64'));
  }
  return pems.map((b64) => `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`);
}

describe('mutual TLS with Isthmus certificates', () => {
  test('succeeds between leaves of two intermediates of one root, and each side learns the other SPIFFE ID', async () => {
    const outcome = await handshake([root.certPem], [root.certPem]);
    expect(outcome.clientError).toBeUndefined();
    expect(outcome.serverError).toBeUndefined();
    expect(outcome.clientReceived).toBe('hello');
    expect(outcome.serverSawPeer?.subjectaltname).toBe(`URI:${client}`);
    expect(outcome.clientSawPeer?.subjectaltname).toContain(`URI:${server}`);

    const [peerLeaf, ...peerChain] = chainPem(outcome.serverSawPeer as PeerCertificate);
    expect(verifyChain({ leafPem: peerLeaf as string, intermediatesPem: peerChain, rootsPem: [root.certPem] }).identity).toBe(client);
  });

  test('succeeds against a mesh bundle that also holds another trust domain', async () => {
    const outcome = await handshake([otherRoot.certPem, root.certPem], [root.certPem, otherRoot.certPem]);
    expect(outcome.clientError).toBeUndefined();
    expect(outcome.serverError).toBeUndefined();
    expect(outcome.clientReceived).toBe('hello');
  });

  test('fails when the client trusts only the root of another trust domain', async () => {
    const outcome = await handshake([root.certPem], [otherRoot.certPem]);
    expect(outcome.clientError).toBe('UNABLE_TO_GET_ISSUER_CERT_LOCALLY');
    expect(outcome.clientSawPeer).toBeUndefined();
    expect(outcome.serverSawPeer).toBeUndefined();
  });

  test('fails when the server trusts only the root of another trust domain', async () => {
    const outcome = await handshake([otherRoot.certPem], [root.certPem]);
    // With TLS 1.3 the client finishes first; Node's server then checks the client certificate
    // and, with rejectUnauthorized, drops the connection before any application data.
    expect(outcome.serverSawPeer).toBeUndefined();
    expect(outcome.clientReceived).toBeUndefined();
    expect(outcome.serverError).toBeDefined();
  });
});
