import { connect, constants, createSecureServer, createServer, type Http2SecureServer, type Http2Server, type ServerHttp2Stream, type Settings } from 'node:http2';
import type { Server } from 'node:http';
import { afterEach, beforeAll, describe, expect, test } from 'vitest';
import { waitFor } from '../../test/helpers/cli.js';
import { clientContext, echoId, listen, routingTo, serverTls, testPki, type TestPki } from '../../test/helpers/sidecar-fixtures.js';
import { silentLogger } from '../core/log.js';
import { answerFields } from './h2-tunnel-socket.js';
import { Inbound } from './inbound.js';
import { createOutbound } from './outbound.js';
import { defaultTimeouts, type DataPlaneTimeouts } from './timeouts.js';
import { Upstreams } from './upstreams.js';

/**
 * The outbound's HTTP/2 path against a real HTTP/2 destination over mTLS (ALPN h2), the way a
 * destination sidecar's inbound serves it: an app speaks h2c to the outbound, which routes to
 * the one endpoint of demo/echo. The destination misbehaves on purpose, stream by stream.
 */

type Behaviour = (stream: ServerHttp2Stream, body: string) => void;

let pki: TestPki;
const closers: (() => Promise<void>)[] = [];

beforeAll(() => {
  pki = testPki();
});

afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

const answer: Behaviour = (stream, body) => {
  stream.respond({ ':status': 200, 'x-session': String((stream.session as unknown as { n: number }).n) });
  stream.end(`echo:${body}`);
};

/** The destination: each stream's behaviour is `behaviours[i]` for the i-th stream it gets (the last one repeats). */
async function destination(behaviours: Behaviour[], options: { h2c?: boolean; settings?: Settings } = {}): Promise<{ address: string; streams: string[]; sessions: () => number }> {
  const streams: string[] = [];
  let sessions = 0;
  const settings = options.settings ?? {};
  const server: Http2SecureServer | Http2Server = options.h2c ? createServer({ settings }) : createSecureServer({ ...serverTls(pki), ALPNProtocols: ['h2'], settings });
  server.on('session', (session) => {
    sessions += 1;
    (session as unknown as { n: number }).n = sessions;
    session.on('error', () => undefined);
  });
  server.on('stream', (stream, headers) => {
    stream.on('error', () => undefined);
    const behaviour = behaviours[Math.min(streams.length, behaviours.length - 1)]!;
    streams.push(`${headers[':method']} ${headers[':path']}`);
    let body = '';
    stream.on('data', (chunk: Buffer) => { body += chunk.toString(); });
    if (stream.endAfterHeaders) behaviour(stream, body);
    else stream.once('end', () => behaviour(stream, body));
  });
  const address = await listen(server);
  closers.push(async () => {
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      // Sessions the outbound keeps would hold close() open.
      for (const socket of sockets) socket.destroy();
    });
  });
  const sockets = new Set<import('node:net').Socket>();
  server.on('connection', (socket: import('node:net').Socket) => sockets.add(socket));
  return { address, streams, sessions: () => sessions };
}

async function outbound(address: string, timeouts: Partial<DataPlaneTimeouts> = {}, routing = routingTo([address])): Promise<string> {
  const upstreams = new Upstreams(() => clientContext(pki));
  const server: Server = createOutbound({ cluster: 'west', routing, upstreams, logger: silentLogger, timeouts: { ...defaultTimeouts, ...timeouts } });
  const listening = await listen(server);
  closers.push(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await upstreams.close();
  });
  return listening;
}

interface Answer { status: number; error: string | undefined; body: string }

