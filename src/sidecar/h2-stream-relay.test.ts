import { createHash } from 'node:crypto';
import { connect as h2connect, constants, createServer as createH2Server, type ClientHttp2Stream, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { connect, createServer, type AddressInfo, type Server } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../../test/helpers/h2-raw.js';
import { EchoClient, startGrpcEchoInstance, type EchoReply } from '../dev/grpc-echo.js';
import { H2ClientConnections } from '../h2/client-connections.js';
import { H2Connection } from '../h2/connection.js';
import type { H2Stream } from '../h2/stream.js';
import { CallerStream } from './h2-caller.js';
import { relayStream, type StreamForward } from './h2-stream-relay.js';
import { retriedAnswerCode } from './retry-policy.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const clean of cleanups.splice(0).reverse()) await clean();
});

const listen = (server: Server | ReturnType<typeof createH2Server>): Promise<number> =>
  new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));

/**
 * A caller-facing h2c server of ours whose every stream is relayed by relayStream to the h2c
 * server at `upstreamPort`; `outcomes` gets each relay's settled result.
 */
async function relayTo(upstreamPort: number, options: Partial<StreamForward> = {}, retryPort?: number) {
  const upstreams = new H2ClientConnections(60_000);
  cleanups.push(() => upstreams.closeAll(false));
  const outcomes: (number | Error)[] = [];
  const downstreams: H2Stream[] = [];
  const connections: H2Connection[] = [];
  const server = createServer((socket) => {
    connections.push(new H2Connection(socket, {
      role: 'server',
      onStream: (stream, head, endStream) => {
        downstreams.push(stream);
        const fields = head.fields.slice();
        // The caller's side takes the stream now; the relay starts once the upstream connection is there.
        const caller = new CallerStream(stream, endStream);
        const attempt = (port: number) => upstreams.get(`app:${port}`, () => connect(port, '127.0.0.1'), 'connect', 2_000)
          .then((upstream) => relayStream(upstream, caller, { fields, responseHeadersMs: 5_000, streamIdleMs: 5_000, ...options }));
        // With a second destination, an attempt refused unprocessed is sent there again, as attempts.ts would.
        const relayed = attempt(upstreamPort).catch((err: Error & { code?: string }) => {
          if (retryPort === undefined || err.code !== 'ISTHMUS_ERR_DATAPLANE_UPSTREAM_REFUSED' || !caller.replayable) throw err;
          return attempt(retryPort);
        });
        relayed.then((status) => outcomes.push(status), (err: Error) => {
          outcomes.push(err);
          if (!stream.closed) stream.reset(constants.NGHTTP2_REFUSED_STREAM);
        });
      },
    }));
  });
  const port = await listen(server);
  cleanups.push(() => new Promise<void>((resolve) => { for (const c of connections) c.destroy(); server.close(() => resolve()); }));
  return { port, outcomes, downstreams };
}

