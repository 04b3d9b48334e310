import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { createServer as createHttpsServer, get as httpsGet } from 'node:https';
import { connect as netConnect, type AddressInfo, type Socket } from 'node:net';
import type { Dispatcher } from 'undici';
import { afterEach, describe, expect, test, vi } from 'vitest';
import { serverTls, testPki } from '../../test/helpers/sidecar-fixtures.js';
import { bodyTrailers } from './body-trailers.js';
import { serveHttp1, type H1Request, type H1Response } from './h1-server.js';
import { keepsView } from './lent-views.js';
import { ResponseRelay } from './response-relay.js';
import { UpstreamPool } from './upstream-pool.js';

/**
 * Long request bodies read past the parser (h1-server.ts `bodyViews`): each read reaches the
 * body's reader as a view of the connection's own buffer, and a view something still holds is
 * left to it (lent-views.ts). Every body is checked by its SHA-256 at the far end.
 */

const servers: Server[] = [];
const sockets: Socket[] = [];
const pools: UpstreamPool[] = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const p of pools.splice(0)) await p.destroy();
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((resolve) => s.close(resolve));
  }
});

type Handler = (req: H1Request, res: H1Response) => void;

async function listen(server: Server): Promise<number> {
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

async function h1(handler: Handler, bodyViews = true): Promise<number> {
  const server = createServer();
  serveHttp1(server, { requestHeadersMs: 10_000, keepAliveMs: 10_000, streamIdleMs: 60_000, bodyViews });
  server.on('request', handler);
  return listen(server);
}

const sha = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

type Framing = 'length' | 'chunked';

/** A request's head and body framed by a Content-Length, or chunked in pieces of `piece` bytes (each its own chunk). */
function framed(path: string, body: Buffer, framing: Framing, piece = 200_000): Buffer[] {
  if (framing === 'length') return [Buffer.from(`POST ${path} HTTP/1.1\r\nHost: h\r\nContent-Length: ${body.length}\r\n\r\n`), body];
  const parts: Buffer[] = [Buffer.from(`POST ${path} HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n`)];
  for (let at = 0; at < body.length; at += piece) {
    const data = body.subarray(at, at + piece);
    parts.push(Buffer.from(`${data.length.toString(16)}\r\n`), data, Buffer.from('\r\n'));
  }
  parts.push(Buffer.from('0\r\n\r\n'));
  return parts;
}

/**
 * A POST of `body`, framed by its length or chunked, written in pieces of `piece` bytes, then
 * `after` on the same connection; what came back once `answers` answers have arrived whole (each
 * of them short, with a length), or the connection closed. The caller does not half-close:
 * node:http and h1-server.ts end a connection on the caller's FIN.
 */
function post(port: number, body: Buffer, after: Buffer | string = '', answers = 1, piece = 200_000, framing: Framing = 'length'): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = netConnect(port, '127.0.0.1');
    sockets.push(socket);
    let got = '';
    const whole = () => [...got.matchAll(/content-length: (\d+)\r\n(?:.*\r\n)*?\r\n/gi)]
      .filter((m) => got.length >= (m.index ?? 0) + m[0].length + Number(m[1])).length >= answers;
    socket.on('data', (c: Buffer) => {
      got += c.toString('latin1');
      if (whole()) {
        socket.destroy();
        resolve(got);
      }
    });
    socket.on('close', () => resolve(got));
    socket.on('error', reject);
    socket.on('connect', async () => {
      const [head, ...rest] = framed('/upload', body, framing, piece);
      socket.write(head as Buffer);
      const bytes = framing === 'length' ? rest : [Buffer.concat(rest)];
      for (const part of bytes) {
        for (let at = 0; at < part.length; at += piece) {
          // Each piece waits for the one before it to be taken, so the server reads many times.
          if (!socket.write(part.subarray(at, at + piece))) await new Promise((r) => socket.once('drain', r));
        }
      }
      socket.write(typeof after === 'string' ? Buffer.from(after, 'latin1') : after);
    });
  });
}

/** Answers each request with the SHA-256 and length of its body, read through `read`. */
function hashing(read: (req: H1Request, done: (bytes: Buffer) => void) => void): Handler {
  return (req, res) => {
    if (!req.body) {
      res.writeHead(200, { 'content-length': '7' });
      res.end('no body');
      return;
    }
    read(req, (bytes) => {
      const text = `${bytes.length} ${sha(bytes)}`;
      res.writeHead(200, { 'content-length': String(text.length) });
      res.end(text);
    });
  };
}

