import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import { connect as netConnect, type AddressInfo, type Socket } from 'node:net';
import { afterEach, describe, expect, test, vi } from 'vitest';
import { onlyH2c, serveHttp1, type H1Request, type H1Response, type H1ServerOptions } from './h1-server.js';

/**
 * The sidecar's HTTP/1.1 server (h1-server.ts) on loopback, driven with raw bytes and with
 * node:http's client, and compared with node:http's own server where both should agree (how
 * repeated fields are joined, what a client reads back).
 */

const servers: Server[] = [];
const sockets: Socket[] = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((resolve) => s.close(resolve));
  }
});

type Handler = (req: H1Request, res: H1Response) => void;

async function h1(handler: Handler, options: Partial<H1ServerOptions> = {}): Promise<{ server: Server; port: number }> {
  const server = createServer();
  serveHttp1(server, { requestHeadersMs: 10_000, keepAliveMs: 10_000, streamIdleMs: 60_000, ...options });
  server.on('request', handler);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port };
}

async function nodeServer(handler: (req: IncomingMessage) => void): Promise<number> {
  const server = createServer((req, res) => {
    handler(req);
    req.resume();
    res.end('ok');
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

/** Writes `bytes`, reads until the server closes or `until` matches what arrived. */
function exchange(port: number, bytes: string | Buffer, until?: RegExp, timeoutMs = 5_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = netConnect(port, '127.0.0.1', () => socket.write(bytes));
    sockets.push(socket);
    let got = '';
    const timer = setTimeout(() => reject(new Error(`no complete answer in ${timeoutMs} ms: ${JSON.stringify(got)}`)), timeoutMs);
    socket.on('data', (c: Buffer) => {
      got += c.toString('latin1');
      if (until?.test(got)) {
        clearTimeout(timer);
        resolve(got);
      }
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
    socket.on('error', () => undefined);
  });
}

const heads = [
  'GET /a?x=1 HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2\r\nCookie: a=1\r\ncookie: b=2\r\nSet-Cookie: s=1\r\nset-cookie: t=2\r\n\r\n',
  'GET / HTTP/1.1\r\nHost: first\r\nhost: second\r\nContent-Type: text/plain\r\ncontent-type: text/html\r\nAuthorization: one\r\nauthorization: two\r\nUser-Agent: a\r\nuser-agent: b\r\n\r\n',
  'GET / HTTP/1.0\r\nAccept: a\r\nACCEPT: b\r\nX-Empty:\r\nX-Spaces:   padded   \r\n\r\n',
  `GET / HTTP/1.1\r\nHost: many\r\n${Array.from({ length: 60 }, (_, i) => `x-f${i}: v${i}\r\n`).join('')}\r\n`,
];

describe('the request head', () => {
  test.each(heads.map((h, i) => [i, h]))('head %i: method, url, version, rawHeaders and joined headers are what node:http gives', async (_i, head) => {
    let theirs: IncomingMessage | undefined;
    const nodePort = await nodeServer((req) => { theirs = req; });
    let ours: H1Request | undefined;
    const { port } = await h1((req, res) => {
      ours = req;
      res.end('ok');
    });
    await exchange(nodePort, head, /ok$/);
    await exchange(port, head, /ok$/);
    expect(ours?.method).toBe(theirs?.method);
    expect(ours?.url).toBe(theirs?.url);
    expect(ours?.httpVersion).toBe(theirs?.httpVersion);
    expect(ours?.rawHeaders).toEqual(theirs?.rawHeaders);
    // A field read alone, before the joined object exists, is what the object says.
    const names = [...new Set((theirs?.rawHeaders ?? []).filter((_v, i) => i % 2 === 0).map((n) => n.toLowerCase()))].filter((n) => n !== 'set-cookie');
    expect(names.length).toBeGreaterThan(0);
    const alone = Object.fromEntries([...names, 'absent'].map((n) => [n, ours?.field(n)]));
    expect({ ...ours?.headers }).toEqual({ ...theirs?.headers });
    for (const name of names) expect(alone[name]).toBe(theirs?.headers[name]);
    expect(alone.absent).toBeUndefined();
    expect(ours?.field('host')).toBe(theirs?.headers.host);
  });

  test('bytes that are not HTTP/1.1, and an HTTP/1.1 request without Host, go to clientError; nothing reaches the handler', async () => {
    const seen: string[] = [];
    const { server, port } = await h1((req, res) => { seen.push(req.url); res.end(); });
    const errors: string[] = [];
    server.on('clientError', (err: Error & { code?: string }, socket: Socket) => {
      errors.push(err.code ?? err.message);
      socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    });
    expect(await exchange(port, 'GET / HTTP/1.1\r\nHost: a\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 /);
    expect(await exchange(port, 'GET / HTTP/1.1\r\nx: y\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 /);
    expect(errors[0]).toMatch(/^HPE_/);
    expect(errors[1]).toContain('without a Host field');
    expect(seen).toEqual([]);
  });
});

describe('the response', () => {
  test('framed by its length, chunked with trailers when it has none, close-delimited for HTTP/1.0, bodiless for HEAD and 204', async () => {
    const { port } = await h1((req, res) => {
      if (req.url === '/length') return void res.writeHead(200, { 'content-length': 5 }).end('hello');
      if (req.url === '/none') {
        res.writeHead(204, {});
        return void res.end();
      }
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('abc');
      res.write(Buffer.from('def'));
      res.addTrailers({ 'x-sum': '6' });
      res.end();
    });
    const length = await exchange(port, 'GET /length HTTP/1.1\r\nhost: a\r\n\r\n', /hello$/);
    expect(length).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(length).toMatch(/\r\ncontent-length: 5\r\n/);
    expect(length).toMatch(/\r\nconnection: keep-alive\r\nkeep-alive: timeout=10\r\n/);
    expect(length).toMatch(/\r\ndate: \w{3}, \d{2} \w{3} \d{4} /);
    const chunked = await exchange(port, 'GET /chunks HTTP/1.1\r\nhost: a\r\n\r\n', /0\r\nx-sum: 6\r\n\r\n$/);
    expect(chunked).toMatch(/transfer-encoding: chunked\r\n/);
    expect(chunked.slice(chunked.indexOf('\r\n\r\n') + 4)).toBe('3\r\nabc\r\n3\r\ndef\r\n0\r\nx-sum: 6\r\n\r\n');
    // HTTP/1.0 has no chunked coding: the body ends where the connection does.
    const old = await exchange(port, 'GET /chunks HTTP/1.0\r\n\r\n');
    expect(old).toMatch(/\r\nconnection: close\r\n/);
    expect(old.endsWith('\r\n\r\nabcdef')).toBe(true);
    const head = await exchange(port, 'HEAD /length HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n');
    expect(head).toMatch(/content-length: 5\r\n/);
    expect(head.endsWith('\r\n\r\n')).toBe(true);
    const none = await exchange(port, 'GET /none HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n');
    expect(none).toMatch(/^HTTP\/1\.1 204 No Content\r\n/);
    expect(none).not.toMatch(/transfer-encoding/);
    expect(none.endsWith('\r\n\r\n')).toBe(true);
  });

  test('an answer that ends goes out at once, head and body in one write, not after the rest of its tick', async () => {
    const seen: { corkedAfterWrite: number; corkedAfterEnd: number; writes: number }[] = [];
    const { port } = await h1((req, res) => {
      const socket = req.socket;
      // What the stream hands to the handle: one call per system write (writev for several chunks).
      let writes = 0;
      const write = socket._write.bind(socket);
      const writev = socket._writev?.bind(socket);
      socket._write = (...args: Parameters<Socket['_write']>) => {
        writes += 1;
        write(...args);
      };
      if (writev) {
        socket._writev = (...args: Parameters<NonNullable<Socket['_writev']>>) => {
          writes += 1;
          writev(...args);
        };
      }
      res.writeHead(200, { 'content-length': 10 });
      res.write('hello');
      const corkedAfterWrite = socket.writableCorked;
      res.end('world');
      // Nothing more is written in this tick: whatever went out went out in end().
      seen.push({ corkedAfterWrite, corkedAfterEnd: socket.writableCorked, writes });
    });
    const got = await exchange(port, 'GET / HTTP/1.1\r\nhost: a\r\n\r\n', /helloworld$/);
    expect(got).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    // Written in the same tick, the head and both chunks wait for the end and leave in one writev.
    expect(seen).toEqual([{ corkedAfterWrite: 1, corkedAfterEnd: 0, writes: 1 }]);
  });

  test.each([1, 2048, 2049, 70_000])('a first body chunk of %i bytes written as a Buffer arrives whole after the head, with its write callback called; HTTP/1.0 and HEAD too', async (size) => {
    const body = Buffer.alloc(size, 'x');
    body[size - 1] = 0x21;
    let callbacks = 0;
    const { port } = await h1((req, res) => {
      if (req.url === '/close') res.writeHead(200, { 'content-type': 'text/plain' });
      else res.writeHead(200, { 'content-length': size });
      res.write(body, () => { callbacks += 1; });
      res.end();
    });
    const got = await exchange(port, 'GET /length HTTP/1.1\r\nhost: a\r\n\r\n', new RegExp(`x*!$`));
    expect(got).toMatch(new RegExp(`\r\ncontent-length: ${size}\r\n`));
    expect(got.slice(got.indexOf('\r\n\r\n') + 4)).toBe(body.toString('latin1'));
    const old = await exchange(port, 'GET /close HTTP/1.0\r\n\r\n');
    expect(old).toMatch(/\r\nconnection: close\r\n/);
    expect(old.slice(old.indexOf('\r\n\r\n') + 4)).toBe(body.toString('latin1'));
    const head = await exchange(port, 'HEAD /length HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n');
    expect(head.endsWith('\r\n\r\n')).toBe(true);
    expect(callbacks).toBe(3);
  });

  test('node:http\'s client reads a streamed answer and its trailers over one kept connection', async () => {
    const { port } = await h1((req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-n' });
      res.write(`${req.url}:`);
      setTimeout(() => {
        res.addTrailers({ 'x-n': req.url.slice(1) });
        res.end('done');
      }, 5);
    });
    const agent = new (await import('node:http')).Agent({ keepAlive: true, maxSockets: 1 });
    const get = (path: string) => new Promise<{ body: string; trailers: NodeJS.Dict<string>; socket: Socket }>((resolve, reject) => {
      httpRequest({ port, host: '127.0.0.1', path, agent }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => { body += c; });
        res.on('end', () => resolve({ body, trailers: res.trailers, socket: res.socket as Socket }));
      }).on('error', reject).end();
    });
    const first = await get('/1');
    const second = await get('/2');
    agent.destroy();
    expect(first.body).toBe('/1:done');
    expect(first.trailers).toEqual({ 'x-n': '1' });
    expect(second.body).toBe('/2:done');
    expect(second.socket).toBe(first.socket);
  });
});

describe('a relayed head, as the upstream\'s parser gave it (writeFields)', () => {
  const upstream = ['Content-Type', 'text/plain', 'Connection', 'close', 'Keep-Alive', 'timeout=5', 'Transfer-Encoding', 'chunked', 'X-Isthmus-Report', 'secret', 'Set-Cookie', 'a=1', 'set-cookie', 'b=2', 'TE', 'trailers', 'Proxy-Connection', 'x', 'Upgrade', 'h2c', 'Trailer', 'x-n'];

  test.each([
    // [case, fields the upstream adds, a field dropped, what must be in the head, what must not]
    ['no length: chunked, its own connection fields', [], 'x-isthmus-report', ['Content-Type: text/plain', 'Set-Cookie: a=1', 'set-cookie: b=2', 'transfer-encoding: chunked', 'connection: keep-alive'], ['Connection: close', 'Keep-Alive:', 'Transfer-Encoding:', 'X-Isthmus-Report', 'TE:', 'Proxy-Connection', 'Upgrade', 'Trailer:']],
    ['a length and a date of its own, the report kept when not dropped', ['Content-Length', '3', 'Date', 'yesterday'], undefined, ['Content-Length: 3', 'X-Isthmus-Report: secret', 'Date: yesterday'], ['transfer-encoding', 'date: ']],
  ] as const)('%s', async (_case, extra, drop, present, absent) => {
    const withLength = extra.length > 0;
    const { port } = await h1((_req, res) => {
      res.writeFields(201, 'Made', [...upstream, ...extra], drop);
      res.end('abc');
    });
    const got = await exchange(port, 'GET / HTTP/1.1\r\nhost: a\r\n\r\n', withLength ? /abc$/ : /0\r\n\r\n$/);
    const head = got.slice(0, got.indexOf('\r\n\r\n') + 2);
    expect(head.startsWith('HTTP/1.1 201 Made\r\n')).toBe(true);
    for (const line of present) expect(head).toContain(`\r\n${line}`);
    for (const line of absent) expect(head).not.toContain(`\r\n${line}`);
    if (!withLength) expect(head).toMatch(/\r\ndate: \w{3}, \d{2} \w{3} \d{4} /);
  });

  test('a field set before it (setHeader) is merged by name, the head\'s own value winning', async () => {
    const { port } = await h1((_req, res) => {
      res.setHeader('x-extra', 'mine');
      res.setHeader('content-type', 'overridden');
      res.writeFields(200, '', ['Content-Type', 'text/plain', 'Connection', 'close', 'Content-Length', '2'], undefined);
      res.end('ok');
    });
    const got = await exchange(port, 'GET / HTTP/1.1\r\nhost: a\r\n\r\n', /ok$/);
    expect(got).toContain('\r\nx-extra: mine\r\n');
    expect(got).toContain('\r\ncontent-type: text/plain\r\n');
    expect(got).not.toContain('overridden');
    expect(got).not.toMatch(/\r\nconnection: close/i);
    expect(got.startsWith('HTTP/1.1 200 OK\r\n')).toBe(true);
  });
});

describe('a connection', () => {
  test('pipelined requests are answered in order, one at a time, each with its own body', async () => {
    const order: string[] = [];
    const { port } = await h1((req, res) => {
      order.push(`start ${req.url}`);
      const chunks: Buffer[] = [];
      const answer = () => setTimeout(() => {
        order.push(`end ${req.url}`);
        res.end(`${req.url}=${Buffer.concat(chunks).toString()};`);
      }, req.url === '/1' ? 50 : 1);
      if (!req.body) return answer();
      req.body.on('data', (c: Buffer) => chunks.push(c));
      req.body.on('end', answer);
    });
    const got = await exchange(port, [
      'POST /1 HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\n\r\none',
      'POST /2 HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\n',
      'GET /3 HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n',
    ].join(''));
    expect(got.match(/\/\d=[a-z]*;/g)).toEqual(['/1=one;', '/2=two;', '/3=;']);
    expect(order).toEqual(['start /1', 'end /1', 'start /2', 'end /2', 'start /3', 'end /3']);
  });

  test('an answer given before the body was read: the rest of the body is dropped and the next request is served', async () => {
    const { port } = await h1((req, res) => res.end(`saw ${req.url}`));
    const got = await exchange(port, `POST /upload HTTP/1.1\r\nhost: a\r\ncontent-length: 100000\r\n\r\n${'x'.repeat(100_000)}GET /next HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n`);
    expect(got.match(/saw \/(upload|next)/g)).toEqual(['saw /upload', 'saw /next']);
  });

  test('a body larger than the reader\'s buffer, read after it all arrived: the connection\'s next request is served', async () => {
    // The body's stream took more than its high-water mark at once, so reading held the socket;
    // the body ended with that hold on, and the next request on the connection was never read.
    const { port } = await h1((req, res) => {
      let bytes = 0;
      setTimeout(() => {
        if (!req.body) return void res.end(`${req.url} 0`);
        req.body.on('data', (c: Buffer) => { bytes += c.length; });
        req.body.on('end', () => res.end(`${req.url} ${bytes}`));
      }, 30);
    });
    const socket = netConnect(port, '127.0.0.1');
    sockets.push(socket);
    let got = '';
    socket.on('data', (c: Buffer) => { got += c.toString('latin1'); });
    const answered = async (pattern: RegExp) => {
      const until = Date.now() + 3000;
      while (!pattern.test(got) && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
      return got;
    };
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    socket.write(`POST /upload HTTP/1.1\r\nhost: a\r\ncontent-length: 20000\r\n\r\n${'x'.repeat(20_000)}`);
    expect(await answered(/\/upload 20000/)).toMatch(/\/upload 20000/);
    socket.write('GET /next HTTP/1.1\r\nhost: a\r\n\r\n');
    expect(await answered(/\/next 0/)).toMatch(/\/next 0/);
  });

  test('a body nobody reads, cut short by bad bytes or by the caller going away, throws nothing; the server serves on', async () => {
    // The fuzz test found it: destroying such a body with an error, with no 'error' listener, threw.
    const { server, port } = await h1(() => undefined);
    server.on('clientError', (_err: Error, socket: Socket) => socket.destroy());
    await exchange(port, 'POST /a HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabcX\r\n');
    const socket = netConnect(port, '127.0.0.1', () => socket.write('POST /b HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n\r\nabc'));
    sockets.push(socket);
    await new Promise((resolve) => setTimeout(resolve, 50));
    socket.destroy();
    // A body that waits behind another request's answer, when the connection breaks.
    await exchange(port, 'GET /c HTTP/1.1\r\nhost: a\r\n\r\nPOST /d HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\nab\x00\r\n\r\n', undefined, 300).catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 100));
    server.removeAllListeners('request');
    server.on('request', (_req: H1Request, res: H1Response) => res.end('still here'));
    expect(await exchange(port, 'GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n')).toMatch(/still here$/);
  });

  test('Expect: 100-continue gets 100 before the body is sent, then the answer', async () => {
    const { port } = await h1((req, res) => {
      let n = 0;
      req.body?.on('data', (c: Buffer) => { n += c.length; });
      req.body?.on('end', () => res.end(`got ${n}`));
    });
    const socket = netConnect(port, '127.0.0.1');
    sockets.push(socket);
    socket.write('POST / HTTP/1.1\r\nhost: a\r\nexpect: 100-continue\r\ncontent-length: 4\r\n\r\n');
    const seen = await new Promise<string>((resolve) => {
      let got = '';
      socket.on('data', (c: Buffer) => {
        got += c.toString('latin1');
        if (got === 'HTTP/1.1 100 Continue\r\n\r\n') socket.write('body');
        if (got.endsWith('got 4')) resolve(got);
      });
    });
    expect(seen.startsWith('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n')).toBe(true);
  });

  test('a body nobody reads pauses the socket: what the server holds stays bounded', async () => {
    let body: H1Request['body'];
    let res: H1Response | undefined;
    const { port } = await h1((req, r) => { body = req.body; res = r; });
    const socket = netConnect(port, '127.0.0.1');
    sockets.push(socket);
    socket.write('POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 33554432\r\n\r\n');
    const chunk = Buffer.alloc(1024 * 1024, 'z');
    for (let i = 0; i < 32; i++) socket.write(chunk);
    await new Promise((resolve) => setTimeout(resolve, 500));
    // The body holds at most its high-water mark plus one read; the rest waits in the kernel and the client.
    expect(body?.readableLength ?? 0).toBeLessThan(256 * 1024);
    expect(socket.writableLength).toBeGreaterThan(16 * 1024 * 1024);
    let read = 0;
    body?.on('data', (c: Buffer) => { read += c.length; });
    await new Promise((resolve) => body?.on('end', resolve));
    expect(read).toBe(32 * 1024 * 1024);
    res?.end();
  });

  test('a slow body keeps its connection: bytes arriving count as activity for streamIdleMs', async () => {
    const { port } = await h1((req, res) => {
      let got = '';
      req.body?.on('data', (c: Buffer) => { got += c.toString(); });
      req.body?.on('end', () => res.end(`got ${got}`));
    }, { streamIdleMs: 1000 });
    const socket = netConnect(port, '127.0.0.1');
    sockets.push(socket);
    let answer = '';
    socket.on('data', (c: Buffer) => { answer += c.toString(); });
    const closed = new Promise((resolve) => socket.on('close', resolve));
    socket.write('POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n\r\n');
    // 10 bytes, one every 250 ms: 2.5 s in all, well past the 1 s limit, never near 1 s silent.
    for (const byte of 'abcdefghij') {
      await new Promise((resolve) => setTimeout(resolve, 250));
      socket.write(byte);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(answer).toMatch(/got abcdefghij$/);
    // Silent now in both directions: closed by the limit.
    await closed;
  });

  test('an open-ended answer may be silent for openEndedIdleMs; once it ends, and for an answer of a stated length, streamIdleMs holds', async () => {
    const { port } = await h1((req, res) => {
      if (req.url === '/upload') {
        req.body?.resume();
        return;
      }
      // An event, 600 ms of silence, an event: with a length only at /download.
      res.writeHead(200, req.url === '/download' ? { 'content-length': 13 } : {});
      res.write('first\n');
      setTimeout(() => { if (!res.destroyed) res.end('second\n'); }, 600);
    }, { streamIdleMs: 200, openEndedIdleMs: 20_000 });
    const open = (): { socket: Socket; text: () => string; closed: Promise<void> } => {
      const socket = netConnect(port, '127.0.0.1');
      sockets.push(socket);
      let text = '';
      socket.on('data', (c: Buffer) => { text += c.toString(); });
      return { socket, text: () => text, closed: new Promise((resolve) => socket.on('close', () => resolve())) };
    };
    const events = open();
    events.socket.write('GET /events HTTP/1.1\r\nhost: a\r\n\r\n');
    await vi.waitFor(() => expect(events.text()).toMatch(/first\n\r\n7\r\nsecond\n\r\n0\r\n\r\n$/), { timeout: 3_000 });
    // The answer is over: a request body that stalls on the same connection is cut after streamIdleMs.
    // (openEndedIdleMs is 20 s: a connection still under it would outlast the 3 s waited for.)
    events.socket.write('POST /upload HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n\r\nabc');
    const within = (ms: number) => new Promise<string>((resolve) => setTimeout(() => resolve('still open'), ms));
    expect(await Promise.race([events.closed.then(() => 'closed'), within(3_000)])).toBe('closed');

    // With a content-length, the same silence is a stalled download: cut before its second event.
    const download = open();
    download.socket.write('GET /download HTTP/1.1\r\nhost: a\r\n\r\n');
    await download.closed;
    expect(download.text()).toMatch(/content-length: 13\r\n[^]*\r\n\r\nfirst\n$/);
  });

  test('a request handler that throws loses its connection only: the process goes on and the next connection is served', async () => {
    const { port } = await h1((req, res) => {
      if (req.url === '/throw') throw new Error('a bug in a handler');
      res.end('fine');
    });
    await exchange(port, 'GET /throw HTTP/1.1\r\nhost: a\r\n\r\n');
    expect(await exchange(port, 'GET / HTTP/1.1\r\nhost: a\r\n\r\n', /fine$/)).toMatch(/^HTTP\/1\.1 200 /);
  });

  test('a head not complete within requestHeadersMs goes to clientError as ERR_HTTP_REQUEST_TIMEOUT', async () => {
    const { server, port } = await h1(() => undefined, { requestHeadersMs: 300 });
    const codes: string[] = [];
    server.on('clientError', (err: Error & { code?: string }, socket: Socket) => {
      codes.push(err.code ?? '');
      socket.end('HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    });
    const started = Date.now();
    const got = await exchange(port, 'GET / HTTP/1.1\r\nhost: a\r\n');
    expect(got).toMatch(/^HTTP\/1\.1 408 /);
    expect(codes).toEqual(['ERR_HTTP_REQUEST_TIMEOUT']);
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
  });

  test('on a kept connection, a second head that stalls is timed from its first byte by requestHeadersMs, not by keepAliveMs', async () => {
    const { server, port } = await h1((_req, res) => res.end('x'), { requestHeadersMs: 300, keepAliveMs: 10_000 });
    server.on('clientError', (_err: Error, socket: Socket) => socket.end('HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n'));
    const socket = netConnect(port, '127.0.0.1');
    sockets.push(socket);
    let got = '';
    socket.on('data', (c: Buffer) => { got += c.toString('latin1'); });
    const closed = new Promise((resolve) => socket.on('close', resolve));
    socket.write('GET / HTTP/1.1\r\nhost: a\r\n\r\n');
    await new Promise((resolve) => socket.once('data', resolve));
    // Idle for longer than requestHeadersMs: a kept connection waits for its next request that long.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(socket.destroyed).toBe(false);
    const started = Date.now();
    socket.write('GET /second HTTP/1.1\r\nhost');
    await closed;
    expect(got).toMatch(/^HTTP\/1\.1 200 [\s\S]*HTTP\/1\.1 408 /);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  test('the parser reads the socket itself (its handle is consumed), also after bytes a protocol sniff put back; every request on the connection is served', async () => {
    const consumed: unknown[] = [];
    const server = createServer();
    serveHttp1(server, { requestHeadersMs: 10_000, keepAliveMs: 10_000, streamIdleMs: 60_000 });
    server.on('request', (req: H1Request, res: H1Response) => {
      consumed.push((req.socket as unknown as { _handle?: { _consumed?: boolean } })._handle?._consumed);
      res.end(`answer ${req.url}`);
    });
    // What protocol-sniff.ts does: read the first bytes, put them back, hand the socket over.
    const [accept] = server.listeners('connection') as ((socket: Socket) => void)[];
    server.removeAllListeners('connection');
    server.on('connection', (socket: Socket) => {
      socket.once('data', (first: Buffer) => {
        socket.pause();
        socket.unshift(first);
        (accept as (socket: Socket) => void).call(server, socket);
        socket.resume();
      });
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const socket = netConnect((server.address() as AddressInfo).port, '127.0.0.1');
    sockets.push(socket);
    let got = '';
    for (const path of ['/1', '/2', '/3']) {
      socket.write(`GET ${path} HTTP/1.1\r\nhost: a\r\n\r\n`);
      got = await new Promise<string>((resolve) => {
        const onData = (c: Buffer) => {
          got += c.toString('latin1');
          if (got.endsWith(`answer ${path}`)) {
            socket.removeListener('data', onData);
            resolve(got);
          }
        };
        socket.on('data', onData);
      });
    }
    expect(got.match(/answer \/\d/g)).toEqual(['answer /1', 'answer /2', 'answer /3']);
    expect(consumed).toEqual([true, true, true]);
  });

  test('a kept connection idle for keepAliveMs is closed, and server.close() closes idle ones at once', async () => {
    const { server, port } = await h1((_req, res) => res.end('x'), { keepAliveMs: 300 });
    const socket = netConnect(port, '127.0.0.1');
    sockets.push(socket);
    const closed = new Promise<number>((resolve) => socket.on('close', () => resolve(Date.now())));
    socket.write('GET / HTTP/1.1\r\nhost: a\r\n\r\n');
    const answeredAt = await new Promise<number>((resolve) => socket.once('data', () => resolve(Date.now())));
    expect((await closed) - answeredAt).toBeGreaterThanOrEqual(250);

    const second = netConnect(port, '127.0.0.1');
    sockets.push(second);
    second.write('GET / HTTP/1.1\r\nhost: a\r\n\r\n');
    await new Promise((resolve) => second.once('data', resolve));
    const closedAgain = new Promise((resolve) => second.on('close', resolve));
    await new Promise((resolve) => server.close(resolve));
    await closedAgain;
  });

  test('an upgrade and a CONNECT leave HTTP with the bytes that followed their heads', async () => {
    const { server, port } = await h1(() => undefined);
    server.on('upgrade', (req: H1Request, socket: Socket, head: Buffer) => {
      socket.end(`HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: ${req.headers.upgrade}\r\n\r\n${head.toString()}`);
    });
    server.on('connect', (req: H1Request, socket: Socket, head: Buffer) => {
      socket.write(`HTTP/1.1 200 OK\r\n\r\n${req.url}|${head.toString()}`);
      socket.on('data', (c: Buffer) => socket.end(c));
    });
    const up = await exchange(port, 'GET /ws HTTP/1.1\r\nhost: a\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\nfirst');
    expect(up).toBe('HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\nfirst');
    const socket = netConnect(port, '127.0.0.1');
    sockets.push(socket);
    socket.write('CONNECT db.demo.mesh:5432 HTTP/1.1\r\nhost: db.demo.mesh:5432\r\n\r\nhello');
    const got = await new Promise<string>((resolve) => {
      let all = '';
      socket.on('data', (c: Buffer) => {
        all += c.toString();
        if (all.endsWith('hello')) socket.write(' again');
        if (all.endsWith(' again')) resolve(all);
      });
    });
    expect(got).toBe('HTTP/1.1 200 OK\r\n\r\ndb.demo.mesh:5432|hello again');
  });
});

describe('an Upgrade to h2c alone is not an upgrade (onlyH2c)', () => {
  test.each([
    [['Upgrade', 'h2c'], true],
    [['upgrade', 'H2C'], true],
    [['Upgrade', 'h2c', 'upgrade', ' h2c '], true],
    [['Upgrade', 'websocket'], false],
    [['Upgrade', 'h2c, websocket'], false],
    [['Connection', 'upgrade'], false],
    [[], false],
  ])('%j: %s', (raw, expected) => {
    expect(onlyH2c(raw)).toBe(expected);
  });

  test('served as a request, with a body and requests pipelined behind it in the same read', async () => {
    const seen: string[] = [];
    let upgrades = 0;
    const { server, port } = await h1((req, res) => {
      const chunks: Buffer[] = [];
      const done = () => {
        seen.push(`${req.method} ${req.url} upgrade=${req.upgrade} body=${Buffer.concat(chunks).toString()}`);
        res.writeHead(200, { 'content-length': 2 }).end('ok');
      };
      if (!req.body) return done();
      req.body.on('data', (c: Buffer) => chunks.push(c));
      req.body.on('end', done);
    });
    server.on('upgrade', (_req: H1Request, socket: Socket) => {
      upgrades += 1;
      socket.destroy();
    });
    const h2c = 'Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n';
    const got = await exchange(port, `POST /a HTTP/1.1\r\nhost: a\r\n${h2c}content-length: 3\r\n\r\nabcGET /b HTTP/1.1\r\nhost: a\r\n${h2c}\r\nGET /c HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n`);
    expect(got.match(/HTTP\/1\.1 \d{3}/g)).toEqual(['HTTP/1.1 200', 'HTTP/1.1 200', 'HTTP/1.1 200']);
    expect(seen).toEqual(['POST /a upgrade=false body=abc', 'GET /b upgrade=false body=', 'GET /c upgrade=false body=']);
    expect(upgrades).toBe(0);
    // A WebSocket upgrade is still one.
    await exchange(port, 'GET /ws HTTP/1.1\r\nhost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
    expect(upgrades).toBe(1);
  });
});
