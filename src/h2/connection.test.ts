import { createHash } from 'node:crypto';
import { connect as h2connect, constants, createSecureServer as createSecureH2Server, createServer as createH2Server, type ClientHttp2Session, type Http2Server, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { connect as netConnect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, connect as tlsConnect, type TLSSocket } from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { rawH2Client, waitFor } from '../../test/helpers/h2-raw.js';
import { serverTls, testPki } from '../../test/helpers/sidecar-fixtures.js';
import { H2Connection, RecentlyClosed } from './connection.js';
import { dataFrameHeader, frameType, h2Error, headerFrames, rstStreamFrame } from './frames.js';
import { HpackEncoder, type HeaderBlock } from './hpack.js';
import type { H2Stream, StreamHandler } from './stream.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const clean of cleanups.splice(0).reverse()) await clean();
});

const listen = (server: Server | Http2Server): Promise<number> =>
  new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));

const field = (block: HeaderBlock, name: string): string | undefined => {
  for (let i = 0; i < block.fields.length; i += 2) if (block.fields[i] === name) return block.fields[i + 1];
  return undefined;
};

/** A server of ours on plain TCP (h2c) whose streams `onStream` takes; every connection it made. */
async function ourServer(onStream: (stream: H2Stream, head: HeaderBlock, endStream: boolean) => void) {
  const connections: H2Connection[] = [];
  const server = createServer((socket) => {
    socket.setNoDelay(true);
    connections.push(new H2Connection(socket, { role: 'server', onStream }));
  });
  const port = await listen(server);
  cleanups.push(() => new Promise<void>((resolve) => {
    for (const c of connections) c.destroy();
    server.close(() => resolve());
  }));
  return { port, connections };
}

/** Echoes each request's body back, with the request's x-echo-* fields in the head and a trailer. */
function echo(stream: H2Stream, head: HeaderBlock, endStream: boolean, seen?: { closes: number[] }): void {
  const answer = [':status', '200', 'content-type', 'application/octet-stream'];
  for (let i = 0; i < head.fields.length; i += 2) if (head.fields[i]!.startsWith('x-echo-')) answer.push(head.fields[i]!, head.fields[i + 1]!);
  stream.attach({
    onHeaders: (s, _trailers, end) => { if (end) s.end(['x-trailer', 'done']); },
    onData: (s, piece, end) => {
      if (piece.length > 0) {
        s.write(Buffer.from(piece));
        s.consumed(piece.length);
      }
      if (end) s.end(['x-trailer', 'done']);
    },
    onClose: (_s, code) => seen?.closes.push(code),
  });
  stream.sendHeaders(answer, false);
  if (endStream) stream.end(['x-trailer', 'done']);
}

function nodeClient(port: number): ClientHttp2Session {
  const session = h2connect(`http://127.0.0.1:${port}`);
  session.on('error', () => undefined);
  cleanups.push(() => session.destroy());
  return session;
}