describe.each<[string, Framing]>([
  ['with a length', 'length'],
  ['chunked', 'chunked'],
])('a long request body %s, read as views', (_framing, framing) => {
  test('reaches a reader that hands each chunk on at once whole, in views of a few reused buffers', async () => {
    const body = randomBytes(8 * 1024 * 1024);
    const buffers = new Set<ArrayBuffer>();
    let chunks = 0;
    const port = await h1((req, res) => {
      const hash = createHash('sha256');
      let bytes = 0;
      req.body?.on('data', (c: Buffer) => {
        chunks += 1;
        buffers.add(c.buffer as ArrayBuffer);
        hash.update(c);
        bytes += c.length;
      });
      req.body?.on('end', () => {
        const text = `${bytes} ${hash.digest('hex')}`;
        res.writeHead(200, { 'content-length': String(text.length) });
        res.end(text);
      });
    });
    const answer = await post(port, body, '', 1, 200_000, framing);
    expect(answer).toContain(`${body.length} ${sha(body)}`);
    // Node's parser would hand over a fresh buffer per chunk; here most chunks share one.
    expect(chunks).toBeGreaterThan(20);
    expect(buffers.size).toBeLessThan(chunks / 4);
  });

  test('a reader that keeps each chunk and says so (keepsView) gets every byte', async () => {
    const body = randomBytes(4 * 1024 * 1024);
    const port = await h1(hashing((req, done) => {
      const kept: Buffer[] = [];
      req.body?.on('data', (c: Buffer) => {
        kept.push(c);
        keepsView(c);
      });
      req.body?.on('end', () => done(Buffer.concat(kept)));
    }));
    expect(await post(port, body, '', 1, 200_000, framing)).toContain(`${body.length} ${sha(body)}`);
  });

  test('a body nobody reads for a while is held by its own stream, and read later whole', async () => {
    const body = randomBytes(3 * 1024 * 1024);
    const port = await h1(hashing((req, done) => {
      setTimeout(async () => {
        const kept: Buffer[] = [];
        for await (const c of req.body as AsyncIterable<Buffer>) kept.push(c);
        done(Buffer.concat(kept));
      }, 300);
    }));
    expect(await post(port, body, '', 1, 200_000, framing)).toContain(`${body.length} ${sha(body)}`);
  });

  test('relayed to a slow upstream over a pooled connection (the inbound\'s path), every byte arrives', async () => {
    const body = randomBytes(16 * 1024 * 1024);
    // The upstream stops reading for a while, so the relay's writes are not taken whole.
    const upstreamPort = await listen(createServer((req, res) => {
      const hash = createHash('sha256');
      let bytes = 0;
      req.pause();
      setTimeout(() => {
        req.on('data', (c: Buffer) => { hash.update(c); bytes += c.length; });
        req.on('end', () => res.end(`${bytes} ${hash.digest('hex')}`));
        req.resume();
      }, 500);
    }));
    const pool = new UpstreamPool(`http://127.0.0.1:${upstreamPort}`, { connections: 4, maxConnecting: 2, idleMs: 10_000, connect: { timeout: 5_000 } });
    pools.push(pool);
    const port = await h1((req, res) => {
      const length = req.headers['content-length'];
      pool.request({ path: '/', method: 'POST', headers: length === undefined ? {} : { 'content-length': length }, body: req.body ?? null } as Dispatcher.RequestOptions)
        .then(async (answer) => {
          const text = await answer.body.text();
          res.writeHead(answer.statusCode, { 'content-length': String(text.length) });
          res.end(text);
        })
        .catch((err: Error) => {
          res.writeHead(502);
          res.end(err.message);
        });
    });
    expect(await post(port, body, '', 1, 200_000, framing)).toContain(`${body.length} ${sha(body)}`);
  });

  test('a request pipelined after the body is read and answered on the same connection', async () => {
    const body = randomBytes(2 * 1024 * 1024 + 7);
    const port = await h1(hashing((req, done) => {
      const hash: Buffer[] = [];
      req.body?.on('data', (c: Buffer) => { hash.push(Buffer.from(c)); });
      req.body?.on('end', () => done(Buffer.concat(hash)));
    }));
    const answer = await post(port, body, 'GET /next HTTP/1.1\r\nHost: h\r\n\r\n', 2, 200_000, framing);
    expect(answer).toContain(`${body.length} ${sha(body)}`);
    expect(answer).toContain('no body');
    expect(answer.match(/HTTP\/1\.1 200/g)).toHaveLength(2);
  });

  test('two long bodies one after the other on one kept connection both arrive whole', async () => {
    const first = randomBytes(1024 * 1024);
    const second = randomBytes(3 * 1024 * 1024 + 1);
    const port = await h1(hashing((req, done) => {
      const hash: Buffer[] = [];
      req.body?.on('data', (c: Buffer) => { hash.push(Buffer.from(c)); });
      req.body?.on('end', () => done(Buffer.concat(hash)));
    }));
    const bytes = Buffer.concat([...framed('/a', first, framing), ...framed('/b', second, framing, 65_537)]);
    const answer = await post(port, Buffer.alloc(0), bytes, 3);
    // post() sent an empty POST first; its answer is "no body".
    expect(answer).toContain(`${first.length} ${sha(first)}`);
    expect(answer).toContain(`${second.length} ${sha(second)}`);
  });

  test('a caller that goes away mid-body aborts the body', async () => {
    let aborted: Promise<string> | undefined;
    const port = await h1((req) => {
      aborted = new Promise((resolve) => {
        req.body?.on('error', (err: Error) => resolve(err.message));
        req.body?.resume();
      });
    });
    const socket = netConnect(port, '127.0.0.1');
    sockets.push(socket);
    await new Promise((r) => socket.once('connect', r));
    const [head, ...rest] = framed('/', randomBytes(10 * 1024 * 1024), framing);
    socket.write(head as Buffer);
    socket.write(Buffer.concat(rest).subarray(0, 300_000));
    await new Promise((r) => setTimeout(r, 100));
    socket.destroy();
    await expect.poll(() => aborted).toBeDefined();
    expect(await aborted).toBe('aborted');
  });
});