/** Requests sent by an h2c app (prior knowledge) on one session to the outbound, one after the other. */
async function h2c(outboundAddress: string, requests: { method: string; path: string; body?: string }[]): Promise<Answer[]> {
  const session = connect(`http://${outboundAddress}`);
  session.on('error', () => undefined);
  const answers: Answer[] = [];
  try {
    for (const r of requests) {
      const stream = session.request({ ':method': r.method, ':path': r.path, ':authority': 'echo.demo.mesh' }, { endStream: r.body === undefined });
      if (r.body !== undefined) stream.end(r.body);
      answers.push(await new Promise<Answer>((resolve, reject) => {
        let head: Answer | undefined;
        let body = '';
        stream.on('response', (h) => { head = { status: Number(h[':status']), error: h['x-isthmus-error'] as string | undefined, body: '' }; });
        stream.on('data', (chunk: Buffer) => { body += chunk.toString(); });
        stream.on('error', reject);
        stream.on('close', () => {
          if (!head) reject(new Error(`stream closed with code ${stream.rstCode} and no answer`));
          else if (stream.rstCode) reject(new Error(`stream reset with code ${stream.rstCode} after the head`));
          else resolve({ ...head, body });
        });
      }));
    }
  } finally {
    session.destroy();
  }
  return answers;
}

/** One unary gRPC call from an h2c app to the outbound: the grpc-status it ends with (head or trailers). */
async function grpcCall(outboundAddress: string, deadline?: string): Promise<string | undefined> {
  const session = connect(`http://${outboundAddress}`);
  session.on('error', () => undefined);
  try {
    const stream = session.request({
      ':method': 'POST', ':path': '/echo.Echo/Slow', ':authority': 'echo.demo.mesh', 'content-type': 'application/grpc', te: 'trailers',
      ...(deadline ? { 'grpc-timeout': deadline } : {}),
    });
    stream.end(Buffer.from([0, 0, 0, 0, 0]));
    return await new Promise<string | undefined>((resolve, reject) => {
      let status: string | undefined;
      stream.on('response', (h) => { status = h['grpc-status'] as string | undefined; });
      stream.on('trailers', (t) => { status = t['grpc-status'] as string | undefined; });
      stream.resume();
      stream.on('close', () => resolve(status));
      stream.on('error', reject);
    });
  } finally {
    session.destroy();
  }
}

/** A gRPC server's answer: a head, one empty message, then `grpcStatus` in the trailers. */
const grpcAnswer = (grpcStatus: number): Behaviour => (stream) => {
  stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
  stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': String(grpcStatus) }));
  stream.end(Buffer.from([0, 0, 0, 0, 0]));
};

const refuse: Behaviour = (stream) => stream.close(constants.NGHTTP2_REFUSED_STREAM);
const goaway = (code: number): Behaviour => (stream) => stream.session?.goaway(code, (stream.id ?? 1) - 2, Buffer.from('draining'));

