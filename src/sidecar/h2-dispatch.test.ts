import { createHash, randomBytes } from 'node:crypto';
import { constants, createServer as createH2Server, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { connect, createServer, type AddressInfo, type Server } from 'node:net';
import { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { afterEach, describe, expect, test } from 'vitest';
import { waitFor } from '../../test/helpers/h2-raw.js';
import { H2Connection } from '../h2/connection.js';
import { h2Error } from '../h2/frames.js';
import type { H2Stream } from '../h2/stream.js';
import { setBodyTrailers } from './body-trailers.js';
import { dispatchOverH2, type H2DispatchOptions } from './h2-dispatch.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const clean of cleanups.splice(0).reverse()) await clean();
});

const listen = (server: Server | ReturnType<typeof createH2Server>): Promise<number> =>
  new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** What a node:http2 (h2c) destination saw of one stream: its head, raw fields, and the code it closed with. */
interface SeenStream { headers: IncomingHttpHeaders; rawNames: string[]; closeCode?: number }

/** A node:http2 h2c server as the destination; `handle` answers each stream. */
async function destination(handle: (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => void) {
  const server = createH2Server();
  const sessions: { destroy: () => void }[] = [];
  const seen: SeenStream[] = [];
  server.on('session', (s) => sessions.push(s));
  // node passes the raw fields (names and values in turn) as a fourth argument @types/node does not declare.
  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, _flags: number, rawHeaders?: string[]) => {
    const record: SeenStream = { headers, rawNames: (rawHeaders ?? []).filter((_, i) => i % 2 === 0) };
    seen.push(record);
    stream.on('error', () => undefined);
    stream.on('close', () => { record.closeCode = stream.rstCode; });
    handle(stream, headers);
  });
  const port = await listen(server);
  cleanups.push(() => new Promise<void>((resolve) => { for (const s of sessions) s.destroy(); server.close(() => resolve()); }));
  return { port, seen };
}

/**
 * Isthmus's own HTTP/2 server as the destination, for what node:http2 cannot do exactly (its
 * `stream.close(code)` after a head ends the stream gracefully before resetting it): `onStream`
 * answers each stream; `closes` gets the code each stream closed with, as the destination saw it.
 */
async function ownDestination(onStream: (stream: H2Stream) => void) {
  const closes: number[] = [];
  const connections: H2Connection[] = [];
  const server = createServer((socket) => {
    socket.on('error', () => undefined);
    connections.push(new H2Connection(socket, {
      role: 'server',
      onStream: (stream) => {
        // Reads nothing of a request body (gives no credit for it).
        stream.attach({ onHeaders: () => undefined, onData: () => undefined, onClose: (_s, code) => closes.push(code) });
        onStream(stream);
      },
    }));
  });
  const port = await listen(server);
  cleanups.push(() => new Promise<void>((resolve) => { for (const c of connections) c.destroy(); server.close(() => resolve()); }));
  return { port, closes, connections };
}

/** Isthmus's own HTTP/2 client connection to `port`, with its default settings (as the sidecar's). */
function clientTo(port: number): H2Connection {
  const socket = connect(port, '127.0.0.1');
  // As upstreams.ts sets it: without it Nagle's algorithm stalls each window of an upload.
  socket.setNoDelay(true);
  socket.on('error', () => undefined);
  const connection = new H2Connection(socket, { role: 'client' });
  cleanups.push(() => { connection.destroy(); socket.destroy(); });
  return connection;
}

/** What the handler heard, in order. */
interface Outcome {
  events: string[];
  status?: number;
  headers?: IncomingHttpHeaders;
  body: Buffer[];
  received: number;
  trailers?: IncomingHttpHeaders;
  error?: Error & { code?: string };
  dones: number;
}

interface Hooks {
  onResponseStart?: (controller: Dispatcher.DispatchController) => void;
  onResponseData?: (controller: Dispatcher.DispatchController, chunk: Buffer) => void;
}

/**
 * Runs dispatchOverH2 with a recording handler. `ended` settles at onResponseEnd or
 * onResponseError; `controller()` is the controller the handler was given.
 */