async function nodeUpstream(handle: (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => void) {
  const server = createH2Server();
  const sessions: { destroy: () => void }[] = [];
  server.on('session', (s) => sessions.push(s));
  server.on('stream', (stream, headers) => {
    stream.on('error', () => undefined);
    handle(stream, headers);
  });
  const port = await listen(server);
  cleanups.push(() => new Promise<void>((resolve) => { for (const s of sessions) s.destroy(); server.close(() => resolve()); }));
  return port;
}

function callerSession(port: number) {
  const session = h2connect(`http://127.0.0.1:${port}`);
  session.on('error', () => undefined);
  cleanups.push(() => session.destroy());
  return session;
}

describe('relayStream: an HTTP/2 stream relayed on Isthmus\'s own HTTP/2', () => {
  it('carries gRPC: unary calls, an error with trailer metadata, a bidirectional stream', async () => {
    const app = await startGrpcEchoInstance({ service: 'grpc-echo', cluster: 'east', zone: 'a', instance: 'echo-1', host: '127.0.0.1', port: 0 });
    cleanups.push(() => app.close());
    const { port, outcomes } = await relayTo(Number(app.address.split(':')[1]), { openEndedIdleMs: 60_000 });
    const client = new EchoClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as {
      Echo: (req: unknown, md: grpc.Metadata, cb: (err: grpc.ServiceError | null, reply: EchoReply) => void) => void;
      EchoStream: () => grpc.ClientDuplexStream<unknown, EchoReply>;
      close: () => void;
    };
    cleanups.push(() => client.close());
    const unary = (message: string, md = new grpc.Metadata()) => new Promise<{ err: grpc.ServiceError | null; reply: EchoReply }>((resolve) => client.Echo({ message }, md, (err, reply) => resolve({ err, reply })));

    const replies = await Promise.all(Array.from({ length: 20 }, (_, i) => unary(`m${i}`)));
    expect(replies.map((r) => r.reply.message)).toEqual(Array.from({ length: 20 }, (_, i) => `m${i}`));
    const md = new grpc.Metadata();
    md.set('x-echo-status', '7');
    const denied = await unary('no', md);
    expect([denied.err?.code, denied.err?.details, denied.err?.metadata.get('x-echo-where')]).toEqual([grpc.status.PERMISSION_DENIED, 'no', ['east/echo-1']]);

    const call = client.EchoStream();
    const streamed: string[] = [];
    call.on('data', (r: EchoReply) => streamed.push(r.message));
    for (let i = 0; i < 50; i += 1) call.write({ message: `s${i}` });
    call.end();
    await new Promise((resolve) => call.on('end', resolve));
    expect(streamed).toEqual(Array.from({ length: 50 }, (_, i) => `s${i}`));

    expect(outcomes.filter((o) => o !== 200).map(String)).toEqual([]);
  });

  it('relays a 16 MiB answer and a 16 MiB request byte for byte within the windows of both connections', async () => {
    const upstreamPort = await nodeUpstream((stream) => {
      const hash = createHash('sha256');
      stream.on('data', (c: Buffer) => hash.update(c));
      stream.on('end', () => {
        stream.respond({ ':status': 200, 'x-request-sha': hash.digest('hex') });
        stream.end(Buffer.alloc(16 * 1024 * 1024, 'd'));
      });
    });
    const { port } = await relayTo(upstreamPort);
    const body = Buffer.alloc(16 * 1024 * 1024, 'u');
    const got = await new Promise<{ sha: string; length: number }>((resolve, reject) => {
      const stream = callerSession(port).request({ ':method': 'POST', ':path': '/big' });
      let sha = '';
      let length = 0;
      stream.on('response', (h) => { sha = String(h['x-request-sha']); });
      stream.on('data', (c: Buffer) => { length += c.length; });
      stream.on('end', () => resolve({ sha, length }));
      stream.on('error', reject);
      stream.end(body);
    });
    expect(got).toEqual({ sha: createHash('sha256').update(body).digest('hex'), length: 16 * 1024 * 1024 });
  });

  it('passes a caller\'s cancel on to the destination\'s stream with its code, and sends no reset after a stream that ended well', async () => {
    const upstreamCloses: number[] = [];
    const upstreamPort = await nodeUpstream((stream, headers) => {
      stream.on('close', () => upstreamCloses.push(stream.rstCode ?? -1));
      stream.respond({ ':status': 200 });
      if (headers[':path'] === '/quick') stream.end('done');
      else stream.write('streaming');
    });
    const { port } = await relayTo(upstreamPort);
    const session = callerSession(port);
    await new Promise<void>((resolve) => { const s = session.request({ ':path': '/quick' }); s.resume(); s.on('end', resolve); });
    const stream = session.request({ ':method': 'POST', ':path': '/long' });
    stream.on('error', () => undefined);
    await new Promise((resolve) => stream.once('data', resolve));
    stream.close(constants.NGHTTP2_CANCEL);
    await waitFor(() => upstreamCloses.length === 2);
    expect(upstreamCloses).toEqual([constants.NGHTTP2_NO_ERROR, constants.NGHTTP2_CANCEL]);
  });

  it('holds back a destination that sends faster than the caller reads: what waits in the relay stays within the windows, and the trailers follow the data', async () => {
    let sent = 0;
    const upstreamPort = await nodeUpstream((stream) => {
      stream.respond({ ':status': 200 }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'x-done': 'yes' }));
      const chunk = Buffer.alloc(64 * 1024, 'f');
      const pump = () => {
        while (sent < 4 * 1024 * 1024 && !stream.destroyed) {
          sent += chunk.length;
          if (!stream.write(chunk)) return void stream.once('drain', pump);
        }
        stream.end();
      };
      pump();
    });
    const { port, downstreams } = await relayTo(upstreamPort);
    const stream = callerSession(port).request({ ':path': '/firehose' });
    stream.on('error', () => undefined);
    await new Promise((resolve) => stream.once('response', resolve));
    // The caller reads nothing for a while.
    stream.pause();
    await new Promise((r) => setTimeout(r, 1_000));
    const waiting = downstreams[0]!.waitingBytes;
    // The caller's window (64 KiB by node:http2's default) and our stream's window upstream
    // (256 KiB) bound it; a relay without back-pressure would have taken the whole 4 MiB by now.
    expect(waiting).toBeLessThanOrEqual(512 * 1024);
    expect(sent).toBeLessThan(4 * 1024 * 1024);
    const { read, trailers } = await readToClose(stream);
    expect(read).toBe(4 * 1024 * 1024);
    // The trailers waited behind the data the caller had not read, and still came after it.
    expect(trailers['x-done']).toBe('yes');
    expect(stream.rstCode).toBe(constants.NGHTTP2_NO_ERROR);
  });

  it('sends a request refused unprocessed to the next destination with its whole body, kept for it; a body past the limit is not kept', async () => {
    // Reads the whole body, then refuses the stream as unprocessed (as a server going away would).
    const refusing = await nodeUpstream((stream) => {
      stream.resume();
      stream.on('end', () => stream.close(constants.NGHTTP2_REFUSED_STREAM));
    });
    const answering = await nodeUpstream((stream) => {
      const hash = createHash('sha256');
      let length = 0;
      stream.on('data', (c: Buffer) => { hash.update(c); length += c.length; });
      stream.on('end', () => { stream.respond({ ':status': 200, 'x-sha': hash.digest('hex'), 'x-length': String(length) }); stream.end(); });
    });
    const { port, outcomes } = await relayTo(refusing, {}, answering);
    const session = callerSession(port);
    const post = (body: Buffer) => new Promise<{ status: number; sha?: string }>((resolve) => {
      const stream = session.request({ ':method': 'POST', ':path': '/upload' });
      stream.on('response', (h) => resolve({ status: Number(h[':status']), sha: h['x-sha'] as string | undefined }));
      stream.on('error', () => undefined);
      stream.on('close', () => resolve({ status: stream.rstCode === 0 ? 0 : -stream.rstCode! }));
      stream.end(body);
    });
    const small = Buffer.alloc(300 * 1024, 's');
    expect(await post(small)).toEqual({ status: 200, sha: createHash('sha256').update(small).digest('hex') });
    // 2 MiB, all of it sent before the refusal, is past the 1 MiB kept for another attempt: the
    // refusal reaches the caller instead.
    expect(await post(Buffer.alloc(2 * 1024 * 1024, 'b'))).toEqual({ status: -constants.NGHTTP2_REFUSED_STREAM });
    expect(outcomes.map((o) => (typeof o === 'number' ? o : (o as Error & { code?: string }).code))).toEqual([200, 'ISTHMUS_ERR_DATAPLANE_UPSTREAM_REFUSED']);
  });

  it('keeps an answer\'s trailers behind its data when the destination has finished and the caller still has data to read', async () => {
    // 200 KiB fits the relay's window towards the destination, not node:http2's 64 KiB window of
    // a caller that does not read: the destination ends (trailers, then its stream closes) while
    // most of the answer still waits in the relay.
    const upstreamPort = await nodeUpstream((stream) => {
      stream.respond({ ':status': 200 }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'x-done': 'yes' }));
      stream.end(Buffer.alloc(200 * 1024, 't'));
    });
    const { port, downstreams } = await relayTo(upstreamPort);
    const stream = callerSession(port).request({ ':path': '/small' });
    stream.on('error', () => undefined);
    stream.pause();
    await new Promise((resolve) => stream.once('response', resolve));
    await waitFor(() => (downstreams[0]?.waitingBytes ?? 0) > 0);
    await new Promise((r) => setTimeout(r, 200));
    const { read, trailers } = await readToClose(stream);
    expect([read, trailers['x-done'], stream.rstCode]).toEqual([200 * 1024, 'yes', constants.NGHTTP2_NO_ERROR]);
  });

  it('gives up on a head that does not come within responseHeadersMs of the request\'s end, and cancels the upstream stream', async () => {
    const upstreamCloses: number[] = [];
    const upstreamPort = await nodeUpstream((stream) => { stream.on('close', () => upstreamCloses.push(stream.rstCode ?? -1)); });
    const { port, outcomes } = await relayTo(upstreamPort, { responseHeadersMs: 200 });
    const stream = callerSession(port).request({ ':path': '/never' });
    stream.on('error', () => undefined);
    await waitFor(() => outcomes.length === 1 && upstreamCloses.length === 1);
    expect((outcomes[0] as Error & { code?: string }).code).toBe('ETIMEDOUT');
    expect(upstreamCloses).toEqual([constants.NGHTTP2_CANCEL]);
  });

  it('rejects as unprocessed (retryable) a stream the destination refused, and holds back an answer retryAnswer takes', async () => {
    const upstreamPort = await nodeUpstream((stream, headers) => {
      if (headers[':path'] === '/refuse') stream.close(constants.NGHTTP2_REFUSED_STREAM);
      else {
        stream.respond({ ':status': 503 });
        stream.end('busy');
      }
    });
    const { port, outcomes } = await relayTo(upstreamPort, { retryAnswer: (status) => status === 503 });
    const session = callerSession(port);
    for (const path of ['/refuse', '/busy']) session.request({ ':path': path }).on('error', () => undefined);
    await waitFor(() => outcomes.length === 2);
    const codes = outcomes.map((o) => (o as Error & { code?: string }).code).sort();
    expect(codes).toEqual(['ISTHMUS_ERR_DATAPLANE_UPSTREAM_REFUSED', retriedAnswerCode].sort());
  });
});

/** Resumes a paused caller stream and reads it to its close: the bytes, and the trailers. */
async function readToClose(stream: ClientHttp2Stream): Promise<{ read: number; trailers: Record<string, unknown> }> {
  let read = 0;
  let trailers: Record<string, unknown> = {};
  stream.on('trailers', (t) => { trailers = t; });
  stream.on('data', (c: Buffer) => { read += c.length; });
  stream.resume();
  await new Promise((resolve) => stream.on('close', resolve));
  return { read, trailers };
}
