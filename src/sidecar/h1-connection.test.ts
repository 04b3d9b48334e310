import { createHash, randomBytes } from 'node:crypto';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { afterEach, describe, expect, test } from 'vitest';
import { buildConnector } from '../core/undici.js';
import { bodyTrailers, setBodyTrailers } from './body-trailers.js';
import { H1Connection, type FieldsReader, type H1DispatchOptions, type ViewReader } from './h1-connection.js';
import { isLentView, keepsView } from './lent-views.js';
import { RequestBody } from './request-body.js';
import { readSocket, sharedReadConnector } from './shared-reads.js';

/**
 * One keep-alive HTTP/1.1 connection on Node's parser, against real servers on loopback: a
 * node:http server for what HTTP/1.1 servers do, and raw TCP servers that send exactly the bytes
 * a test needs (a broken answer, an early answer, silence).
 */

const servers: (HttpServer | NetServer)[] = [];
const connections: H1Connection[] = [];

afterEach(async () => {
  await Promise.all(connections.splice(0).map((c) => c.destroy()));
  for (const s of servers.splice(0)) {
    if ('closeAllConnections' in s) s.closeAllConnections();
    await new Promise((resolve) => s.close(resolve));
  }
});

async function listen<S extends HttpServer | NetServer>(server: S): Promise<string> {
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function connect(origin: string, idleMs = 10_000, connector = buildConnector({ timeout: 2_000 })): Promise<H1Connection> {
  const c = new H1Connection(origin, { connect: connector, idleMs });
  connections.push(c);
  return new Promise((resolve, reject) => {
    c.once('connect', () => resolve(c));
    c.once('connectionError', (_o: string, _t: unknown, err: Error) => reject(err));
  });
}

interface Answer { status: number; headers: Record<string, string | string[]>; body: Buffer; trailers: Record<string, string | string[]> }

/** Sends one request through `c`; resolves with the whole answer, rejects with the error. */
function send(c: H1Connection, opts: Partial<H1DispatchOptions>, hooks: { onChunk?: (controller: Dispatcher.DispatchController, chunk: Buffer) => void; onStart?: (controller: Dispatcher.DispatchController) => void } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let status = 0;
    let headers: Record<string, string | string[]> = {};
    c.dispatch({ method: 'GET', path: '/', headers: {}, ...opts } as Dispatcher.DispatchOptions, {
      onRequestStart: (controller) => hooks.onStart?.(controller),
      onResponseStart: (_controller, s, h) => { status = s; headers = h as Record<string, string | string[]>; },
      onResponseData: (controller, chunk) => { chunks.push(chunk); hooks.onChunk?.(controller, chunk); },
      onResponseEnd: (_controller, trailers) => resolve({ status, headers, body: Buffer.concat(chunks), trailers: trailers as Record<string, string | string[]> }),
      onResponseError: (_controller, err) => reject(err),
    });
  });
}

/**
 * `send` with a handler that takes the head as fields (FieldsReader), as the sidecars' relay does:
 * `headers` is then the fields as they came, and `objects` counts heads handed as an object.
 */
function sendFields(c: H1Connection, opts: Partial<H1DispatchOptions>): Promise<{ status: number; fields: readonly string[]; objects: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let status = 0;
    let fields: readonly string[] = [];
    let objects = 0;
    const handler: Dispatcher.DispatchHandler & FieldsReader = {
      onResponseFields: (_controller, s, f) => { status = s; fields = f; },
      onResponseStart: () => { objects += 1; },
      onResponseData: (_controller, chunk) => { chunks.push(chunk); },
      onResponseEnd: () => resolve({ status, fields, objects, body: Buffer.concat(chunks) }),
      onResponseError: (_controller, err) => reject(err),
    };
    c.dispatch({ method: 'GET', path: '/', headers: {}, ...opts } as Dispatcher.DispatchOptions, handler);
  });
}

/** A node:http server that answers with what the request was (method, url, headers, the body's length and hash). */
function echoServer(): HttpServer {
  return createHttpServer((req, res) => {
    const hash = createHash('sha256');
    let length = 0;
    req.on('data', (chunk: Buffer) => { length += chunk.length; hash.update(chunk); });
    req.on('end', () => {
      res.setHeader('set-cookie', ['a=1', 'b=2']);
      res.end(JSON.stringify({ method: req.method, url: req.url, headers: req.headers, length, sha256: hash.digest('hex') }));
    });
  });
}

/** A raw TCP server that answers every request head it reads with `reply(head, socket)`. */
function rawServer(reply: (head: string, socket: Socket) => void): NetServer {
  return createNetServer((socket) => {
    let buffered = '';
    socket.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('latin1');
      let end: number;
      while ((end = buffered.indexOf('\r\n\r\n')) >= 0) {
        const head = buffered.slice(0, end);
        buffered = buffered.slice(end + 4);
        reply(head, socket);
      }
    });
    socket.on('error', () => undefined);
  });
}