describe('an HTTP/2 request the destination provably did not process is retried, whatever its method', () => {
  test('RST_STREAM REFUSED_STREAM on a POST: sent again, and the app gets one answer with the whole body', async () => {
    const dest = await destination([refuse, answer]);
    const [reply] = await h2c(await outbound(dest.address), [{ method: 'POST', path: '/orders', body: 'one order' }]);
    expect(reply).toEqual({ status: 200, error: undefined, body: 'echo:one order' });
    expect(dest.streams).toEqual(['POST /orders', 'POST /orders']);
  });

  test('a burst on a fresh session beyond the destination\'s maxConcurrentStreams: the refused POSTs are sent again, all answered', async () => {
    // Streams sent before the destination's SETTINGS arrive may exceed its limit; it refuses them (REFUSED_STREAM).
    const dest = await destination([(stream, body) => setTimeout(() => answer(stream, body), 50)], { settings: { maxConcurrentStreams: 1 } });
    const address = await outbound(dest.address);
    const session = connect(`http://${address}`);
    session.on('error', () => undefined);
    try {
      const statuses = await Promise.all([1, 2, 3, 4].map((i) => new Promise<string>((resolve, reject) => {
        const stream = session.request({ ':method': 'POST', ':path': `/burst/${i}`, ':authority': 'echo.demo.mesh' });
        stream.end(`order ${i}`);
        let body = '';
        stream.on('data', (chunk: Buffer) => { body += chunk.toString(); });
        stream.on('end', () => resolve(body));
        stream.on('error', reject);
      })));
      expect(statuses).toEqual(['echo:order 1', 'echo:order 2', 'echo:order 3', 'echo:order 4']);
    } finally {
      session.destroy();
    }
    // Each POST reached the app exactly once: the refused streams never reached it (nghttp2 refuses them unseen).
    expect([...dest.streams].sort()).toEqual(['POST /burst/1', 'POST /burst/2', 'POST /burst/3', 'POST /burst/4']);
  });

  test('GOAWAY (NO_ERROR) whose last-stream-id is below the stream: the POST goes again on a fresh session', async () => {
    const dest = await destination([answer, goaway(constants.NGHTTP2_NO_ERROR), answer]);
    const replies = await h2c(await outbound(dest.address), [{ method: 'GET', path: '/warm' }, { method: 'POST', path: '/pay', body: 'ten' }]);
    expect(replies).toEqual([{ status: 200, error: undefined, body: 'echo:' }, { status: 200, error: undefined, body: 'echo:ten' }]);
    expect(dest.streams).toEqual(['GET /warm', 'POST /pay', 'POST /pay']);
    expect(dest.sessions()).toBe(2);
  });

  test('GOAWAY with an error code below the stream is also unprocessed: retried on a fresh session', async () => {
    const dest = await destination([answer, goaway(constants.NGHTTP2_ENHANCE_YOUR_CALM), answer]);
    const replies = await h2c(await outbound(dest.address), [{ method: 'GET', path: '/warm' }, { method: 'PATCH', path: '/item', body: 'x' }]);
    expect(replies[1]).toEqual({ status: 200, error: undefined, body: 'echo:x' });
    expect(dest.sessions()).toBe(2);
  });

  test('refused on every attempt: 3 attempts, then 503 ISTHMUS_ERR_DATAPLANE_UPSTREAM_REFUSED', async () => {
    const dest = await destination([refuse]);
    const [reply] = await h2c(await outbound(dest.address), [{ method: 'POST', path: '/orders', body: 'one order' }]);
    expect(reply).toMatchObject({ status: 503, error: 'ISTHMUS_ERR_DATAPLANE_UPSTREAM_REFUSED' });
    expect(dest.streams).toHaveLength(3);
  });

  test('the control: a POST reset with INTERNAL_ERROR may have been processed, so it is not sent again (502)', async () => {
    const dest = await destination([(stream) => stream.close(constants.NGHTTP2_INTERNAL_ERROR), answer]);
    const [reply] = await h2c(await outbound(dest.address), [{ method: 'POST', path: '/orders', body: 'one order' }]);
    expect(reply).toMatchObject({ status: 502, error: 'ISTHMUS_ERR_DATAPLANE_UPSTREAM_RESET' });
    expect(dest.streams).toEqual(['POST /orders']);
  });
});

describe('behind a destination sidecar\'s inbound, an h2c app that refuses a stream', () => {
  /** The destination sidecar's inbound (appProtocol h2c) in front of an h2c app. */
  async function inboundBefore(app: string): Promise<string> {
    const inbound = new Inbound({ certPem: pki.echo.certPem, chainPem: [pki.west.certPem], keyPem: pki.echo.keyPem, trustBundle: [pki.root.certPem], identity: echoId },
      app, silentLogger, {}, defaultTimeouts, 'h2c');
    const address = await listen(inbound.server as unknown as import('node:net').Server);
    closers.push(() => inbound.close());
    return address;
  }

  test('REFUSED_STREAM from the app reaches the client sidecar as REFUSED_STREAM, which sends the POST again', async () => {
    const app = await destination([refuse, answer], { h2c: true });
    const [reply] = await h2c(await outbound(await inboundBefore(app.address)), [{ method: 'POST', path: '/orders', body: 'one order' }]);
    expect(reply).toEqual({ status: 200, error: undefined, body: 'echo:one order' });
    expect(app.streams).toEqual(['POST /orders', 'POST /orders']);
  });

  test('GOAWAY below the stream from the app: the retry reaches it on a fresh session', async () => {
    const app = await destination([answer, goaway(constants.NGHTTP2_NO_ERROR), answer], { h2c: true });
    const replies = await h2c(await outbound(await inboundBefore(app.address)), [{ method: 'GET', path: '/warm' }, { method: 'POST', path: '/pay', body: 'ten' }]);
    expect(replies[1]).toEqual({ status: 200, error: undefined, body: 'echo:ten' });
    expect(app.streams).toEqual(['GET /warm', 'POST /pay', 'POST /pay']);
    expect(app.sessions()).toBe(2);
  });
});

