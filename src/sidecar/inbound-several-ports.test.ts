import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { connect as connectH2, createServer as createH2Server, type Http2Server } from 'node:http2';
import { createServer as createTcpServer, type Server } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { silentLogger } from '../core/log.js';
import { clientId, echoId, listen, testPki, type TestPki } from '../../test/helpers/sidecar-fixtures.js';
import { Inbound } from './inbound.js';
import { TcpPorts } from './inbound-ports.js';
import { TcpInbound } from './tcp-inbound.js';

// One inbound in front of three app ports on real sockets: HTTP/1.1 (the default), h2c (a gRPC-
// like server) and TCP. Callers are mTLS clients with a mesh certificate, as other sidecars are.
let pki: TestPki;
let web: HttpServer;
let grpc: Http2Server;
let cache: Server;
let inbound: Inbound;
let tcp: TcpInbound;
let address: string;
let grpcPort: number;
let cachePort: number;

beforeAll(async () => {
  pki = testPki();
  web = createHttpServer((req, res) => res.end(`web ${req.httpVersion} ${req.headers['x-forwarded-client-cert']?.includes(`URI=${clientId}`)}`));
  grpc = createH2Server((req, res) => res.end(`grpc ${req.httpVersion} ${req.headers['x-forwarded-client-cert']?.includes(`URI=${clientId}`)}`));
  cache = createTcpServer((socket) => socket.on('data', (d) => socket.write(`cache:${d.toString()}`)));
  const webAddress = await listen(web);
  const grpcAddress = await listen(grpc as unknown as Server);
  const cacheAddress = await listen(cache);
  grpcPort = Number(grpcAddress.split(':')[1]);
  cachePort = Number(cacheAddress.split(':')[1]);
  const credentials = { certPem: pki.echo.certPem, chainPem: [pki.west.certPem], keyPem: pki.echo.keyPem, trustBundle: [pki.root.certPem], identity: echoId };
  tcp = new TcpInbound(credentials, cacheAddress, silentLogger);
  inbound = new Inbound(credentials, webAddress, silentLogger, {}, undefined, 'http', undefined, undefined,
    [{ port: grpcPort, address: grpcAddress, protocol: 'h2c' }, { port: cachePort, address: cacheAddress, protocol: 'tcp' }],
    new TcpPorts(new Map([[cachePort, tcp]]), tcp));
  address = await listen(inbound.server as unknown as Server);
});

afterAll(async () => {
  await inbound?.close();
  await tcp?.close();
  web?.close();
  grpc?.close();
  cache?.close();
});

const tls = () => ({ cert: pki.client.certPem + pki.west.certPem, key: pki.client.keyPem, ca: pki.root.certPem, checkServerIdentity: () => undefined });

async function h2Get(authority: string): Promise<string> {
  const session = connectH2(`https://${address}`, tls());
  try {
    return await new Promise<string>((resolve, reject) => {
      const stream = session.request({ ':method': 'GET', ':path': '/', ':authority': authority });
      let body = '';
      stream.on('data', (c: Buffer) => { body += c.toString(); });
      stream.on('end', () => resolve(body));
      stream.on('error', reject);
    });
  } finally {
    session.close();
  }
}

async function tcpExchange(alpn: string[]): Promise<{ selected: string | false; answer: string }> {
  const [host, port] = address.split(':') as [string, string];
  return await new Promise((resolve, reject) => {
    const socket = tlsConnect({ host, port: Number(port), ...tls(), ALPNProtocols: alpn }, () => socket.write('PING'));
    socket.once('data', (d) => {
      resolve({ selected: socket.alpnProtocol ?? false, answer: d.toString() });
      socket.end();
    });
    socket.once('error', reject);
  });
}

describe('an inbound in front of several app ports', () => {
  test('HTTP/2 requests go to the app port their :authority names, with its protocol; no port, or an unknown one, to inbound.app', async () => {
    expect(await h2Get(`cart.shop.mesh:${grpcPort}`)).toBe('grpc 2.0 true');
    expect(await h2Get('cart.shop.mesh')).toBe('web 1.1 true');
    expect(await h2Get('cart.shop.mesh:1')).toBe('web 1.1 true');
  });

  test('a TCP caller that names the port in its ALPN, or names none, reaches the TCP app', async () => {
    expect(await tcpExchange([`isthmus-tcp/${cachePort}`, 'isthmus-tcp'])).toEqual({ selected: `isthmus-tcp/${cachePort}`, answer: 'cache:PING' });
    expect(await tcpExchange(['isthmus-tcp'])).toEqual({ selected: 'isthmus-tcp', answer: 'cache:PING' });
  });
});
