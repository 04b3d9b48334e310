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

/**
 * A real outbound → inbound (mTLS) → app chain in one process, as two sidecars of demo/client and
 * demo/echo would be: the app records every request it gets (`seen`; but for `/test/echo-body`
 * and `/test/stall`, see the app below), and `refused()` reads
 * isthmus_requests_refused_total from the two sidecars' metrics. `send` writes raw bytes to one
 * listener and returns all it answered before closing (or fails after `waitMs`). `app`, when
 * given, is the app instead (a raw TCP server that sees heads byte for byte; `seen` stays empty).
 */
export interface SidecarChain {
  outbound: string;
  inbound: string;
  seen: string[];
  send(listener: 'outbound' | 'inbound', bytes: string | Buffer, waitMs?: number): Promise<string>;
  refused(listener: 'outbound' | 'inbound', reason?: string): Promise<number>;
  close(): Promise<void>;
}

export async function sidecarChain(pki: TestPki, timeouts: Partial<import('../../src/sidecar/timeouts.js').DataPlaneTimeouts> = {}, ownApp?: Server): Promise<SidecarChain> {
  const { createServer } = await import('node:http');
  const { connect: tcpConnect } = await import('node:net');
  const { connect: tlsConnect } = await import('node:tls');
  const { silentLogger } = await import('../../src/core/log.js');
  const { createMetrics } = await import('../../src/telemetry/metrics.js');
  const { Inbound } = await import('../../src/sidecar/inbound.js');
  const { createOutbound } = await import('../../src/sidecar/outbound.js');
  const { defaultTimeouts } = await import('../../src/sidecar/timeouts.js');
  const { Upstreams } = await import('../../src/sidecar/upstreams.js');
  const limits = { ...defaultTimeouts, ...timeouts };
  const seen: string[] = [];
  const app = ownApp ?? createServer((req, res) => {
    // Two paths of their own for the access log's tests: the body sent back as it arrives, and
    // an answer that sends 1000 bytes and then nothing for 30 s (a caller leaves before its end).
    if (req.url === '/test/echo-body') {
      res.writeHead(200);
      req.pipe(res);
      return;
    }
    if (req.url === '/test/stall') {
      res.writeHead(200);
      res.write(Buffer.alloc(1000, 'a'));
      const stall = setTimeout(() => res.end(), 30_000);
      res.on('close', () => clearTimeout(stall));
      return;
    }
    let body = '';
    req.on('data', (c: Buffer) => { body += c.toString('latin1'); });
    req.on('end', () => {
      seen.push(`${req.method} ${req.url} ${body}`);
      res.end('app answered');
    });
  });
  const appAddress = await listen(app);
  const inbound = new Inbound({ certPem: pki.echo.certPem, chainPem: [pki.west.certPem], keyPem: pki.echo.keyPem, trustBundle: [pki.root.certPem], identity: echoId },
    appAddress, silentLogger, {}, limits);
  const inboundAddress = await listen(inbound.server as unknown as Server);
  const upstreams = new Upstreams(() => clientContext(pki));
  const routing = routingTo([inboundAddress]);
  const outbound = createOutbound({ cluster: 'west', routing, upstreams, logger: silentLogger, timeouts: limits });
  const outboundAddress = await listen(outbound);
  const metrics = createMetrics('sidecar', { cluster: 'west' }, { origins: [routing, inbound] });
  return {
    outbound: outboundAddress,
    inbound: inboundAddress,
    seen,
    send: async (listener, bytes, waitMs = 5000) => {
      const [host, port] = (listener === 'outbound' ? outboundAddress : inboundAddress).split(':') as [string, string];
      const socket = listener === 'outbound'
        ? tcpConnect({ host, port: Number(port) })
        : tlsConnect({ host, port: Number(port), ...serverTls(pki, pki.client), ca: pki.root.certPem, ALPNProtocols: ['http/1.1'], checkServerIdentity: () => undefined });
      return await new Promise((resolve, reject) => {
        let got = '';
        const timer = setTimeout(() => {
          socket.destroy();
          reject(new Error(`the ${listener} neither answered nor closed within ${waitMs} ms; it sent ${JSON.stringify(got.slice(0, 200))}`));
        }, waitMs);
        socket.on('data', (c: Buffer) => { got += c.toString('latin1'); });
        socket.on('error', () => undefined);
        socket.on('close', () => {
          clearTimeout(timer);
          resolve(got);
        });
        socket.once(listener === 'outbound' ? 'connect' : 'secureConnect', () => socket.write(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes));
      });
    },
    refused: async (listener, reason) => {
      const { body } = await metrics.exposition();
      const prefix = `isthmus_requests_refused_total{cluster="west",listener="${listener}",reason="${reason ?? ''}`;
      return body.split('\n').filter((l) => l.startsWith(reason === undefined ? prefix.slice(0, -1) : `${prefix}"}`))
        .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
    },
    close: async () => {
      metrics.close();
      outbound.closeAllConnections();
      await new Promise((resolve) => outbound.close(resolve));
      await upstreams.close();
      await inbound.close();
      await new Promise((resolve) => app.close(resolve));
    },
  };
}