describe('the framing of a chunked body', () => {
  /** Writes `parts` one by one, 50 ms apart, and returns what came back once the connection closed or `answers` answers came. */
  function exchange(port: number, parts: string[], answers: number): Promise<string> {
    return new Promise((resolve, reject) => {
      const socket = netConnect(port, '127.0.0.1');
      sockets.push(socket);
      let got = '';
      socket.on('data', (c: Buffer) => {
        got += c.toString('latin1');
        if ((got.match(/HTTP\/1\.1 /g) ?? []).length >= answers && /\r\n\r\n[^]*$/.test(got) && got.endsWith('|')) socket.end();
      });
      socket.on('close', () => resolve(got));
      socket.on('error', reject);
      socket.on('connect', async () => {
        for (const part of parts) {
          socket.write(part);
          await new Promise((r) => setTimeout(r, 50));
        }
      });
    });
  }

  /** Answers each request with its path, its body and its header names, ending with `|`. */
  const echoing: Handler = (req, res) => {
    const chunks: Buffer[] = [];
    const answer = () => {
      const text = `${req.url} ${Buffer.concat(chunks).toString()} ${Object.keys(req.headers).join(',')}|`;
      res.writeHead(200, { 'content-length': String(text.length) });
      res.end(text);
    };
    if (!req.body) return answer();
    req.body.on('data', (c: Buffer) => chunks.push(Buffer.from(c)));
    req.body.on('end', answer);
    req.body.on('error', () => undefined);
  };

  test.each([true, false])('extensions are read and dropped; the trailers never become fields of the next request, whose head comes in two reads (bodyViews %s)', async (bodyViews) => {
    const port = await h1(echoing, bodyViews);
    const got = await exchange(port, [
      'POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;note="x y"\r\nhello\r\n6\r\n world\r\n0\r\nX-Injected: yes\r\n\r\n',
      'GET /b HTTP/1.1\r\nHost: h\r\n',
      'X-Second: 1\r\n\r\n',
    ], 2);
    expect(got).toContain('/a hello world host,transfer-encoding|');
    expect(got).toContain('/b  host,x-second|');
    expect(got).not.toContain('x-injected');
  });

  test.each([
    // Read past the parser, the trailer names come lower-cased from chunked-decoder.ts: that is
    // how the test knows which path read them.
    [true, ['x-checksum', 'abc', 'x-multi', '1', 'x-multi', '2']],
    [false, ['X-Checksum', 'abc', 'x-multi', '1', 'X-Multi', '2']],
  ])('a chunked body\'s trailers are the request\'s (trailers, rawTrailers, and on its body stream), in place when the body ends, even when they come in two reads; the next request on the connection has none (bodyViews %s)', async (bodyViews, raw) => {
    const port = await h1((req, res) => {
      const chunks: Buffer[] = [];
      req.body?.on('data', (c: Buffer) => chunks.push(Buffer.from(c)));
      req.body?.on('end', () => {
        const seen = { trailers: req.trailers, raw: req.rawTrailers, carried: bodyTrailers(req.body!) ?? null, complete: req.complete };
        const text = `${req.url} ${Buffer.concat(chunks).toString()} ${JSON.stringify(seen)}|`;
        res.writeHead(200, { 'content-length': String(text.length) });
        res.end(text);
      });
    }, bodyViews);
    const got = await exchange(port, [
      'POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Checksum: abc\r\n',
      'x-multi: 1\r\nX-Multi: 2\r\n\r\nPOST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n',
    ], 2);
    const answers = [...got.matchAll(/(\/[ab]) (\w+) (\{.*?\})\|/g)].map((m) => [m[1], m[2], JSON.parse(m[3]!)]);
    const trailers = { 'x-checksum': 'abc', 'x-multi': '1, 2' };
    expect(answers).toEqual([
      ['/a', 'hello', { trailers, raw, carried: trailers, complete: true }],
      ['/b', 'hi', { trailers: {}, raw: [], carried: null, complete: true }],
    ]);
  });

  test.each([
    ['a space after a chunk size', '5 \r\nhello\r\n0\r\n\r\n'],
    ['a bare LF after the data', '5\r\nhello\n0\r\n\r\n'],
    ['more data than the size said', '5\r\nhelloX\r\n0\r\n\r\n'],
    ['a size that is not hexadecimal', '5\r\nhello\r\nzz\r\n\r\n'],
  ])('%s: the body fails and the connection closes; the next request on it is not read', async (_name, body) => {
    let failed: string | undefined;
    const port = await h1((req, res) => {
      if (!req.body) {
        res.writeHead(200, { 'content-length': '5' });
        return res.end('next|');
      }
      req.body.on('error', (err: Error & { code?: string }) => { failed = err.code; });
      req.body.resume();
    });
    const got = await exchange(port, [
      `POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n${body}`,
      'GET /next HTTP/1.1\r\nHost: h\r\n\r\n',
    ], 1);
    expect(got).not.toContain('next|');
    expect(failed).toMatch(/^HPE_/);
  });
});

