import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { connect as h2Connect, type ClientHttp2Session } from 'node:http2';
import { get as httpsGet } from 'node:https';
import type { Server } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { h2Get } from '../../test/helpers/h2.js';
import { listen, serverTls, testPki, type TestPki } from '../../test/helpers/sidecar-fixtures.js';
import { silentLogger } from '../core/log.js';
import { Inbound } from './inbound.js';
import { defaultTimeouts } from './timeouts.js';

/**
 * The inbound's HTTP/2 path keeps the limits its HTTP/1.1 path has: here `timeouts.requestHeaders`
 * (300 ms) on a real inbound in front of a real HTTP/1.1 app, reached with a mesh certificate.
 */

/**
 * What the app's /trailers answer ends with: one field to pass on, and fields no hop may pass on
 * in trailers. (Not `content-length`: Node's parser, which reads the answer for an HTTP/2 caller,
 * refuses a trailer section that has one, and the stream is reset; docs/sidecar.md says so.)
 */
const appTrailers = {
  'x-checksum': 'abc123', 'set-cookie': 'session=stolen', location: 'https://elsewhere.example/',
  'x-forwarded-client-cert': 'By=spiffe://evil/x', 'cache-control': 'no-store',
};

let pki: TestPki;
let app: HttpServer;
let inbound: Inbound;
let address: string;
const requestHeadersMs = 300;

beforeAll(async () => {
  pki = testPki();
  app = createHttpServer((req, res) => {
    if (req.url === '/trailers') {
      // A chunked answer whose trailers include fields a trailer may not carry (RFC 9110 §6.5.1).
      res.writeHead(200, { trailer: Object.keys(appTrailers).join(', ') });
      res.write('body');
      res.addTrailers(appTrailers);
      res.end();
      return;
    }
    res.end(`app saw ${req.method} ${req.url}`);
  });
  const appAddress = await listen(app);
  inbound = new Inbound({ certPem: pki.echo.certPem, chainPem: [pki.west.certPem], keyPem: pki.echo.keyPem, trustBundle: [pki.root.certPem], identity: 'spiffe://example.org/ns/demo/sa/echo' },
    appAddress, silentLogger, {}, { ...defaultTimeouts, requestHeadersMs });
  address = await listen(inbound.server as unknown as Server);
});

afterAll(async () => {
  await inbound?.close();
  await new Promise((resolve) => app?.close(resolve));
});

/** A client sidecar's session: the caller's mesh certificate, ALPN h2. */
function session(): ClientHttp2Session {
  const { cert, key, ca } = { ...serverTls(pki, pki.client), ca: pki.root.certPem };
  const s = h2Connect(`https://${address}`, { cert, key, ca, checkServerIdentity: () => undefined });
  s.on('error', () => undefined);
  return s;
}

describe('timeouts.requestHeaders on the inbound', () => {
  test('an HTTP/2 connection that opens no stream is closed with GOAWAY naming ISTHMUS_ERR_DATAPLANE_REQUEST_HEADERS_TIMEOUT', async () => {
    const s = session();
    const [code, lastStreamId, data] = await new Promise<[number, number, Buffer | undefined]>((resolve) => {
      s.once('goaway', (c: number, last: number, d?: Buffer) => resolve([c, last, d]));
    });
    expect({ code, lastStreamId }).toEqual({ code: 0, lastStreamId: 0 });
    expect(String(data)).toMatch(/^ISTHMUS_ERR_DATAPLANE_REQUEST_HEADERS_TIMEOUT: no request head within 300 ms/);
    await new Promise((resolve) => (s.destroyed ? resolve(undefined) : s.once('close', resolve)));
    expect(s.destroyed).toBe(true);
  });

  test('the control: a session that asks at once is answered, and stays usable past the limit', async () => {
    const s = session();
    let goaway = false;
    s.once('goaway', () => { goaway = true; });
    try {
      expect(await h2Get(s, '/first')).toEqual({ status: 200, body: 'app saw GET /first' });
      await new Promise((resolve) => setTimeout(resolve, requestHeadersMs * 3));
      expect(await h2Get(s, '/later')).toEqual({ status: 200, body: 'app saw GET /later' });
      expect(goaway).toBe(false);
    } finally {
      s.destroy();
    }
  });

  test('HTTP/1.1 gets the same named error: a silent connection is answered 408 with x-isthmus-error', async () => {
    const [host, port] = address.split(':') as [string, string];
    const received = await new Promise<string>((resolve) => {
      let text = '';
      const socket = tlsConnect({ host, port: Number(port), ...serverTls(pki, pki.client), ca: pki.root.certPem, ALPNProtocols: ['http/1.1'], checkServerIdentity: () => undefined });
      socket.on('data', (c: Buffer) => { text += c.toString(); });
      socket.on('error', () => undefined);
      socket.on('close', () => resolve(text));
    });
    expect(received).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
    expect(received).toContain('x-isthmus-error: ISTHMUS_ERR_DATAPLANE_REQUEST_HEADERS_TIMEOUT');
  });
});

describe('an app\'s response trailers through the inbound', () => {
  test('an HTTP/2 caller gets the trailers the app announced, without the fields a trailer may not carry', async () => {
    const s = session();
    try {
      const got = await new Promise<{ body: string; trailers: Record<string, unknown> }>((resolve, reject) => {
        const stream = s.request({ ':path': '/trailers' });
        let body = '';
        let trailers: Record<string, unknown> = {};
        stream.on('data', (c: Buffer) => { body += c.toString(); });
        // Its string-keyed fields (node:http2 adds a symbol for the sensitive ones).
        stream.on('trailers', (t) => { trailers = Object.fromEntries(Object.entries(t)); });
        stream.on('end', () => resolve({ body, trailers }));
        stream.on('error', reject);
      });
      expect(got).toEqual({ body: 'body', trailers: { 'x-checksum': 'abc123' } });
    } finally {
      s.destroy();
    }
  });

  test('an HTTP/1.1 caller gets them on the chunked answer, without the same fields', async () => {
    const [host, port] = address.split(':') as [string, string];
    const got = await new Promise<{ status: number; body: string; trailers: Record<string, unknown> }>((resolve, reject) => {
      httpsGet({ host, port: Number(port), path: '/trailers', ...serverTls(pki, pki.client), ca: pki.root.certPem, checkServerIdentity: () => undefined, agent: false }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => { body += c.toString(); });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, trailers: { ...res.trailers } }));
        res.on('error', reject);
      }).on('error', reject);
    });
    expect(got).toEqual({ status: 200, body: 'body', trailers: { 'x-checksum': 'abc123' } });
  });
});