function dispatch(connection: Promise<H2Connection>, opts: Partial<H2DispatchOptions> = {}, hooks: Hooks = {}) {
  const seen: Outcome = { events: [], body: [], received: 0, dones: 0 };
  let settle!: (o: Outcome) => void;
  const ended = new Promise<Outcome>((resolve) => { settle = resolve; });
  let controller: Dispatcher.DispatchController | undefined;
  const handler: Dispatcher.DispatchHandler = {
    onRequestStart(c) {
      controller = c;
      seen.events.push('requestStart');
    },
    onResponseStart(c, status, headers) {
      seen.events.push('responseStart');
      seen.status = status;
      seen.headers = headers;
      hooks.onResponseStart?.(c);
    },
    onResponseData(c, chunk) {
      if (seen.events.at(-1) !== 'data') seen.events.push('data');
      seen.body.push(Buffer.from(chunk));
      seen.received += chunk.length;
      hooks.onResponseData?.(c, chunk);
    },
    onResponseEnd(_c, trailers) {
      seen.events.push('end');
      seen.trailers = trailers;
      settle(seen);
    },
    onResponseError(_c, err) {
      seen.events.push('error');
      seen.error = err;
      settle(seen);
    },
  };
  const options: H2DispatchOptions = { method: 'GET', path: '/', headers: { host: 'dest.test' }, body: null, headersTimeout: 5_000, bodyTimeout: 5_000, ...opts };
  dispatchOverH2(connection, options, handler, () => { seen.dones += 1; });
  return { seen, ended, controller: () => controller! };
}