describe('HTTP/2 timeouts on the outbound, named as on HTTP/1.1', () => {
  test('an app\'s h2c connection that opens no stream within timeouts.requestHeaders is closed with GOAWAY naming the error', async () => {
    const dest = await destination([answer]);
    const session = connect(`http://${await outbound(dest.address, { requestHeadersMs: 200 })}`);
    session.on('error', () => undefined);
    const data = await new Promise<Buffer | undefined>((resolve) => session.once('goaway', (_c: number, _l: number, d?: Buffer) => resolve(d)));
    session.destroy();
    expect(String(data)).toMatch(/^ISTHMUS_ERR_DATAPLANE_REQUEST_HEADERS_TIMEOUT: /);
  });

  test('a destination silent for timeouts.streamIdle before its head: 504 ISTHMUS_ERR_DATAPLANE_UPSTREAM_TIMEOUT, not sent again', async () => {
    const dest = await destination([() => undefined]);
    const [reply] = await h2c(await outbound(dest.address, { streamIdleMs: 200 }), [{ method: 'GET', path: '/slow' }]);
    expect(reply).toMatchObject({ status: 504, error: 'ISTHMUS_ERR_DATAPLANE_UPSTREAM_TIMEOUT' });
    expect(dest.streams).toEqual(['GET /slow']);
  });

  test('timeouts.responseHeaders counts from the request\'s end: an upload that outlasts it is answered; a whole request then unanswered gets 504', async () => {
    const dest = await destination([answer, () => undefined]);
    const address = await outbound(dest.address, { responseHeadersMs: 200, streamIdleMs: 2_000 });
    const session = connect(`http://${address}`);
    session.on('error', () => undefined);
    try {
      // Six parts 80 ms apart: about 480 ms of upload against a 200 ms head limit. The
      // destination answers at the body's end, as a client-streaming gRPC server does.
      const stream = session.request({ ':method': 'POST', ':path': '/upload', ':authority': 'echo.demo.mesh' });
      const reply = new Promise<{ status: number; body: string }>((resolve, reject) => {
        let status = 0;
        let body = '';
        stream.on('response', (h) => { status = Number(h[':status']); });
        stream.on('data', (chunk: Buffer) => { body += chunk.toString(); });
        stream.on('end', () => resolve({ status, body }));
        stream.on('error', reject);
      });
      for (let i = 0; i < 6; i += 1) {
        await new Promise((r) => setTimeout(r, 80));
        stream.write(`part${i};`);
      }
      stream.end();
      expect(await reply).toEqual({ status: 200, body: 'echo:part0;part1;part2;part3;part4;part5;' });
    } finally {
      session.destroy();
    }
    const started = Date.now();
    const [late] = await h2c(address, [{ method: 'POST', path: '/never', body: 'x' }]);
    expect(late).toMatchObject({ status: 504, error: 'ISTHMUS_ERR_DATAPLANE_UPSTREAM_TIMEOUT' });
    expect(Date.now() - started).toBeLessThan(1_500);
  });

  test('a gRPC call\'s own deadline (grpc-timeout) replaces timeouts.responseHeaders: a 400 ms answer within a 2 s deadline passes a 200 ms limit', async () => {
    const late: Behaviour = (stream) => {
      setTimeout(() => {
        if (stream.destroyed || stream.closed) return; // cancelled by the sidecar meanwhile
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
        stream.end(Buffer.from([0, 0, 0, 0, 0]));
      }, 400);
    };
    const dest = await destination([late]);
    const address = await outbound(dest.address, { responseHeadersMs: 200 });
    const call = (deadline?: string) => grpcCall(address, deadline);
    expect(await call('2S')).toBe('0');
    // Without a deadline the sidecar's own limit holds: UNAVAILABLE (its 504) at 200 ms.
    expect(await call()).toBe('14');
  });

  test('a destination silent for timeouts.streamIdle in an answer of a stated length: the app\'s stream is reset with CANCEL', async () => {
    const dest = await destination([(stream) => {
      // A stalled download. Without a content-length it would be open-ended, allowed tunnelIdle (open-ended-answers.test.ts).
      stream.respond({ ':status': 200, 'content-length': '100' });
      stream.write('partial');
    }]);
    const err = await h2c(await outbound(dest.address, { streamIdleMs: 200 }), [{ method: 'GET', path: '/stalls' }]).then(() => undefined, (e: Error) => e);
    expect(err?.message).toBe(`stream reset with code ${constants.NGHTTP2_CANCEL} after the head`);
  });
});