describe('a long answer with a length, relayed as views to a caller over TLS (the inbound\'s side of a download)', () => {
  test.each([
    ['a caller that reads at once', 0],
    ['a caller that reads nothing for 300 ms (the relay waits for its socket to drain)', 300],
  ])('%s: arrives whole, and pending TLS writes alone do not make the connection read into a fresh buffer each time', async (_name, pauseMs) => {
    const body = randomBytes(8 * 1024 * 1024);
    const app = await listen(createServer((_req, res) => {
      res.writeHead(200, { 'content-length': String(body.length) });
      res.end(body);
    }));
    const pool = new UpstreamPool(`http://127.0.0.1:${app}`, { connections: 4, maxConnecting: 2, idleMs: 10_000, connect: { timeout: 5_000 } });
    pools.push(pool);
    const pki = testPki();
    const server = createHttpsServer({ ...serverTls(pki), requestCert: false });
    serveHttp1(server, { requestHeadersMs: 10_000, keepAliveMs: 10_000, streamIdleMs: 60_000 });
    server.on('request', (_req: H1Request, res: H1Response) => {
      pool.dispatch({ path: '/', method: 'GET', headers: {} } as Dispatcher.DispatchOptions, new ResponseRelay(res));
    });
    const port = await listen(server as unknown as Server);
    // A connection whose view is held reads into a fresh buffer (Buffer.allocUnsafeSlow): counted while the answer streams.
    const fresh = vi.spyOn(Buffer, 'allocUnsafeSlow');
    try {
      const got = await new Promise<{ sha256: string; reads: number }>((resolve, reject) => {
        httpsGet({ host: '127.0.0.1', port, path: '/', ca: pki.root.certPem, servername: 'localhost', checkServerIdentity: () => undefined }, (res) => {
          const hash = createHash('sha256');
          let reads = 0;
          res.pause();
          setTimeout(() => {
            res.on('data', (c: Buffer) => { hash.update(c); reads += 1; });
            res.on('end', () => resolve({ sha256: hash.digest('hex'), reads }));
            res.resume();
          }, pauseMs);
          res.on('error', reject);
        }).on('error', reject);
      });
      expect(got.sha256).toBe(sha(body));
      // 8 MiB came in about 128 reads of the app's connection; before, each was held by its pending TLS write.
      if (pauseMs === 0) expect(fresh.mock.calls.filter(([size]) => size === 64 * 1024).length).toBeLessThan(32);
    } finally {
      fresh.mockRestore();
    }
  });
});