describe('dispatchOverH2: an HTTP/1.1 request of the app sent as a stream on Isthmus\'s own HTTP/2', () => {
  // The destination gets a well-formed HTTP/2 request (no HTTP/1.1 connection fields, which an
  // HTTP/2 peer must treat as malformed), and the app gets the answer as an HTTP/1.1 pool gives it.
  test('sends the request head as HTTP/2 fields without connection-specific ones, and hands the answer\'s head, body and end to the handler', async () => {
    const { port, seen } = await destination((stream) => {
      stream.respond({ ':status': 201, 'content-type': 'text/plain', 'x-multi': ['a', 'b'] });
      stream.write('hello ');
      setTimeout(() => stream.end('world'), 10);
    });
    const { ended } = dispatch(Promise.resolve(clientTo(port)), {
      method: 'GET',
      path: '/orders?id=7',
      headers: {
        host: 'orders.test:8080', 'x-request-id': 'abc-1', accept: 'text/plain',
        connection: 'keep-alive', 'keep-alive': 'timeout=5', 'transfer-encoding': 'chunked', upgrade: 'websocket',
      },
    });
    const got = await ended;
    expect(got.error).toBeUndefined();

    const head = seen[0]!.headers;
    expect([head[':method'], head[':path'], head[':authority']]).toEqual(['GET', '/orders?id=7', 'orders.test:8080']);
    expect([head['x-request-id'], head.accept]).toEqual(['abc-1', 'text/plain']);
    expect(seen[0]!.rawNames).toContain('x-request-id');
    for (const name of ['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'host']) expect(seen[0]!.rawNames).not.toContain(name);

    expect(got.events).toEqual(['requestStart', 'responseStart', 'data', 'end']);
    expect(got.status).toBe(201);
    expect(got.headers).toMatchObject({ 'content-type': 'text/plain', 'x-multi': ['a', 'b'] });
    expect(Object.keys(got.headers!).filter((name) => name.startsWith(':'))).toEqual([]);
    expect(Buffer.concat(got.body).toString()).toBe('hello world');
    expect(got.dones).toBe(1);
  });

  // An upload and a download larger than any window arrive byte for byte, and trailers reach the app.
  test('streams a 3 MiB request body out and a 3 MiB answer back whole, with the destination\'s trailers', async () => {
    const requestBody = randomBytes(3 * 1024 * 1024);
    const answerBody = randomBytes(3 * 1024 * 1024);
    const { port } = await destination((stream) => {
      const hash = createHash('sha256');
      let length = 0;
      stream.on('data', (c: Buffer) => { hash.update(c); length += c.length; });
      stream.on('end', () => {
        stream.respond({ ':status': 200, 'x-request-sha': hash.digest('hex'), 'x-request-length': String(length) }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'x-answer-sha': sha(answerBody) }));
        stream.end(answerBody);
      });
    });
    const pieces: Buffer[] = [];
    for (let at = 0; at < requestBody.length; at += 48 * 1024) pieces.push(requestBody.subarray(at, at + 48 * 1024));
    const { ended } = dispatch(Promise.resolve(clientTo(port)), {
      method: 'POST', path: '/upload', headers: { host: 'dest.test', 'content-type': 'application/octet-stream' },
      body: Readable.from(pieces, { objectMode: false }),
    });
    const got = await ended;
    expect(got.error).toBeUndefined();
    expect([got.headers!['x-request-sha'], got.headers!['x-request-length']]).toEqual([sha(requestBody), String(requestBody.length)]);
    const answer = Buffer.concat(got.body);
    expect([answer.length, sha(answer)]).toEqual([answerBody.length, sha(answerBody)]);
    expect(got.trailers).toEqual({ 'x-answer-sha': sha(answerBody) });
    expect(got.dones).toBe(1);
  });

  // An app's chunked request that ended with trailers (h1-server.ts puts them on its body):
  // they close the stream as a HEADERS frame, without what may not be forwarded.
  test('a request body that ended with trailers ends the stream with them; fields forbidden in trailers are left out', async () => {
    const { port } = await destination((stream) => {
      const hash = createHash('sha256');
      stream.on('data', (c: Buffer) => hash.update(c));
      let trailers: IncomingHttpHeaders = {};
      stream.on('trailers', (t: IncomingHttpHeaders) => { trailers = t; });
      stream.on('end', () => {
        stream.respond({ ':status': 200, 'content-type': 'application/json' });
        stream.end(JSON.stringify({ sha256: hash.digest('hex'), trailers }));
      });
    });
    const text = Buffer.from('a body with trailers');
    const body = new Readable({ read() {} });
    body.push(text);
    setBodyTrailers(body, { 'x-checksum': sha(text), 'x-multi': ['1', '2'], 'content-length': '1', 'transfer-encoding': 'chunked', te: 'trailers', 'x-forwarded-client-cert': 'By=forged' });
    body.push(null);
    const { ended } = dispatch(Promise.resolve(clientTo(port)), { method: 'POST', path: '/t', headers: { host: 'dest.test' }, body });
    const got = await ended;
    expect(got.error).toBeUndefined();
    const seen = JSON.parse(Buffer.concat(got.body).toString()) as { sha256: string; trailers: Record<string, string> };
    expect(seen.sha256).toBe(sha(text));
    expect(seen.trailers).toEqual({ 'x-checksum': sha(text), 'x-multi': '1, 2' });
  });

  // A slow app holds a fast destination back through HTTP/2 flow control instead of the sidecar
  // buffering the whole answer in memory.
  test('a handler that pauses holds the destination back to the stream\'s window until it resumes', async () => {
    const total = 2 * 1024 * 1024;
    const { port } = await destination((stream) => {
      stream.respond({ ':status': 200 });
      const chunk = Buffer.alloc(16 * 1024, 'f');
      let written = 0;
      const pump = () => {
        while (written < total && !stream.destroyed) {
          written += chunk.length;
          if (!stream.write(chunk)) return void stream.once('drain', pump);
        }
        stream.end();
      };
      pump();
    });
    let holding = true;
    const { seen, ended, controller } = dispatch(Promise.resolve(clientTo(port)), {}, {
      onResponseData: (c) => {
        c.pause();
        // Once let go, the handler still pauses on every piece but resumes at once after it.
        if (!holding) setImmediate(() => c.resume());
      },
    });
    await waitFor(() => seen.received > 0);
    // Long enough for a destination that was not held back to send much more than a window.
    await sleep(300);
    const beforeResume = seen.received;
    // Our client advertises a 256 KiB stream window (defaultLocalSettings); without
    // back-pressure the whole 2 MiB would be here by now.
    expect(beforeResume).toBeLessThanOrEqual(256 * 1024);
    expect(seen.events).not.toContain('end');
    holding = false;
    controller().resume();
    const got = await ended;
    expect(got.error).toBeUndefined();
    expect(got.received).toBe(total);
  });

  describe('failures before the answer\'s head', () => {
    // A stream the destination provably did not process may be retried elsewhere (retry-policy.ts).
    test('a stream reset with REFUSED_STREAM fails with ISTHMUS_ERR_DATAPLANE_UPSTREAM_REFUSED', async () => {
      const { port } = await destination((stream) => stream.close(constants.NGHTTP2_REFUSED_STREAM));
      const got = await dispatch(Promise.resolve(clientTo(port))).ended;
      expect(got.events).toEqual(['requestStart', 'error']);
      expect(got.error!.code).toBe('ISTHMUS_ERR_DATAPLANE_UPSTREAM_REFUSED');
      expect(got.dones).toBe(1);
    });

    // A reset with any other code may have been processed: not marked as safely retryable.
    test('a stream reset with INTERNAL_ERROR before the head fails with ERR_HTTP2_STREAM_ERROR', async () => {
      const { port } = await destination((stream) => stream.close(constants.NGHTTP2_INTERNAL_ERROR));
      const got = await dispatch(Promise.resolve(clientTo(port))).ended;
      expect(got.events).toEqual(['requestStart', 'error']);
      expect(got.error!.code).toBe('ERR_HTTP2_STREAM_ERROR');
    });

    // A connection that could not be opened reports its own error (e.g. ECONNREFUSED), as undici would.
    test('a connection that could not be opened fails with the connection\'s own error', async () => {
      const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
      const got = await dispatch(Promise.reject(refused)).ended;
      expect(got.events).toEqual(['requestStart', 'error']);
      expect(got.error).toBe(refused);
      expect(got.dones).toBe(1);
    });

    // A kept connection that no longer takes streams (GOAWAY sent or received): the request was not sent, so it may go elsewhere.
    test('a connection that takes no new streams fails with ISTHMUS_ERR_DATAPLANE_UPSTREAM_REFUSED', async () => {
      const { port } = await destination((stream) => { stream.respond({ ':status': 200 }); stream.end(); });
      const connection = clientTo(port);
      connection.close();
      const got = await dispatch(Promise.resolve(connection)).ended;
      expect(got.error!.code).toBe('ISTHMUS_ERR_DATAPLANE_UPSTREAM_REFUSED');
      expect(got.dones).toBe(1);
    });

    // A destination that never answers is given up on after headersTimeout, and its stream is
    // cancelled rather than left open on the shared connection.
    test('no head within headersTimeout of the request\'s end fails with UND_ERR_HEADERS_TIMEOUT and cancels the stream', async () => {
      const { port, seen } = await destination(() => undefined);
      const startedAt = Date.now();
      const got = await dispatch(Promise.resolve(clientTo(port)), { headersTimeout: 100 }).ended;
      expect(Date.now() - startedAt).toBeGreaterThanOrEqual(90);
      await waitFor(() => seen[0]?.closeCode !== undefined);
      expect(seen[0]!.closeCode).toBe(constants.NGHTTP2_CANCEL);
      expect(got.dones).toBe(1);
      expect(got.events).toEqual(['requestStart', 'error']);
      expect(got.error!.code).toBe('UND_ERR_HEADERS_TIMEOUT');
    });

    // headersTimeout counts from the request's end: a slow upload is not a slow answer.
    test('headersTimeout does not run while the request body is still being sent', async () => {
      const { port } = await destination((stream) => {
        stream.resume();
        stream.on('end', () => { stream.respond({ ':status': 200 }); stream.end('ok'); });
      });
      const body = new Readable({ read() {} });
      body.push('first ');
      setTimeout(() => { body.push('last'); body.push(null); }, 250);
      const got = await dispatch(Promise.resolve(clientTo(port)), { method: 'POST', body, headersTimeout: 100 }).ended;
      expect(got.error).toBeUndefined();
      expect(got.status).toBe(200);
    });
  });

  describe('failures after the answer\'s head', () => {
    // An answer cut off by the destination must not look complete to the app.
    test('a reset with a non-zero code mid-body fails with ERR_HTTP2_STREAM_ERROR', async () => {
      const { port } = await ownDestination((stream) => {
        stream.sendHeaders([':status', '200'], false);
        stream.write(Buffer.from('part of it'));
        setTimeout(() => stream.reset(h2Error.internalError), 20);
      });
      const got = await dispatch(Promise.resolve(clientTo(port))).ended;
      expect(got.events).toEqual(['requestStart', 'responseStart', 'data', 'error']);
      expect(got.error!.code).toBe('ERR_HTTP2_STREAM_ERROR');
      expect(got.dones).toBe(1);
    });

    // A destination that stalls mid-answer is given up on after bodyTimeout.
    test('silence after the head for bodyTimeout fails with UND_ERR_BODY_TIMEOUT and cancels the stream', async () => {
      const { port, seen } = await destination((stream) => {
        stream.respond({ ':status': 200 });
        stream.write('x');
      });
      const got = await dispatch(Promise.resolve(clientTo(port)), { bodyTimeout: 100 }).ended;
      expect(got.events).toEqual(['requestStart', 'responseStart', 'data', 'error']);
      await waitFor(() => seen[0]?.closeCode !== undefined);
      expect(seen[0]!.closeCode).toBe(constants.NGHTTP2_CANCEL);
      expect(got.dones).toBe(1);
      expect(got.error!.code).toBe('UND_ERR_BODY_TIMEOUT');
    });

    // An answer held back by a slow app is not the destination's silence: it must not be cut off.
    test('bodyTimeout does not fire while the handler is paused', async () => {
      const total = 1024 * 1024;
      const { port } = await destination((stream) => {
        stream.respond({ ':status': 200 });
        // More than the stream's window: the rest can only come once the handler resumes.
        stream.end(Buffer.alloc(total, 'p'));
      });
      let holding = true;
      const { seen, ended, controller } = dispatch(Promise.resolve(clientTo(port)), { bodyTimeout: 100 }, {
        onResponseData: (c) => { if (holding) c.pause(); },
      });
      await waitFor(() => seen.received > 0);
      // Three body timeouts with nothing coming (the window is used up and not credited).
      await sleep(350);
      expect(seen.events).not.toContain('error');
      expect(seen.received).toBeLessThan(total);
      holding = false;
      controller().resume();
      const got = await ended;
      expect(got.error).toBeUndefined();
      expect(got.received).toBe(total);
    });

    // A streamed answer without content-length (server-sent events, a long poll) may pause for
    // longer than bodyTimeout: openEndedTimeout is its limit instead.
    test('openEndedTimeout replaces bodyTimeout for an answer without content-length', async () => {
      const { port } = await destination((stream) => {
        stream.respond({ ':status': 200, 'content-type': 'text/event-stream' });
        stream.write('event 1\n');
        setTimeout(() => stream.end('event 2\n'), 250);
      });
      const got = await dispatch(Promise.resolve(clientTo(port)), { bodyTimeout: 100, openEndedTimeout: 2_000 }).ended;
      expect(got.error).toBeUndefined();
      expect(Buffer.concat(got.body).toString()).toBe('event 1\nevent 2\n');
    });
  });

  // The app went away: the destination must stop working on the request, and the app's side
  // reports the reason it was given, not some error of its own.
  test('controller.abort(err) resets the upstream stream with CANCEL and reports err', async () => {
    const { port, seen } = await destination((stream) => {
      stream.respond({ ':status': 200 });
      stream.write('streaming');
    });
    const reason = new Error('the app went away');
    const got = await dispatch(Promise.resolve(clientTo(port)), {}, { onResponseStart: (c) => c.abort(reason) }).ended;
    expect(got.events).toEqual(['requestStart', 'responseStart', 'error']);
    await waitFor(() => seen[0]?.closeCode !== undefined);
    expect(seen[0]!.closeCode).toBe(constants.NGHTTP2_CANCEL);
    expect(got.dones).toBe(1);
    expect(got.error).toBe(reason);
  });

  // The same, while the request still waits for its head.
  test('controller.abort(err) before the head resets the upstream stream with CANCEL and reports err', async () => {
    const { port, seen } = await destination(() => undefined);
    const run = dispatch(Promise.resolve(clientTo(port)));
    await waitFor(() => seen.length === 1);
    const reason = new Error('the app went away');
    run.controller().abort(reason);
    const got = await run.ended;
    await waitFor(() => seen[0]?.closeCode !== undefined);
    expect(seen[0]!.closeCode).toBe(constants.NGHTTP2_CANCEL);
    expect(got.dones).toBe(1);
    expect(got.error).toBe(reason);
  });

  // The app's upload broke (it went away mid-body): the destination's stream is cancelled, and
  // the failure is reported as the body's own error, not as the destination's.
  test('a request body that fails resets the upstream stream with CANCEL and reports the body\'s error', async () => {
    const { port, seen } = await destination((stream) => { stream.resume(); });
    const broken = new Error('the app\'s upload broke');
    const body = new Readable({ read() {} });
    body.push('the start of it');
    const run = dispatch(Promise.resolve(clientTo(port)), { method: 'POST', body });
    await waitFor(() => seen.length === 1);
    body.destroy(broken);
    const got = await run.ended;
    await waitFor(() => seen[0]?.closeCode !== undefined);
    expect(seen[0]!.closeCode).toBe(constants.NGHTTP2_CANCEL);
    expect(got.dones).toBe(1);
    expect(got.error).toBe(broken);
  });

  // `done` releases the request's slot (a circuit breaker's count): it must run exactly once,
  // or slots leak or go negative.
  test('done runs exactly once for a success and once for a failure', async () => {
    let opened = 0;
    const { port } = await ownDestination((stream) => {
      opened += 1;
      stream.sendHeaders([':status', '200'], false);
      if (opened === 2) {
        stream.write(Buffer.from('some'));
        setTimeout(() => stream.reset(h2Error.internalError), 10);
      } else if (opened === 3) {
        stream.write(Buffer.from('then silence'));
      } else {
        stream.write(Buffer.from('fine'));
        stream.end(['x-t', '1']);
      }
    });
    const connection = Promise.resolve(clientTo(port));
    // Streams open in this order: the first is answered, the second reset by the destination
    // mid-answer, the third given up on here (a body timeout, which also resets the stream).
    const ok = dispatch(connection, { path: '/ok' });
    const reset = dispatch(connection, { path: '/reset' });
    const silent = dispatch(connection, { path: '/silent', bodyTimeout: 50 });
    const outcomes = await Promise.all([ok.ended, reset.ended, silent.ended]);
    expect(outcomes.map((o) => o.events.at(-1))).toEqual(['end', 'error', 'error']);
    // Anything late (the stream's close after the exchange ended) must not call it again.
    await sleep(50);
    expect(outcomes.map((o) => o.dones)).toEqual([1, 1, 1]);
  });

  // A destination may answer before it has read the whole request (an early 413, say). The rest
  // of the upload is not wanted: the stream must be reset rather than left half-open on the
  // shared connection, where it would count against the stream limit for good.
  test('an answer that ends before the request body is sent ends the exchange and resets the stream', async () => {
    const { port, closes, connections } = await ownDestination((stream) => {
      // Answers at once and ends its side, with most of the body still to come.
      stream.sendHeaders([':status', '413'], false);
      stream.write(Buffer.from('too large'), true);
    });
    const connection = clientTo(port);
    // 4 MiB made as it is read: most of it is still to come when the answer has ended.
    let made = 0;
    const body = new Readable({
      read() {
        made += 64 * 1024;
        this.push(made <= 4 * 1024 * 1024 ? Buffer.alloc(64 * 1024, 'b') : null);
      },
    });
    const got = await dispatch(Promise.resolve(connection), { method: 'POST', path: '/upload', body }).ended;
    expect(got.events).toEqual(['requestStart', 'responseStart', 'data', 'end']);
    expect([got.status, Buffer.concat(got.body).toString()]).toEqual([413, 'too large']);
    expect(connection.activeStreams).toBe(0);
    // The rest of the upload is not read on.
    expect(made).toBeLessThan(4 * 1024 * 1024);
    expect(body.destroyed).toBe(true);
    await waitFor(() => closes.length === 1);
    expect(closes).toEqual([h2Error.cancel]);
    expect(connections[0]!.activeStreams).toBe(0);
    expect(got.dones).toBe(1);
  });
});