describe('a gRPC call that has answered may stay silent for timeouts.tunnelIdle, not streamIdle', () => {
  /** A server-streaming call: a head and one message, `silentMs` of silence, a second message, then grpc-status 0 in the trailers. */
  const watch = (silentMs: number): Behaviour => (stream) => {
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    stream.write(Buffer.from([0, 0, 0, 0, 0]));
    setTimeout(() => {
      if (!stream.destroyed && !stream.closed) stream.end(Buffer.from([0, 0, 0, 0, 0]));
    }, silentMs);
  };

  test('silent for three times streamIdle between two messages: the call ends with grpc-status 0, through the client sidecar and an inbound', async () => {
    const app = await destination([watch(600)], { h2c: true });
    const timeouts = { ...defaultTimeouts, streamIdleMs: 200, tunnelIdleMs: 5_000 };
    const inbound = new Inbound({ certPem: pki.echo.certPem, chainPem: [pki.west.certPem], keyPem: pki.echo.keyPem, trustBundle: [pki.root.certPem], identity: echoId },
      app.address, silentLogger, {}, timeouts, 'h2c');
    const inboundAddress = await listen(inbound.server as unknown as import('node:net').Server);
    closers.push(() => inbound.close());
    expect(await grpcCall(await outbound(inboundAddress, timeouts))).toBe('0');
  });

  test('silent longer than tunnelIdle: the call is cut (CANCEL), no status', async () => {
    const dest = await destination([watch(1_000)]);
    expect(await grpcCall(await outbound(dest.address, { streamIdleMs: 100, tunnelIdleMs: 300 }))).toBeUndefined();
  });
});

describe('outlier detection hears a gRPC status that comes in trailers', () => {
  // A server that sent its head (and maybe messages) before failing puts grpc-status in the
  // trailers, not in the head: the verdict waits for them.
  test.each([
    [14, 1, 'UNAVAILABLE after the head: a server error, one of the two ejected after five in a row'],
    [5, 0, 'NOT_FOUND: the caller\'s doing, nobody ejected'],
  ])('grpc-status %i in trailers → %i ejected (%s)', async (grpcStatus, ejected) => {
    const [a, b] = [await destination([grpcAnswer(grpcStatus)]), await destination([grpcAnswer(grpcStatus)])];
    const routing = routingTo([a.address, b.address]);
    const address = await outbound(a.address, {}, routing);
    for (let i = 0; i < 10; i += 1) expect(await grpcCall(address)).toBe(String(grpcStatus));
    expect(routing.ejected().size).toBe(ejected);
  });
});

describe('bytes that are not HTTP on the outbound\'s proxy port', () => {
  /** Writes `bytes` on a fresh TCP connection and returns everything the outbound answered before closing it. */
  async function raw(address: string, bytes: string): Promise<string> {
    const [host, port] = address.split(':') as [string, string];
    const { connect: tcpConnect } = await import('node:net');
    return await new Promise((resolve) => {
      const socket = tcpConnect({ host, port: Number(port) });
      let got = '';
      socket.on('data', (c: Buffer) => { got += c.toString('latin1'); });
      socket.on('error', () => undefined);
      socket.on('close', () => resolve(got));
      socket.write(bytes);
    });
  }

  test.each([
    ['a TLS ClientHello-like record', '\x16\x03\x01\x00\x05hello\r\n\r\n', 400],
    ['a line with no HTTP version', 'HELLO THERE\r\n\r\n', 400],
    ['a 20 KiB header', `GET http://hello.demo.mesh/ HTTP/1.1\r\nhost: hello.demo.mesh\r\nx-big: ${'a'.repeat(20 * 1024)}\r\n\r\n`, 431],
  ])('%s: %i with ISTHMUS_ERR_DATAPLANE_REQUEST_MALFORMED, then the connection closes', async (_what, bytes, status) => {
    const dest = await destination([answer]);
    const answered = await raw(await outbound(dest.address), bytes);
    expect(answered.split('\r\n')[0]).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
    expect(answered).toMatch(/\r\nx-isthmus-error: ISTHMUS_ERR_DATAPLANE_REQUEST_MALFORMED\r\n/);
    expect(answered).toMatch(/"message":"[^"]*send HTTP\/1\.1/);
    expect(dest.streams).toEqual([]);
  });
});