describe('H1Connection: requests', () => {
  test('keep-alive: three requests in turn on one connection; the head and the repeated fields arrive as sent', async () => {
    const origin = await listen(echoServer());
    const c = await connect(origin);
    let accepted = 0;
    (servers[0] as HttpServer).on('connection', () => { accepted += 1; });
    // 'drain' says the connection takes the next request: once per answer, before the answer's promise settles.
    let drains = 0;
    c.on('drain', () => { drains += 1; });
    for (const path of ['/a', '/b?x=1', '/c']) {
      const answer = await send(c, { path, headers: { 'x-one': 'v', 'x-many': ['1', '2'] } });
      expect(answer.status).toBe(200);
      expect(answer.headers['set-cookie']).toEqual(['a=1', 'b=2']);
      const seen = JSON.parse(answer.body.toString()) as { url: string; headers: Record<string, string> };
      expect(seen.url).toBe(path);
      expect(seen.headers['x-one']).toBe('v');
      expect(seen.headers['x-many']).toBe('1, 2');
      // No Host was given: the origin's.
      expect(seen.headers.host).toBe(new URL(origin).host);
    }
    expect(accepted).toBe(0); // the connection was open before the listener: no second one
    expect(drains).toBe(3);
  });

  test.each([
    ['a body of known length goes as it is', { 'content-length': String(3 * 65536) }, 3 * 65536, undefined],
    ['a body without a length goes chunked', {}, 3 * 65536 + 5, 'chunked'],
  ])('%s (hash checked)', async (_name, headers, size, encoding) => {
    const origin = await listen(echoServer());
    const c = await connect(origin);
    const data = Buffer.alloc(size, 7);
    const parts = [data.subarray(0, 1000), Buffer.alloc(0), data.subarray(1000)];
    const answer = await send(c, { method: 'POST', headers, body: Readable.from(parts) });
    const seen = JSON.parse(answer.body.toString()) as { length: number; sha256: string; headers: Record<string, string> };
    expect(seen.length).toBe(size);
    expect(seen.sha256).toBe(createHash('sha256').update(data).digest('hex'));
    expect(seen.headers['transfer-encoding']).toBe(encoding);
  });

  test('a POST without a body says content-length: 0; a GET says nothing', async () => {
    const origin = await listen(echoServer());
    const c = await connect(origin);
    const post = JSON.parse((await send(c, { method: 'POST' })).body.toString()) as { headers: Record<string, string> };
    expect(post.headers['content-length']).toBe('0');
    const get = JSON.parse((await send(c, {})).body.toString()) as { headers: Record<string, string> };
    expect(get.headers['content-length']).toBeUndefined();
  });

  test.each([
    ['a CR LF in a value', { 'x-a': 'one\r\nx-injected: 1' }],
    ['a space in a name', { 'x a': '1' }],
  ])('a header with %s is refused before anything is written', async (_name, headers) => {
    const heads: string[] = [];
    const origin = await listen(rawServer((head) => heads.push(head)));
    const c = await connect(origin);
    await expect(send(c, { headers })).rejects.toMatchObject({ code: 'UND_ERR_INVALID_ARG' });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(heads).toEqual([]);
  });

  test('a request body cut short while its attempt waited (RequestBody, nobody reading yet) throws nothing; the attempt then fails at once', async () => {
    const origin = await listen(echoServer());
    const c = await connect(origin);
    const source = new Readable({ read() {} });
    source.on('error', () => undefined);
    const body = new RequestBody(source);
    const attempt = body.open();
    // The caller goes away before any attempt reads: the attempt's stream is destroyed with no 'error' listener.
    source.destroy(new Error('the app went away'));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(attempt.destroyed).toBe(true);
    // Without the fix the attempt waits for its request timeout (minutes) and this test's own timeout fails it.
    await expect(send(c, { method: 'POST', headers: { 'content-length': '5' }, body: attempt })).rejects.toThrow(/the app went away/);
  });

  test('a chunked body\'s trailers follow its last chunk, what may not be forwarded dropped; a retried attempt (RequestBody) ends with them too; a body with a length drops them', async () => {
    const origin = await listen(createHttpServer((req, res) => {
      const hash = createHash('sha256');
      req.on('data', (chunk: Buffer) => hash.update(chunk));
      req.on('end', () => res.end(JSON.stringify({ sha256: hash.digest('hex'), trailers: req.trailers, raw: req.rawTrailers })));
    }));
    const c = await connect(origin);
    const text = 'a body that ends with trailers';
    const sum = createHash('sha256').update(text).digest('hex');
    const trailed = (): Readable => {
      const body = new Readable({ read() {} });
      body.push(text);
      setBodyTrailers(body, {
        'x-checksum': sum, 'x-multi': ['1', '2'],
        // Framing, hop-by-hop, routing and the mesh's own identity field never go on as trailers;
        // nor does a value that would end its line early.
        'content-length': '999', 'transfer-encoding': 'gzip', trailer: 'x-checksum', te: 'trailers', host: 'elsewhere',
        'x-forwarded-client-cert': 'By=forged', 'x-injected': 'a\r\nhost: evil', 'bad name': 'x',
      });
      body.push(null);
      return body;
    };
    const seen = JSON.parse((await send(c, { method: 'POST', path: '/t', body: trailed() })).body.toString());
    expect(seen).toEqual({ sha256: sum, trailers: { 'x-checksum': sum, 'x-multi': '1, 2' }, raw: ['x-checksum', sum, 'x-multi', '1', 'x-multi', '2'] });

    // A retry: the first attempt's stream is dropped and a second one replays the kept bytes; it
    // ends with the source's trailers, and so does a third opened once the source has ended.
    const source = new Readable({ read() {} });
    const body = new RequestBody(source);
    body.open().destroy();
    const second = send(c, { method: 'POST', path: '/retried', body: body.open() });
    source.push(text);
    setBodyTrailers(source, { 'x-checksum': sum });
    source.push(null);
    expect(JSON.parse((await second).body.toString()).trailers).toEqual({ 'x-checksum': sum });
    const third = body.open();
    expect(bodyTrailers(third)).toEqual({ 'x-checksum': sum });
    expect(JSON.parse((await send(c, { method: 'POST', path: '/third', body: third })).body.toString()).trailers).toEqual({ 'x-checksum': sum });

    // With a content-length there is no trailer section to write them in.
    const counted = await send(c, { method: 'POST', path: '/counted', headers: { 'content-length': String(text.length) }, body: trailed() });
    expect(JSON.parse(counted.body.toString())).toEqual({ sha256: sum, trailers: {}, raw: [] });
  });

  test('a body longer than its content-length fails the request', async () => {
    const origin = await listen(echoServer());
    const c = await connect(origin);
    await expect(send(c, { method: 'POST', headers: { 'content-length': '3' }, body: Readable.from([Buffer.from('12345')]) }))
      .rejects.toMatchObject({ code: 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH' });
  });
});

describe('H1Connection: answers', () => {
  test('HEAD, 204 and 304 answers have no body, and the connection carries the next request', async () => {
    const origin = await listen(rawServer((head, socket) => {
      const path = head.split(' ')[1];
      if (path === '/head') socket.write('HTTP/1.1 200 OK\r\ncontent-length: 999\r\n\r\n');
      else if (path === '/204') socket.write('HTTP/1.1 204 No Content\r\n\r\n');
      else if (path === '/304') socket.write('HTTP/1.1 304 Not Modified\r\ncontent-length: 5\r\n\r\n');
      else socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
    }));
    const c = await connect(origin);
    expect((await send(c, { method: 'HEAD', path: '/head' })).body.length).toBe(0);
    expect((await send(c, { path: '/204' })).status).toBe(204);
    expect((await send(c, { path: '/304' })).status).toBe(304);
    expect((await send(c, { path: '/next' })).body.toString()).toBe('ok');
  });

  test('an informational 103 is skipped; a chunked body and its trailers arrive', async () => {
    const origin = await listen(rawServer((_head, socket) => {
      socket.write('HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n');
      socket.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: grpc-status\r\n\r\n3\r\nabc\r\n');
      setTimeout(() => socket.write('2\r\nde\r\n0\r\ngrpc-status: 0\r\n\r\n'), 20);
    }));
    const c = await connect(origin);
    const answer = await send(c, {});
    expect(answer.status).toBe(200);
    expect(answer.headers.link).toBeUndefined();
    expect(answer.body.toString()).toBe('abcde');
    expect(answer.trailers).toEqual({ 'grpc-status': '0' });
  });

  test('a handler that takes fields gets the final head as it came (case, repeats, order) and never an object; the object form lower-cases names and gathers repeats', async () => {
    const head = 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Trace: a\r\nx-trace: b\r\nContent-Length: 2\r\n\r\nok';
    const origin = await listen(rawServer((_head, socket) => socket.write(`HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n${head}`)));
    const c = await connect(origin);
    const raw = await sendFields(c, {});
    expect(raw).toMatchObject({ status: 200, objects: 0, body: Buffer.from('ok') });
    expect(raw.fields).toEqual(['Content-Type', 'text/plain', 'X-Trace', 'a', 'x-trace', 'b', 'Content-Length', '2']);
    const object = await send(c, {});
    expect(object.headers).toEqual({ 'content-type': 'text/plain', 'x-trace': ['a', 'b'], 'content-length': '2' });
  });

  test('an answer delimited by the connection\'s end is complete at the end, and the connection leaves', async () => {
    const origin = await listen(rawServer((_head, socket) => socket.end('HTTP/1.1 200 OK\r\n\r\nuntil the end')));
    const c = await connect(origin);
    const gone = new Promise((resolve) => c.once('disconnect', resolve));
    expect((await send(c, {})).body.toString()).toBe('until the end');
    await gone;
  });

  test.each([
    ['not HTTP at all', 'garbage\r\n\r\n', 'UND_ERR_SOCKET', /not valid HTTP\/1\.1/],
    ['a head cut short by the close', 'HTTP/1.1 200 OK\r\ncontent-le', 'UND_ERR_SOCKET', /before answering/],
    ['a body cut short by the close', 'HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc', 'UND_ERR_SOCKET', /before the answer ended/],
    ['a 101 nobody asked for', 'HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\nconnection: upgrade\r\n\r\n', 'UND_ERR_SOCKET', /switched protocols/],
  ])('%s fails the request with %s', async (_name, bytes, code, message) => {
    const origin = await listen(rawServer((_head, socket) => socket.end(bytes)));
    const c = await connect(origin);
    const gone = new Promise((resolve) => c.once('disconnect', resolve));
    const err = await send(c, {}).catch((e: Error & { code?: string }) => e);
    expect(err).toMatchObject({ code });
    expect((err as Error).message).toMatch(message);
    await gone;
  });

  test('an answer that comes before the upload ended ends the request, and the connection is not used again', async () => {
    const origin = await listen(rawServer((_head, socket) => socket.write('HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n')));
    const c = await connect(origin);
    const body = new Readable({ read() { /* never ends */ } });
    body.push(Buffer.alloc(100));
    const gone = new Promise((resolve) => c.once('disconnect', resolve));
    expect((await send(c, { method: 'PUT', body })).status).toBe(413);
    await gone;
    expect(body.destroyed).toBe(true);
  });
});

describe('H1Connection: time and flow', () => {
  test('no head within headersTimeout: UND_ERR_HEADERS_TIMEOUT', async () => {
    const origin = await listen(rawServer(() => undefined));
    const c = await connect(origin);
    const started = Date.now();
    await expect(send(c, { headersTimeout: 150 })).rejects.toMatchObject({ code: 'UND_ERR_HEADERS_TIMEOUT' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
  });

  test('headersTimeout counts from the end of the request: an upload longer than it is answered, a silent one fails after bodyTimeout', async () => {
    // The server answers once the whole body is in, as most do.
    const origin = await listen(createHttpServer((req, res) => {
      let bytes = 0;
      req.on('data', (c: Buffer) => { bytes += c.length; });
      req.on('end', () => res.end(String(bytes)));
    }));
    const c = await connect(origin);
    // Eight chunks 60 ms apart: the upload takes about 480 ms, against a 200 ms head limit.
    const trickle = Readable.from((async function* () {
      for (let i = 0; i < 8; i += 1) {
        await new Promise((r) => setTimeout(r, 60));
        yield Buffer.alloc(1000, 1);
      }
    })());
    const answer = await send(c, { method: 'POST', path: '/upload', body: trickle, headersTimeout: 200, bodyTimeout: 300 });
    expect(answer).toMatchObject({ status: 200 });
    expect(answer.body.toString()).toBe('8000');
    // A body that stops halfway: nothing moves for bodyTimeout, and the request fails naming it.
    const c2 = await connect(origin);
    const stalled = new Readable({ read() {} });
    stalled.push(Buffer.alloc(100, 1));
    const started = Date.now();
    await expect(send(c2, { method: 'POST', path: '/stalled', body: stalled, headers: { 'content-length': '200' }, headersTimeout: 5_000, bodyTimeout: 250 }))
      .rejects.toMatchObject({ code: 'UND_ERR_BODY_TIMEOUT', message: expect.stringContaining('request body moved no byte') });
    expect(Date.now() - started).toBeGreaterThanOrEqual(240);
    // Once the body has ended, the head is due within headersTimeout: a server that reads it all and stays silent.
    const silent = await listen(rawServer(() => undefined));
    const c3 = await connect(silent);
    const after = Date.now();
    await expect(send(c3, { method: 'POST', path: '/', body: Readable.from([Buffer.from('abc')]), headersTimeout: 150, bodyTimeout: 10_000 }))
      .rejects.toMatchObject({ code: 'UND_ERR_HEADERS_TIMEOUT' });
    expect(Date.now() - after).toBeLessThan(5_000);
  });

  test('a body that keeps trickling is not timed out; one that falls silent is, after bodyTimeout', async () => {
    const origin = await listen(rawServer((head, socket) => {
      socket.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n');
      if (head.includes('/silent')) return;
      let n = 0;
      const timer = setInterval(() => {
        n += 1;
        if (n < 10) socket.write('1\r\nx\r\n');
        else { clearInterval(timer); socket.write('0\r\n\r\n'); }
      }, 50);
    }));
    const c = await connect(origin);
    // Ten gaps of 50 ms, 500 ms in all, against a 300 ms idle limit: only silence counts.
    expect((await send(c, { path: '/trickle', bodyTimeout: 300 })).body.toString()).toBe('xxxxxxxxx');
    await expect(send(c, { path: '/silent', bodyTimeout: 300 })).rejects.toMatchObject({ code: 'UND_ERR_BODY_TIMEOUT' });
  });

  test('openEndedTimeout: an answer of no stated length may fall silent that long once its head has come; one of a stated length may not', async () => {
    // Server-sent events, or a watch: an event, 600 ms of silence, an event, the end.
    const origin = await listen(rawServer((head, socket) => {
      const chunked = head.includes('/events');
      socket.write(chunked ? 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6\r\nfirst\n\r\n' : 'HTTP/1.1 200 OK\r\ncontent-length: 13\r\n\r\nfirst\n');
      setTimeout(() => {
        if (!socket.destroyed) socket.write(chunked ? '7\r\nsecond\n\r\n0\r\n\r\n' : 'second\n');
      }, 600);
    }));
    const c = await connect(origin);
    expect((await send(c, { path: '/events', bodyTimeout: 200, openEndedTimeout: 5_000 })).body.toString()).toBe('first\nsecond\n');
    // The same answer with a content-length is a stalled download after 200 ms.
    await expect(send(await connect(origin), { path: '/download', bodyTimeout: 200, openEndedTimeout: 5_000 })).rejects.toMatchObject({ code: 'UND_ERR_BODY_TIMEOUT' });
    // Without openEndedTimeout, bodyTimeout holds for both.
    await expect(send(await connect(origin), { path: '/events', bodyTimeout: 200 })).rejects.toMatchObject({ code: 'UND_ERR_BODY_TIMEOUT' });
    // And openEndedTimeout is a limit too.
    await expect(send(await connect(origin), { path: '/events', bodyTimeout: 100, openEndedTimeout: 300 })).rejects.toMatchObject({ code: 'UND_ERR_BODY_TIMEOUT' });
  });

  test.each(['object', 'fields'])('Keep-Alive: timeout=2 from the server (a %s handler) closes the idle connection a second early, before the server would', async (kind) => {
    // The server keeps its word: 2 s after its answer it closes. Who closed first is what counts.
    let clientClosedFirst: boolean | undefined;
    const origin = await listen(rawServer((_head, socket) => {
      socket.write('HTTP/1.1 200 OK\r\nKeep-Alive: timeout=2\r\ncontent-length: 0\r\n\r\n');
      const own = setTimeout(() => { clientClosedFirst ??= false; socket.end(); }, 2_000);
      socket.once('close', () => { clientClosedFirst ??= true; clearTimeout(own); });
    }));
    const c = await connect(origin);
    if (kind === 'object') await send(c, {});
    else await sendFields(c, {});
    const started = Date.now();
    await new Promise((resolve) => c.once('disconnect', resolve));
    // Not at once: it stayed open for reuse for about a second.
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(clientClosedFirst).toBe(true);
  });

  test('pause() stops reading from the socket until resume(); every byte arrives in order', async () => {
    const size = 4 * 1024 * 1024;
    const data = Buffer.alloc(size);
    for (let i = 0; i < size; i += 1) data[i] = i % 251;
    const origin = await listen(rawServer((_head, socket) => {
      socket.write(`HTTP/1.1 200 OK\r\ncontent-length: ${size}\r\n\r\n`);
      socket.write(data);
    }));
    const c = await connect(origin);
    let pauses = 0;
    const answer = await send(c, {}, {
      onChunk: (controller) => {
        if (pauses < 5) {
          pauses += 1;
          controller.pause();
          setTimeout(() => controller.resume(), 20);
        }
      },
    });
    expect(pauses).toBe(5);
    expect(answer.body.equals(data)).toBe(true);
  });

  test('abort() fails the request with its reason and closes the connection', async () => {
    const origin = await listen(rawServer(() => undefined));
    const c = await connect(origin);
    const gone = new Promise((resolve) => c.once('disconnect', resolve));
    const reason = new Error('the app closed its connection');
    await expect(send(c, {}, { onStart: (controller) => setTimeout(() => controller.abort(reason), 20) })).rejects.toBe(reason);
    await gone;
  });

  test('a refused connection: connectionError, and a request dispatched before it fails with the same error', async () => {
    const probe = createNetServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as AddressInfo).port;
    await new Promise((resolve) => probe.close(resolve));
    const c = new H1Connection(`http://127.0.0.1:${port}`, { connect: buildConnector({ timeout: 2_000 }), idleMs: 10_000 });
    connections.push(c);
    const refused = new Promise<Error>((resolve) => c.once('connectionError', (_o: string, _t: unknown, err: Error) => resolve(err)));
    await expect(send(c, {})).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    expect(await refused).toMatchObject({ code: 'ECONNREFUSED' });
  });

  test('close() waits for the answer in flight, then closes; later requests are refused', async () => {
    const origin = await listen(rawServer((_head, socket) => setTimeout(() => socket.write('HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nlate'), 50)));
    const c = await connect(origin);
    const answer = send(c, {});
    const closing = c.close();
    expect((await answer).body.toString()).toBe('late');
    await closing;
    await expect(send(c, {})).rejects.toMatchObject({ code: 'UND_ERR_CLOSED' });
  });
});

/** Serves `bodies` with a content-length, in uneven writes so that reads come in pieces of every size. */
function unevenServer(bodies: Record<string, Buffer>): HttpServer {
  return createHttpServer((req, res) => {
    const body = bodies[req.url as string] as Buffer;
    res.writeHead(200, { 'content-length': body.length });
    let at = 0;
    const next = () => {
      if (at >= body.length) return void res.end();
      const size = 1 + Math.floor(Math.random() * 40_000);
      res.write(body.subarray(at, at + size));
      at += size;
      setImmediate(next);
    };
    next();
  });
}

/** One GET whose body chunks are all kept until its end, as a handler that cannot write them yet would. */
function fetchKept(c: H1Connection, path: string): Promise<{ sha256: string; chunks: number }> {
  return new Promise((resolve, reject) => {
    const kept: Buffer[] = [];
    c.dispatch({ method: 'GET', path, headers: {} } as Dispatcher.DispatchOptions, {
      onResponseData: (_controller, chunk) => { kept.push(chunk); },
      onResponseEnd: () => resolve({ sha256: createHash('sha256').update(Buffer.concat(kept)).digest('hex'), chunks: kept.length }),
      onResponseError: (_controller, err) => reject(err),
    });
  });
}

describe('reads into the shared buffer (shared-reads.ts): what a reader keeps survives every other connection\'s reads', () => {
  test('two connections download 4 MiB each at once, every chunk kept to the end: both bodies arrive byte for byte', async () => {
    const bodies = { '/a': randomBytes(4 << 20), '/b': randomBytes(4 << 20) };
    const origin = await listen(unevenServer(bodies));
    const [a, b] = await Promise.all([connect(origin, 10_000, sharedReadConnector({ timeout: 2_000 })), connect(origin, 10_000, sharedReadConnector({ timeout: 2_000 }))]);
    const [gotA, gotB] = await Promise.all([fetchKept(a as H1Connection, '/a'), fetchKept(b as H1Connection, '/b')]);
    expect(gotA.sha256).toBe(createHash('sha256').update(bodies['/a']).digest('hex'));
    expect(gotB.sha256).toBe(createHash('sha256').update(bodies['/b']).digest('hex'));
    // Many reads each: had the chunks been views of the shared buffer, later reads would have overwritten them.
    expect(gotA.chunks).toBeGreaterThan(10);
    expect(gotB.chunks).toBeGreaterThan(10);
  });

  test('readSocket says which sockets read into the shared buffer; others are read through their data events', async () => {
    const port = new URL(await listen(createNetServer((socket) => socket.end('hello')))).port;
    const target = { hostname: '127.0.0.1', host: `127.0.0.1:${port}`, protocol: 'http:', port } as never;
    // The reader is set in the connector's callback, as H1Connection sets its own.
    const read = (connector: ReturnType<typeof buildConnector>) => new Promise<{ shared: boolean; text: string }>((resolve, reject) => {
      connector(target, (err, socket) => {
        if (err || !socket) return reject(err ?? new Error('no socket'));
        let text = '';
        readSocket(socket as Socket, (chunk) => { text += chunk.toString(); });
        // A shared-buffer socket has no 'data' listener: its reads go to the callback.
        const shared = socket.listenerCount('data') === 0;
        socket.on('end', () => resolve({ shared, text }));
      });
    });
    expect(await read(sharedReadConnector({ timeout: 2_000 }))).toEqual({ shared: true, text: 'hello' });
    expect(await read(buildConnector({ timeout: 2_000 }))).toEqual({ shared: false, text: 'hello' });
  });

  test('bytes on a shared-buffer socket before anyone reads it close the socket', async () => {
    const port = new URL(await listen(createNetServer((socket) => socket.write('unasked')))).port;
    const socket = await new Promise<Socket>((resolve, reject) => {
      sharedReadConnector({ timeout: 2_000 })({ hostname: '127.0.0.1', host: `127.0.0.1:${port}`, protocol: 'http:', port } as never, (err, s) => (err ? reject(err) : resolve(s as Socket)));
    });
    await new Promise((resolve) => socket.on('close', resolve));
    expect(socket.destroyed).toBe(true);
  });
});

/**
 * One GET through a ViewReader handler (as response-relay.ts is): each chunk is hashed before the
 * callback returns, since a view is valid only until then. `hold` keeps every `n`-th view past
 * its callback, as a socket that cannot take a write whole does, and says so (keepsView).
 */
function fetchViews(c: H1Connection, path: string, hold = 0): Promise<{ sha256: string; views: number; held: number; overwritten: number; trailers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    const heldViews: { view: Buffer; copy: Buffer }[] = [];
    let seen = 0;
    let views = 0;
    const handler: Dispatcher.DispatchHandler & ViewReader = {
      takesViews: true,
      onResponseData: (controller, chunk) => {
        hash.update(chunk);
        if (isLentView(chunk)) views += 1;
        seen += 1;
        if (hold > 0 && seen % hold === 0 && isLentView(chunk)) {
          heldViews.push({ view: chunk, copy: Buffer.from(chunk) });
          keepsView(chunk);
        }
      },
      onResponseEnd: (_controller, trailers) => {
        // Views said to be kept are never overwritten by later reads, of this connection or any other.
        const overwritten = heldViews.filter(({ view, copy }) => !view.equals(copy)).length;
        resolve({ sha256: hash.digest('hex'), views, held: heldViews.length, overwritten, trailers });
      },
      onResponseError: (_controller, err) => reject(err),
    };
    c.dispatch({ method: 'GET', path, headers: {} } as Dispatcher.DispatchOptions, handler);
  });
}

describe('a body with a length read past the parser, as views (a ViewReader handler)', () => {
  test('two connections on the shared buffer download 4 MiB each at once: byte for byte, as views, and each connection carries the next request', async () => {
    const bodies = { '/a': randomBytes(4 << 20), '/b': randomBytes(4 << 20), '/small': randomBytes(3000) };
    const origin = await listen(unevenServer(bodies));
    const [a, b] = await Promise.all([connect(origin, 10_000, sharedReadConnector({ timeout: 2_000 })), connect(origin, 10_000, sharedReadConnector({ timeout: 2_000 }))]);
    // b keeps every fifth view past its callback and gives the buffer up each time.
    const [gotA, gotB] = await Promise.all([fetchViews(a, '/a'), fetchViews(b, '/b', 5)]);
    expect(gotA.sha256).toBe(createHash('sha256').update(bodies['/a']).digest('hex'));
    expect(gotB.sha256).toBe(createHash('sha256').update(bodies['/b']).digest('hex'));
    expect(gotA.views).toBeGreaterThan(10);
    expect(gotB.held).toBeGreaterThan(2);
    expect(gotB.overwritten).toBe(0);
    // The parser starts afresh after a body it did not read: the next answer on each connection is
    // whole. One that short (under 64 KiB) stays with the parser even for a ViewReader: no views.
    for (const c of [a, b]) {
      const next = await send(c, { path: '/small' });
      expect(next.body.equals(bodies['/small'])).toBe(true);
      const small = await fetchViews(c, '/small');
      expect(small.sha256).toBe(createHash('sha256').update(bodies['/small']).digest('hex'));
      expect(small.views).toBe(0);
    }
  });

  test('a handler that takes no views gets copies from the parser, as before', async () => {
    const origin = await listen(unevenServer({ '/a': randomBytes(1 << 20) }));
    const c = await connect(origin, 10_000, sharedReadConnector({ timeout: 2_000 }));
    let views = 0;
    await send(c, { path: '/a' }, { onChunk: (_controller, chunk) => { if (isLentView(chunk)) views += 1; } });
    expect(views).toBe(0);
  });

  test('bytes after the body\'s length: the answer is whole, and the connection is not used again', async () => {
    const body = randomBytes(100_000);
    const origin = await listen(rawServer((_head, socket) => {
      socket.write(`HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n\r\n`);
      socket.write(Buffer.concat([body, Buffer.from('HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nextra')]));
    }));
    const c = await connect(origin);
    const closed = new Promise((resolve) => c.once('disconnect', resolve));
    const got = await fetchViews(c, '/');
    expect(got.sha256).toBe(createHash('sha256').update(body).digest('hex'));
    await closed;
  });

  test('the upstream closes before the body\'s length: the request fails, naming it', async () => {
    const origin = await listen(rawServer((_head, socket) => {
      socket.write('HTTP/1.1 200 OK\r\ncontent-length: 500000\r\n\r\n');
      socket.end(randomBytes(200_000));
    }));
    const c = await connect(origin);
    await expect(fetchViews(c, '/')).rejects.toThrow('the upstream closed the connection before the answer ended');
  });

  test('HEAD, 204 and 304 answers with a content-length still have no body when the handler takes views', async () => {
    const long = 'x'.repeat(100_000);
    const origin = await listen(rawServer((head, socket) => {
      const path = head.split(' ')[1];
      if (path === '/204') socket.write('HTTP/1.1 204 No Content\r\ncontent-length: 100000\r\n\r\n');
      else if (path === '/304') socket.write('HTTP/1.1 304 Not Modified\r\ncontent-length: 100000\r\n\r\n');
      else if (head.startsWith('HEAD')) socket.write('HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n');
      else socket.write(`HTTP/1.1 200 OK\r\ncontent-length: ${long.length}\r\n\r\n${long}`);
    }));
    const c = await connect(origin);
    const viewing = (method: string, path: string) => new Promise<number>((resolve, reject) => {
      let bytes = 0;
      const handler: Dispatcher.DispatchHandler & ViewReader = {
        takesViews: true,
        onResponseData: (_controller, chunk) => { bytes += chunk.length; },
        onResponseEnd: () => resolve(bytes),
        onResponseError: (_controller, err) => reject(err),
      };
      c.dispatch({ method, path, headers: {} } as Dispatcher.DispatchOptions, handler);
    });
    expect(await viewing('HEAD', '/')).toBe(0);
    expect(await viewing('GET', '/204')).toBe(0);
    expect(await viewing('GET', '/304')).toBe(0);
    expect(await viewing('GET', '/')).toBe(100_000);
  });
});

describe('a chunked answer read past the parser, as views (a ViewReader handler)', () => {
  /** A server that answers `body` chunked, in chunks of random sizes written in random groups, with a trailer; `after` follows the last chunk. */
  function chunkedServer(body: Buffer, after = ''): NetServer {
    return rawServer((_head, socket) => {
      let text = 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-sum\r\n\r\n';
      const parts: Buffer[] = [Buffer.from(text)];
      for (let at = 0; at < body.length;) {
        const size = Math.min(body.length - at, 1 + Math.floor(Math.random() * 70_000));
        parts.push(Buffer.from(`${size.toString(16)}${Math.random() < 0.2 ? ';ext=1' : ''}\r\n`), body.subarray(at, at + size), Buffer.from('\r\n'));
        at += size;
      }
      text = `0\r\nx-sum: ${createHash('sha256').update(body).digest('hex')}\r\n\r\n${after}`;
      parts.push(Buffer.from(text));
      const all = Buffer.concat(parts);
      let at = 0;
      const next = () => {
        if (at >= all.length || socket.destroyed) return;
        const size = 1 + Math.floor(Math.random() * 90_000);
        socket.write(all.subarray(at, at + size));
        at += size;
        setImmediate(next);
      };
      next();
    });
  }

  test('4 MiB arrive byte for byte as views, some of them kept past their callbacks, with the trailers; the connection carries the next request', async () => {
    const body = randomBytes(4 << 20);
    const origin = await listen(chunkedServer(body));
    const c = await connect(origin, 10_000, sharedReadConnector({ timeout: 2_000 }));
    for (const hold of [0, 3]) {
      const got = await fetchViews(c, '/', hold);
      const sum = createHash('sha256').update(body).digest('hex');
      expect(got.sha256).toBe(sum);
      expect(got.trailers).toEqual({ 'x-sum': sum });
      expect(got.views).toBeGreaterThan(10);
      if (hold > 0) expect(got.held).toBeGreaterThan(2);
      expect(got.overwritten).toBe(0);
    }
  });

  test('framing llhttp would refuse fails the answer, naming it, and closes the connection', async () => {
    const origin = await listen(rawServer((_head, socket) => {
      socket.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n3 \r\nabc\r\n0\r\n\r\n');
    }));
    const c = await connect(origin);
    const closed = new Promise((resolve) => c.once('disconnect', resolve));
    await expect(fetchViews(c, '/')).rejects.toThrow(/the upstream's answer is not valid HTTP\/1\.1: malformed chunked body: byte 0x20 after a chunk size/);
    await closed;
  });

  test('the upstream closes before the last chunk: the request fails, naming it', async () => {
    const origin = await listen(rawServer((_head, socket) => {
      socket.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n');
      socket.end(Buffer.concat([Buffer.from('30000\r\n'), randomBytes(100_000)]));
    }));
    const c = await connect(origin);
    await expect(fetchViews(c, '/')).rejects.toThrow('the upstream closed the connection before the answer ended');
  });

  test('bytes after the last chunk: the answer is whole, and the connection is not used again', async () => {
    const body = randomBytes(100_000);
    const origin = await listen(chunkedServer(body, 'HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nextra'));
    const c = await connect(origin);
    const closed = new Promise((resolve) => c.once('disconnect', resolve));
    expect((await fetchViews(c, '/')).sha256).toBe(createHash('sha256').update(body).digest('hex'));
    await closed;
  });
});