function exchange(session: ClientHttp2Session, headers: Record<string, string>, body?: Buffer) {
  return new Promise<{ head: IncomingHttpHeaders; trailers: IncomingHttpHeaders; body: Buffer }>((resolve, reject) => {
    const stream = session.request({ ':method': 'POST', ':path': '/echo', ...headers }, { endStream: body === undefined });
    let head: IncomingHttpHeaders = {};
    let trailers: IncomingHttpHeaders = {};
    const parts: Buffer[] = [];
    stream.on('response', (h) => { head = h; });
    stream.on('trailers', (t) => { trailers = t; });
    stream.on('data', (c: Buffer) => parts.push(c));
    stream.on('end', () => resolve({ head, trailers, body: Buffer.concat(parts) }));
    stream.on('error', reject);
    if (body) stream.end(body);
  });
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('H2Connection as a server, with node:http2 as the client', () => {
  it('answers a request with a head, the echoed body and trailers', async () => {
    const { port } = await ourServer((s, h, e) => echo(s, h, e));
    const got = await exchange(nodeClient(port), { 'x-echo-who': 'me' }, Buffer.from('hello'));
    expect(got.head[':status']).toBe(200);
    expect(got.head['x-echo-who']).toBe('me');
    expect(got.body.toString()).toBe('hello');
    expect(got.trailers['x-trailer']).toBe('done');
  });

  it('carries 8 MiB both ways on one stream within both sides\' flow-control windows, byte for byte', async () => {
    const { port } = await ourServer((s, h, e) => echo(s, h, e));
    const body = Buffer.alloc(8 * 1024 * 1024);
    for (let i = 0; i < body.length; i += 4) body.writeUInt32LE(i * 2654435761 >>> 0, i);
    const got = await exchange(nodeClient(port), {}, body);
    expect(got.body.length).toBe(body.length);
    expect(sha(got.body)).toBe(sha(body));
  });

  it('serves 300 streams at once on one connection', async () => {
    const { port } = await ourServer((s, h, e) => echo(s, h, e));
    const session = nodeClient(port);
    const answers = await Promise.all(Array.from({ length: 300 }, (_, i) => exchange(session, { 'x-echo-n': String(i) }, Buffer.from(`body ${i}`))));
    answers.forEach((a, i) => {
      expect(a.head['x-echo-n']).toBe(String(i));
      expect(a.body.toString()).toBe(`body ${i}`);
    });
  });

  it('tells the handler when the client resets a stream it has not ended (CANCEL)', async () => {
    const seen = { closes: [] as number[] };
    const { port } = await ourServer((s, h, e) => echo(s, h, e, seen));
    const raw = await rawH2Client(port, cleanups);
    raw.socket.write(headerFrames(1, new HpackEncoder().encode([':method', 'POST', ':scheme', 'http', ':path', '/slow', ':authority', 'x']), false, 16_384));
    await waitFor(() => raw.frames.some((f) => f.type === frameType.headers && f.streamId === 1));
    raw.socket.write(rstStreamFrame(1, h2Error.cancel));
    await waitFor(() => seen.closes.length === 1);
    expect(seen.closes).toEqual([h2Error.cancel]);
  });

  it.each([
    ['te other than trailers', ['te', 'gzip']],
    ['a connection-specific field', ['connection', 'keep-alive']],
    ['an upper-case name', ['X-Upper', 'a']],
    ['a value with a line feed', ['x-a', 'b\nc']],
  ])('resets a request stream with %s (PROTOCOL_ERROR) and keeps the connection', async (_what, extra) => {
    let streams = 0;
    const { port } = await ourServer((s, h, e) => { streams += 1; echo(s, h, e); });
    const raw = await rawH2Client(port, cleanups);
    const encoder = new HpackEncoder();
    raw.socket.write(headerFrames(1, encoder.encode([':method', 'GET', ':scheme', 'http', ':path', '/', ':authority', 'x', ...extra]), true, 16_384));
    raw.socket.write(headerFrames(3, encoder.encode([':method', 'GET', ':scheme', 'http', ':path', '/', ':authority', 'x']), true, 16_384));
    await waitFor(() => raw.frames.some((f) => f.type === frameType.headers && f.streamId === 3));
    expect(raw.frames.find((f) => f.type === frameType.rstStream && f.streamId === 1)?.code).toBe(h2Error.protocolError);
    expect(streams).toBe(1);
  });

  it('resets a stream whose DATA falls short of its content-length (PROTOCOL_ERROR)', async () => {
    const { port } = await ourServer((s, h, e) => echo(s, h, e));
    const raw = await rawH2Client(port, cleanups);
    raw.socket.write(headerFrames(1, new HpackEncoder().encode([':method', 'POST', ':scheme', 'http', ':path', '/', ':authority', 'x', 'content-length', '5']), false, 16_384));
    raw.socket.write(Buffer.concat([dataFrameHeader(1, 3, true), Buffer.from('abc')]));
    await waitFor(() => raw.frames.some((f) => f.type === frameType.rstStream));
    expect(raw.frames.find((f) => f.type === frameType.rstStream)).toEqual({ type: frameType.rstStream, streamId: 1, code: h2Error.protocolError });
  });

  it('refuses a stream over its SETTINGS_MAX_CONCURRENT_STREAMS with REFUSED_STREAM, which a client may send again', async () => {
    const connections: H2Connection[] = [];
    const server = createServer((socket) => connections.push(new H2Connection(socket, { role: 'server', settings: { maxConcurrentStreams: 2 }, onStream: (st, h, e) => echo(st, h, e) })));
    const port = await listen(server);
    cleanups.push(() => new Promise<void>((resolve) => { for (const c of connections) c.destroy(); server.close(() => resolve()); }));
    const raw = await rawH2Client(port, cleanups);
    const encoder = new HpackEncoder();
    for (const id of [1, 3, 5]) raw.socket.write(headerFrames(id, encoder.encode([':method', 'POST', ':scheme', 'http', ':path', '/', ':authority', 'x']), false, 16_384));
    await waitFor(() => raw.frames.some((f) => f.type === frameType.rstStream));
    expect(raw.frames.filter((f) => f.type === frameType.rstStream)).toEqual([{ type: frameType.rstStream, streamId: 5, code: h2Error.refusedStream }]);
  });

  it('ends a connection whose client opens and resets streams faster than allowed (rapid reset) with GOAWAY ENHANCE_YOUR_CALM', async () => {
    const { port } = await ourServer((s, h, e) => echo(s, h, e));
    const raw = await rawH2Client(port, cleanups);
    const encoder = new HpackEncoder();
    const burst: Buffer[] = [];
    for (let id = 1; id < 2 * 1100; id += 2) {
      burst.push(headerFrames(id, encoder.encode([':method', 'GET', ':scheme', 'http', ':path', '/', ':authority', 'x']), false, 16_384), rstStreamFrame(id, h2Error.cancel));
    }
    raw.socket.write(Buffer.concat(burst));
    await waitFor(() => raw.closed);
    expect(raw.frames.find((f) => f.type === frameType.goaway)?.code).toBe(h2Error.enhanceYourCalm);
  });

  it('ends the connection with INTERNAL_ERROR when a stream handler throws, and tells onClose why, instead of throwing out of the socket\'s read', async () => {
    const closes: (Error | undefined)[] = [];
    const server = createServer((socket) => new H2Connection(socket, {
      role: 'server',
      onStream: () => { throw new Error('a bug in the handler'); },
      onClose: (err) => closes.push(err),
    }));
    const port = await listen(server);
    cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const raw = await rawH2Client(port, cleanups);
    raw.socket.write(headerFrames(1, new HpackEncoder().encode([':method', 'GET', ':scheme', 'http', ':path', '/', ':authority', 'x']), true, 16_384));
    await waitFor(() => raw.closed);
    expect(raw.frames.find((f) => f.type === frameType.goaway)?.code).toBe(h2Error.internalError);
    expect(closes.map((e) => [e?.message, (e as Error & { cause?: Error })?.cause?.message])).toEqual([['a stream handler failed: a bug in the handler', 'a bug in the handler']]);
  });

  it('ends a connection that does not open with the HTTP/2 preface with GOAWAY PROTOCOL_ERROR', async () => {
    const { port } = await ourServer((s, h, e) => echo(s, h, e));
    const raw = await rawH2Client(port, cleanups, Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    await waitFor(() => raw.closed);
    expect(raw.frames.find((f) => f.type === frameType.goaway)?.code).toBe(h2Error.protocolError);
  });
});

describe('H2Connection as a client, with node:http2 as the server', () => {
  async function nodeServer(handle: (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => void) {
    const server = createH2Server();
    const sessions: { destroy: () => void }[] = [];
    server.on('session', (session) => sessions.push(session));
    server.on('stream', handle);
    const port = await listen(server);
    cleanups.push(() => new Promise<void>((resolve) => {
      for (const session of sessions) session.destroy();
      server.close(() => resolve());
    }));
    const socket = await new Promise<Socket>((resolve) => { const s = netConnect(port, '127.0.0.1', () => resolve(s)); });
    const connection = new H2Connection(socket, { role: 'client' });
    cleanups.push(() => {
      connection.destroy();
      socket.destroy();
    });
    return connection;
  }

  /** A handler that collects what comes and consumes it at once. */
  function collector() {
    const got = { head: undefined as HeaderBlock | undefined, trailers: undefined as HeaderBlock | undefined, body: [] as Buffer[], code: -1, unprocessed: false, closed: false };
    const handler: StreamHandler = {
      onHeaders: (_s, block, _end, kind) => { if (kind === 'head') got.head = block; else if (kind === 'trailers') got.trailers = block; },
      onData: (s, piece) => { got.body.push(Buffer.from(piece)); s.consumed(piece.length); },
      onClose: (_s, code, unprocessed) => { got.code = code; got.unprocessed = unprocessed; got.closed = true; },
    };
    return { got, handler };
  }

  const get = (path: string) => [':method', 'GET', ':scheme', 'http', ':path', path, ':authority', 'test'];

  it('reads an 8 MiB answer and its trailers, crediting the windows as it consumes', async () => {
    const big = Buffer.alloc(8 * 1024 * 1024, 'q');
    const connection = await nodeServer((stream) => {
      stream.respond({ ':status': 200 }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(big);
    });
    const { got, handler } = collector();
    connection.request(get('/big'), true, handler);
    await waitFor(() => got.closed);
    expect(got.code).toBe(0);
    expect(field(got.head!, ':status')).toBe('200');
    expect(Buffer.concat(got.body).length).toBe(big.length);
    expect(field(got.trailers!, 'grpc-status')).toBe('0');
  });

  it('sends a body larger than the server\'s window, waiting for its WINDOW_UPDATEs', async () => {
    let received = 0;
    const connection = await nodeServer((stream) => {
      stream.on('data', (c: Buffer) => { received += c.length; });
      stream.on('end', () => { stream.respond({ ':status': 200 }); stream.end(String(received)); });
    });
    const { got, handler } = collector();
    let writable = 0;
    const stream = connection.request([':method', 'POST', ':scheme', 'http', ':path', '/up', ':authority', 'test'], false, { ...handler, onWritable: () => { writable += 1; } });
    expect(stream.write(Buffer.alloc(3 * 1024 * 1024, 1), true)).toBe(false);
    await waitFor(() => got.closed);
    expect(Buffer.concat(got.body).toString()).toBe(String(3 * 1024 * 1024));
    expect(writable).toBeGreaterThan(0);
  });

  it('closes the streams past a GOAWAY\'s last stream as unprocessed, and lets the ones before it finish', async () => {
    const held: ServerHttp2Stream[] = [];
    const connection = await nodeServer((stream) => {
      stream.on('error', () => undefined);
      held.push(stream);
      if (held.length === 2) {
        stream.session?.goaway(constants.NGHTTP2_NO_ERROR, held[0]!.id!);
        held[0]!.respond({ ':status': 200 });
        held[0]!.end('first');
      }
    });
    const first = collector();
    const second = collector();
    connection.request(get('/1'), true, first.handler);
    connection.request(get('/2'), true, second.handler);
    await waitFor(() => first.got.closed && second.got.closed);
    expect([second.got.code, second.got.unprocessed]).toEqual([h2Error.refusedStream, true]);
    expect([first.got.code, Buffer.concat(first.got.body).toString()]).toEqual([0, 'first']);
    expect(connection.usable).toBe(false);
  });

  it('reports a stream the server refused (REFUSED_STREAM) as unprocessed, and one it reset otherwise as processed', async () => {
    const connection = await nodeServer((stream, headers) => {
      stream.on('error', () => undefined);
      stream.close(headers[':path'] === '/refuse' ? constants.NGHTTP2_REFUSED_STREAM : constants.NGHTTP2_INTERNAL_ERROR);
    });
    const refused = collector();
    const failed = collector();
    connection.request(get('/refuse'), true, refused.handler);
    connection.request(get('/fail'), true, failed.handler);
    await waitFor(() => refused.got.closed && failed.got.closed);
    expect([refused.got.code, refused.got.unprocessed]).toEqual([h2Error.refusedStream, true]);
    expect([failed.got.code, failed.got.unprocessed]).toEqual([h2Error.internalError, false]);
  });
});

describe('H2Connection over mutual TLS with ALPN h2, as between sidecars', () => {
  it('serves node:http2\'s TLS client, and as a client reaches node:http2\'s TLS server, certificates from our CA', async () => {
    const pki = testPki();
    // Ours as the server: a TLS server that offers only h2.
    const connections: H2Connection[] = [];
    const tlsServer = createTlsServer({ ...serverTls(pki), ALPNProtocols: ['h2'] }, (socket) => {
      expect(socket.alpnProtocol).toBe('h2');
      connections.push(new H2Connection(socket, { role: 'server', onStream: (st, h, e) => echo(st, h, e) }));
    });
    const port = await listen(tlsServer);
    cleanups.push(() => new Promise<void>((resolve) => { for (const c of connections) c.destroy(); tlsServer.close(() => resolve()); }));
    const session = h2connect(`https://127.0.0.1:${port}`, { ca: pki.root.certPem, cert: pki.client.certPem + pki.west.certPem, key: pki.client.keyPem, servername: 'echo' , checkServerIdentity: () => undefined });
    session.on('error', () => undefined);
    cleanups.push(() => session.destroy());
    const big = Buffer.alloc(2 * 1024 * 1024, 'z');
    const got = await exchange(session, { 'x-echo-tls': 'yes' }, big);
    expect([got.head['x-echo-tls'], got.body.length, got.trailers['x-trailer']]).toEqual(['yes', big.length, 'done']);

    // Ours as the client: TLS with ALPN h2 to node:http2's secure server.
    const nodeServer = createSecureH2Server({ ...serverTls(pki) });
    nodeServer.on('stream', (stream, headers) => {
      stream.respond({ ':status': 200, 'x-peer': String((stream.session?.socket as TLSSocket).getPeerCertificate().subjectaltname) });
      stream.end(String(headers[':path']));
    });
    const nodePort = await listen(nodeServer);
    cleanups.push(() => new Promise<void>((resolve) => nodeServer.close(() => resolve())));
    const socket = tlsConnect({ host: '127.0.0.1', port: nodePort, ALPNProtocols: ['h2'], ca: pki.root.certPem, cert: pki.client.certPem + pki.west.certPem, key: pki.client.keyPem, checkServerIdentity: () => undefined });
    await new Promise((resolve) => socket.once('secureConnect', resolve));
    expect(socket.alpnProtocol).toBe('h2');
    const client = new H2Connection(socket, { role: 'client' });
    cleanups.push(() => { client.destroy(); socket.destroy(); });
    const body: Buffer[] = [];
    let head: HeaderBlock | undefined;
    let code = -1;
    client.request([':method', 'GET', ':scheme', 'https', ':path', '/over-tls', ':authority', 'echo'], true, {
      onHeaders: (_s, block) => { head = block; },
      onData: (st, piece) => { body.push(Buffer.from(piece)); st.consumed(piece.length); },
      onClose: (_s, c) => { code = c; },
    });
    await waitFor(() => code >= 0);
    expect([code, field(head!, ':status'), Buffer.concat(body).toString()]).toEqual([0, '200', '/over-tls']);
    expect(field(head!, 'x-peer')).toContain('spiffe://example.org/ns/demo/sa/client');
  });
});

describe('RecentlyClosed', () => {
  it('remembers the last streams closed and whether this side reset each, forgetting the oldest past its capacity', () => {
    const closed = new RecentlyClosed(3);
    expect(closed.get(1)).toBeUndefined();
    closed.add(1, false);
    closed.add(3, true);
    closed.add(5, false);
    expect([closed.get(1), closed.get(3), closed.get(5), closed.get(7)]).toEqual([false, true, false, undefined]);
    closed.add(7, true);
    // Stream 1 was the oldest: forgotten, as a stream long gone.
    expect([closed.get(1), closed.get(3), closed.get(5), closed.get(7)]).toEqual([undefined, true, false, true]);
    // Stream ids up to 2^31 - 1 keep their value.
    closed.add(2 ** 31 - 1, true);
    expect(closed.get(2 ** 31 - 1)).toBe(true);
  });
});