describe('CONNECT over HTTP/2 (RFC 9113 §8.5): a tunnel, as CONNECT over HTTP/1.1 opens one', () => {
  /** A TCP app that echoes what it reads and ends when its caller does; `seen` are its connections' bytes and ends. */
  async function echoApp(): Promise<{ address: string; seen: { bytes: number; ended: boolean; closed: boolean }[] }> {
    const { createServer: tcpServer } = await import('node:net');
    const seen: { bytes: number; ended: boolean; closed: boolean }[] = [];
    const server = tcpServer({ allowHalfOpen: true }, (socket) => {
      const mine = { bytes: 0, ended: false, closed: false };
      seen.push(mine);
      socket.on('data', (c: Buffer) => { mine.bytes += c.length; });
      socket.on('end', () => { mine.ended = true; });
      socket.on('close', () => { mine.closed = true; });
      socket.on('error', () => undefined);
      socket.pipe(socket);
    });
    const address = await listen(server);
    closers.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    return { address, seen };
  }

  /** The destination sidecar's inbound in front of `app`; returns the address of a client sidecar's outbound that routes echo.demo.mesh to it. */
  async function meshTo(app: string, timeouts: Partial<DataPlaneTimeouts> = {}): Promise<string> {
    const inbound = new Inbound({ certPem: pki.echo.certPem, chainPem: [pki.west.certPem], keyPem: pki.echo.keyPem, trustBundle: [pki.root.certPem], identity: echoId },
      app, silentLogger, {}, { ...defaultTimeouts, ...timeouts });
    const inboundAddress = await listen(inbound.server as unknown as import('node:net').Server);
    closers.push(() => inbound.close());
    return outbound(inboundAddress, timeouts);
  }

  interface Tunnel { head: Record<string, string | string[] | undefined>; body: Buffer; rstCode: number | undefined }

  /** Node's HTTP/2 client as the app: CONNECT `authority`, write `send` (then end, unless `keepOpen`), read until the stream closes. */
  async function connectOverH2(outboundAddress: string, authority: string, send: Buffer, opts: { keepOpen?: boolean; resetAfterMs?: number } = {}): Promise<Tunnel> {
    const session = connect(`http://${outboundAddress}`);
    session.on('error', () => undefined);
    try {
      const stream = session.request({ ':method': 'CONNECT', ':authority': authority }, { endStream: false });
      stream.on('error', () => undefined);
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      const head = await new Promise<Tunnel['head']>((resolve, reject) => {
        stream.once('response', resolve);
        stream.once('close', () => reject(new Error(`the stream closed before an answer (code ${stream.rstCode})`)));
      });
      if (send.length > 0) stream.write(send);
      if (opts.resetAfterMs !== undefined) setTimeout(() => stream.close(constants.NGHTTP2_CANCEL), opts.resetAfterMs);
      else if (!opts.keepOpen) stream.end();
      await new Promise((resolve) => stream.once('close', resolve));
      return { head, body: Buffer.concat(chunks), rstCode: stream.rstCode };
    } finally {
      session.destroy();
    }
  }

  test('200 with no length, then 5 MB each way, hashed: the app\'s end (END_STREAM) reaches the echo app, whose end closes the stream cleanly', async () => {
    const app = await echoApp();
    const sent = Buffer.alloc(5 * 1024 * 1024);
    for (let i = 0; i < sent.length; i += 1) sent[i] = (i * 31) % 251;
    const tunnel = await connectOverH2(await meshTo(app.address), 'echo.demo.mesh:7000', sent);
    expect(tunnel.head[':status']).toBe(200);
    expect(tunnel.head['content-length']).toBeUndefined();
    expect(tunnel.body.length).toBe(sent.length);
    expect(tunnel.body.equals(sent)).toBe(true);
    expect(tunnel.rstCode).toBe(constants.NGHTTP2_NO_ERROR);
    expect(app.seen).toEqual([{ bytes: sent.length, ended: true, closed: true }]);
  });

  test('a name that is not in the mesh: 503 ISTHMUS_ERR_DATAPLANE_NO_ROUTE with its JSON body, then the stream ends', async () => {
    const app = await echoApp();
    const tunnel = await connectOverH2(await meshTo(app.address), 'nope.demo.mesh:80', Buffer.alloc(0), { keepOpen: true });
    expect(tunnel.head[':status']).toBe(503);
    expect(tunnel.head['x-isthmus-error']).toBe('ISTHMUS_ERR_DATAPLANE_NO_ROUTE');
    expect(tunnel.head.connection).toBeUndefined();
    expect(JSON.parse(tunnel.body.toString()).error.message).toMatch(/demo\/nope is not in the mesh/);
    expect(Number(tunnel.head['content-length'])).toBe(tunnel.body.length);
    expect(app.seen).toEqual([]);
  });

  test('the destination\'s app does not accept: the destination sidecar\'s 502 comes back as the stream\'s answer', async () => {
    const app = await echoApp();
    // A port with nobody behind it: taken, then let go.
    const { createServer: tcpServer } = await import('node:net');
    const taken = tcpServer();
    const closedPort = await listen(taken);
    await new Promise<void>((resolve) => taken.close(() => resolve()));
    const tunnel = await connectOverH2(await meshTo(closedPort), 'echo.demo.mesh:7000', Buffer.alloc(0), { keepOpen: true });
    expect(tunnel.head[':status']).toBe(502);
    expect(tunnel.head['x-isthmus-error']).toBe('ISTHMUS_ERR_DATAPLANE_APP_UNREACHABLE');
    expect(app.seen).toEqual([]);
  });

  test('the app resets its CONNECT stream: the tunnel goes, and the echo app\'s connection is closed', async () => {
    const app = await echoApp();
    const tunnel = await connectOverH2(await meshTo(app.address), 'echo.demo.mesh:7000', Buffer.from('ping'), { resetAfterMs: 100 });
    expect(tunnel.head[':status']).toBe(200);
    expect(tunnel.body.toString()).toBe('ping');
    await waitFor(async () => app.seen[0]?.closed, 5_000, 'the echo app\'s connection closed');
    expect(app.seen[0]?.bytes).toBe(4);
  });

  test('a silent tunnel is closed after timeouts.tunnelIdle, its stream reset with CONNECT_ERROR', async () => {
    const app = await echoApp();
    const tunnel = await connectOverH2(await meshTo(app.address, { tunnelIdleMs: 300 }), 'echo.demo.mesh:7000', Buffer.from('once'), { keepOpen: true });
    expect(tunnel.body.toString()).toBe('once');
    expect(tunnel.rstCode).toBe(constants.NGHTTP2_CONNECT_ERROR);
    await waitFor(async () => app.seen[0]?.closed, 5_000, 'the echo app\'s connection closed');
  });
});

describe('the head of a tunnel\'s answer as HTTP/2 fields (answerFields)', () => {
  test.each([
    ['HTTP/1.1 200 Connection Established', [':status', '200']],
    ['HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\nX-A: b', [':status', '200', 'x-a', 'b']],
    ['HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 42\r\nconnection: close', [':status', '503', 'content-type', 'application/json', 'content-length', '42']],
    ['HTTP/1.0 403 Forbidden\r\nTransfer-Encoding: chunked\r\nKeep-Alive: timeout=5\r\nUpgrade: h2c', [':status', '403']],
    ['HTTP/1.1 502 Bad Gateway\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nTE: trailers\r\nX-A: b', [':status', '502', 'x-a', 'b']],
  ])('%j', (head, fields) => {
    expect(answerFields(head)).toEqual(fields);
  });

  test.each([
    ['HTTP/1.1 101 Switching Protocols', /final status line/],
    ['SSH-2.0-OpenSSH_9.2', /final status line/],
    ['HTTP/1.1 200 OK\r\nno colon here', /malformed field line/],
  ])('%j is refused', (head, message) => {
    const fields = answerFields(head);
    expect(fields).toBeInstanceOf(Error);
    expect((fields as Error).message).toMatch(message);
  });
});
