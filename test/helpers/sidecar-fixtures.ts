import type { AddressInfo, Server } from 'node:net';
import { createSecureContext, type SecureContext } from 'node:tls';
import type { Catalog } from '../../src/model/catalog.js';
import { RoutingTable } from '../../src/sidecar/routing.js';
import { createIntermediateCa, createRootCa, issueCertificate, type CertAndKey } from '../../src/trust/ca.js';

/**
 * One cluster's worth of real certificates and a routing table, for tests of one sidecar piece
 * on real sockets (no federation, no etcd): a root, west's intermediate, a destination workload
 * `demo/echo` and a caller `demo/client`.
 */
export const trustDomain = 'example.org';
export const echoId = `spiffe://${trustDomain}/ns/demo/sa/echo`;
export const clientId = `spiffe://${trustDomain}/ns/demo/sa/client`;

export interface TestPki { root: CertAndKey; west: CertAndKey; echo: CertAndKey; client: CertAndKey }

export function testPki(): TestPki {
  const root = createRootCa({ trustDomain });
  const west = createIntermediateCa({ root, trustDomain, cluster: 'west' });
  return { root, west, echo: issueCertificate({ identity: echoId, issuer: west }), client: issueCertificate({ identity: clientId, issuer: west }) };
}

/** TLS options for a server that holds `leaf` and asks for a mesh client certificate. */
export function serverTls(pki: TestPki, leaf: CertAndKey = pki.echo) {
  return { cert: leaf.certPem + pki.west.certPem, key: leaf.keyPem, ca: pki.root.certPem, requestCert: true };
}

/** The caller's credentials, as a sidecar's Upstreams take them. */
export function clientContext(pki: TestPki): SecureContext {
  return createSecureContext({ cert: pki.client.certPem + pki.west.certPem, key: pki.client.keyPem, ca: pki.root.certPem });
}

/** A routing table in west-a that knows `demo/echo` at `addresses`, served by `identities`. */
export function routingTo(addresses: string[], identities: string[] = [echoId]): RoutingTable {
  const routing = new RoutingTable({ cluster: 'west', zone: 'west-a' }, () => true);
  const catalog: Catalog = {
    revision: 1, invalidKeys: [], services: [],
    clusters: [{ name: 'west', region: 'west', zones: ['west-a'], trustDomain, federation: '127.0.0.1:1', joinedAt: '', alive: true, gateways: [] }],
  };
  routing.setCatalog(catalog);
  routing.setEndpoints({
    version: 1, cluster: 'west',
    services: [{ namespace: 'demo', name: 'echo', identities, endpoints: addresses.map((address) => ({ address, zone: 'west-a', healthy: true })) }],
  });
  return routing;
}

/** Listens on 127.0.0.1, port 0; resolves with host:port. */
export async function listen(server: Pick<Server, 'listen' | 'address'>): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}
