import { PassThrough, type Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { Dispatcher } from 'undici';
import { isIsthmusError } from '../core/errors.js';
import { h2Error } from '../h2/frames.js';
import type { HeaderBlock } from '../h2/hpack.js';
import type { H2Stream } from '../h2/stream.js';
import { forwardableTrailers, setBodyTrailers } from './body-trailers.js';
import { grpcStatusOf, headWaitMs, isGrpc } from './grpc-status.js';
import { CallerStream, type BodySink } from './h2-caller.js';
import { trackH2Exchange, type H2Exchange } from './h2-exchange.js';
import { bodiless, h2ForwardFields, h2RequestAsHttp1, http1ResponseAsH2 } from './h2-headers.js';
import { exchangeNotes, fieldsOf, H2Listener, headersOf, replyOwnH2 } from './h2-own-stream.js';
import { relayStream } from './h2-stream-relay.js';
import type { H1DispatchOptions } from './h1-connection.js';
import type { Inbound } from './inbound.js';
import { openEndedAnswer } from './timeouts.js';
import { traceHeader } from './trace.js';

type Controller = Dispatcher.DispatchController;

/**
 * HTTP/2 from other sidecars (TLS, ALPN h2; or h2c from a plain-text caller in permissive mode)
 * on the inbound, on Isthmus's own HTTP/2 (src/h2/). Each stream gets the same admission as an
 * HTTP/1.1 request (peer identity once per connection, XFCC set and any that arrived dropped,
 * authorization, rate limit, the span); then, by the protocol of the app port its `:authority`
 * names (`inbound.appProtocol` for the default one, inbound-ports.ts):
 * - `h2c`: relayed as HTTP/2 over a kept cleartext connection to the app (gRPC needs this);
 * - `http`: translated to HTTP/1.1 over the app's keep-alive pool (h2-headers.ts), except gRPC,
 *   which cannot live without HTTP/2 trailers: that gets 501, naming the setting to change.
 * `isthmus trace` speaks HTTP/1.1, so no trace report is made here; its header is dropped.
 */
export class OwnInboundH2 extends H2Listener {
  constructor(inbound: Inbound, keptMs: number) {
    super({ requestHeadersMs: inbound.timeouts.requestHeadersMs, idleMs: keptMs }, (socket, stream, head, endStream) => forwardStream(inbound, socket, stream, head, endStream),
      (err) => inbound.logger.error({ err: err.message }, 'an HTTP/2 connection from another sidecar ended on a failure of the sidecar'));
  }
}

function forwardStream(inbound: Inbound, socket: Duplex, stream: H2Stream, head: HeaderBlock, endStream: boolean): void {
  const caller = new CallerStream(stream, endStream, 0);
  const headers = headersOf(head.fields);
  const method = headers[':method'] ?? 'GET';
  const grpc = isGrpc(headers['content-type']);
  const { started, span, peer } = inbound.admit(method, { headers }, socket as TLSSocket);
  const { facts, exchange } = trackH2Exchange(stream, method, headers, grpc);
  stream.whenClosed(() => {
    if (exchange) exchange.requestBytes = caller.requestBytes;
    if (grpc) inbound.grpcEnded('error' in peer ? undefined : peer.identity, exchange?.grpcStatus);
  });
  const reply = (code: Parameters<typeof replyOwnH2>[1], message: string, override?: Parameters<typeof replyOwnH2>[5]) => replyOwnH2(stream, code, message, grpc, exchange, override);
  if ('error' in peer) {
    inbound.answered(started, undefined, 403, span, facts);
    return reply('ISTHMUS_ERR_TRUST_IDENTITY_DENIED', peer.error);
  }
  let path = headers[':path'] ?? '/';
  if (inbound.authz && method !== 'CONNECT') {
    const verdict = inbound.authz.request(peer.caller, method, path, { headers });
    if ('refusal' in verdict) {
      inbound.answered(started, peer.identity, verdict.refusal.status, span, facts);
      return reply(verdict.refusal.code, verdict.refusal.message);
    }
    path = verdict.target;
  }
  const limited = inbound.rateLimit?.admit(peer.caller);
  if (limited) {
    inbound.answered(started, peer.identity, 429, span, facts);
    return reply(limited.code, limited.message, { status: 429, grpcStatus: grpcStatusOf(429), headers: limited.headers });
  }
  const app = inbound.apps.for(headers[':authority']);
  const refuse = (err: Error) => {
    inbound.answered(started, peer.identity, 502, span, facts);
    inbound.logger.warn({ err: err.message }, 'inbound HTTP/2 request to the app failed');
    reply('ISTHMUS_ERR_DATAPLANE_APP_UNREACHABLE', `the app at ${app.address} did not answer: ${err.message}`);
  };
  const done = (status: number) => inbound.answered(started, peer.identity, status, span, facts);
  const { timeouts } = inbound;
  if (method === 'CONNECT') {
    inbound.answered(started, peer.identity, 501, span, facts);
    return reply('ISTHMUS_ERR_DATAPLANE_PROTOCOL_UNSUPPORTED', 'CONNECT over HTTP/2 is not carried');
  }

  if (app.protocol === 'h2c') {
    const forwarded = h2ForwardFields(headers, 'x-forwarded-client-cert');
    // Only in trace mode; a `delete` otherwise would slow the object down for nothing.
    if (forwarded[traceHeader] !== undefined) delete forwarded[traceHeader];
    inbound.appFields(forwarded, peer.xfcc, span);
    const fields = [':method', method, ':scheme', 'http', ':authority', headers[':authority'] ?? '', ':path', path, ...fieldsOf(forwarded)];
    app.h2Connection()
      .then((connection) => relayStream(connection, caller, {
        fields, responseHeadersMs: headWaitMs(timeouts.responseHeadersMs, grpc ? headers['grpc-timeout'] : undefined), streamIdleMs: timeouts.streamIdleMs,
        openEndedIdleMs: timeouts.tunnelIdleMs, ...exchangeNotes(exchange),
      }))
      .then(done, (err: unknown) => {
        // The app refused the stream unprocessed (REFUSED_STREAM, GOAWAY): so is the caller's, and
        // its sidecar may send it again whatever the method (retry-policy.ts), here or elsewhere.
        if (!isIsthmusError(err, 'ISTHMUS_ERR_DATAPLANE_UPSTREAM_REFUSED')) return refuse(err as Error);
        inbound.answered(started, peer.identity, 503, span, facts);
        if (!stream.closed) stream.reset(h2Error.refusedStream);
      });
    return;
  }

  if (grpc) {
    inbound.answered(started, peer.identity, 501, span, facts);
    return reply('ISTHMUS_ERR_DATAPLANE_PROTOCOL_UNSUPPORTED',
      'gRPC needs HTTP/2 to the app, and this sidecar speaks HTTP/1.1 to it: set inbound.appProtocol: h2c in its config');
  }
  const request = h2RequestAsHttp1(path === headers[':path'] ? headers : { ...headers, ':path': path }, 'x-forwarded-client-cert');
  delete request.headers[traceHeader];
  inbound.appFields(request.headers, peer.xfcc, span);
  const relay = new OwnH2ResponseRelay(caller, method, exchange, timeouts.tunnelIdleMs, timeouts.streamIdleMs);
  const body = caller.headOnly ? null : bodyStream(caller);
  app.pool.dispatch({
    path: request.path, method: request.method as Dispatcher.HttpMethod, headers: request.headers, body,
    headersTimeout: timeouts.responseHeadersMs, bodyTimeout: timeouts.streamIdleMs, openEndedTimeout: timeouts.tunnelIdleMs,
  } as H1DispatchOptions, relay);
  relay.started.then(done, refuse);
}

/**
 * The caller's request body as a stream for an HTTP/1.1 app's pool, with back-pressure: the
 * caller is credited only as the pool reads (a PassThrough of its own: undici destroys a body
 * stream once it has sent it, and the HTTP/2 stream must live on for the answer). Trailers the
 * request ended with reach the app as a chunked body's (they do not when the caller gave a
 * content-length, which the app's request then keeps).
 */
function bodyStream(caller: CallerStream): PassThrough {
  const pass = new PassThrough();
  const sink: BodySink = {
    write: (data, end) => {
      // A view of the caller's read: copied, since the pool may read it after the next read.
      const ok = data.length > 0 ? pass.write(Buffer.from(data)) : true;
      if (end) pass.end();
      return ok;
    },
    end: (trailers) => {
      // The caller's trailers go to the app after the last chunk (h1-connection.ts, body-trailers.ts).
      if (trailers !== undefined && trailers.length > 0) setBodyTrailers(pass, headersOf(trailers));
      pass.end();
    },
    get closed() { return pass.destroyed || pass.writableEnded; },
  };
  pass.on('drain', () => caller.upWritable());
  caller.feed(sink, () => undefined);
  return pass;
}

/**
 * The counterpart of response-relay.ts for a caller that spoke HTTP/2 to an app that speaks
 * HTTP/1.1: a dispatch handler that writes the app's answer into the caller's stream of ours,
 * translated (http1ResponseAsH2): head, body with back-pressure, trailers the app announced.
 * `started` settles once: with the status when the head has been written, or with the error
 * when the attempt failed before any byte of an answer.
 */
export class OwnH2ResponseRelay implements Dispatcher.DispatchHandler {
  readonly started: Promise<number>;
  private resolve!: (status: number) => void;
  private reject!: (err: Error) => void;
  private controller: Controller | undefined;
  private headWritten = false;
  private noBody = false;
  private idleTimer: NodeJS.Timeout | undefined;
  private idleMs: number;

  constructor(
    private readonly caller: CallerStream, private readonly method: string, private readonly exchange: H2Exchange | undefined,
    private readonly openEndedIdleMs: number, streamIdleMs: number,
  ) {
    this.idleMs = streamIdleMs;
    this.started = new Promise<number>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    caller.link({
      // The caller cancelled its stream: the app's request is aborted too.
      callerClosed: (code) => {
        clearTimeout(this.idleTimer);
        if (code !== h2Error.noError && this.controller && !this.controller.aborted) this.controller.abort(new Error('the caller closed its stream'));
      },
      callerWritable: () => {
        if (this.controller?.paused) this.controller.resume();
      },
    });
  }

  private get stream(): H2Stream {
    return this.caller.stream;
  }

  /**
   * After the head, a stream silent both ways for the idle limit is cut. Each piece of the
   * answer refreshes the one timer (the limit is set with the head and does not change after).
   */
  private touch(): void {
    if (!this.headWritten) return;
    if (this.idleTimer) {
      this.idleTimer.refresh();
      return;
    }
    this.idleTimer = setTimeout(() => {
      if (!this.stream.closed) this.stream.reset(h2Error.cancel);
      this.controller?.abort(new Error('the caller\'s stream was silent too long'));
    }, this.idleMs);
  }

  onRequestStart(controller: Controller): void {
    this.controller = controller;
  }

  onResponseStart(_controller: Controller, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    if (statusCode < 200 || this.stream.closed) return;
    const head = http1ResponseAsH2(statusCode, headers);
    this.noBody = bodiless(this.method, statusCode);
    if (!this.noBody && openEndedAnswer(headers)) this.idleMs = this.openEndedIdleMs;
    this.stream.sendHeaders(fieldsOf(head), this.noBody);
    this.headWritten = true;
    this.touch();
    this.resolve(statusCode);
  }

  onResponseData(controller: Controller, chunk: Buffer): void {
    if (this.noBody || this.stream.closed) return;
    this.touch();
    if (this.exchange) this.exchange.responseBytes += chunk.length;
    if (!this.stream.write(chunk)) controller.pause();
  }

  onResponseEnd(_controller: Controller, trailers: Record<string, string | string[] | undefined>): void {
    clearTimeout(this.idleTimer);
    if (this.noBody || this.stream.closed) return;
    // Without the fields a trailer may not carry (body-trailers.ts), as a request's.
    const forwardable = forwardableTrailers(trailers);
    this.stream.end(forwardable === undefined ? undefined : fieldsOf(forwardable));
  }

  onResponseError(_controller: Controller, err: Error): void {
    clearTimeout(this.idleTimer);
    if (!this.headWritten) this.reject(err);
    else if (!this.stream.closed) this.stream.reset(h2Error.internalError);
  }
}
