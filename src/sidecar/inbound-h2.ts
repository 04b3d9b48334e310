import type { IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import { NGHTTP2_CANCEL, NGHTTP2_REFUSED_STREAM } from './h2-codes.js';
import { PassThrough } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { Dispatcher } from 'undici';
import { isIsthmusError } from '../core/errors.js';
import { grpcStatusOf, headWaitMs, isGrpc } from './grpc-status.js';
import { countRequestBody, trackH2Exchange } from './h2-exchange.js';
import { h2ForwardFields, h2RequestAsHttp1 } from './h2-headers.js';
import { forwardBytes } from './forward-bytes.js';
import { relayH2 } from './h2-relay.js';
import { replyH2 } from './h2-reply.js';
import type { H1DispatchOptions } from './h1-connection.js';
import { H2ResponseRelay } from './h2-response-relay.js';
import type { Inbound } from './inbound.js';
import { traceHeader } from './trace.js';

/**
 * An HTTP/2 stream from another sidecar (ALPN h2), for the app behind this inbound. The same
 * admission as an HTTP/1.1 request (peer identity once per connection, XFCC set and any that
 * arrived dropped, the span); then, by the protocol of the app port its `:authority` names
 * (`inbound.appProtocol` for the default one, inbound-ports.ts):
 * - `h2c`: relayed as HTTP/2 over a kept cleartext session to the app (gRPC needs this);
 * - `http`: translated to HTTP/1.1 over the app's keep-alive pool (h2-headers.ts), except gRPC,
 *   which cannot live without HTTP/2 trailers: that gets 501, naming the setting to change.
 * `isthmus trace` speaks HTTP/1.1, so no trace report is made here; its header is dropped.
 */
export function forwardStream(inbound: Inbound, stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
  stream.on('error', () => undefined); // a reset stream: its close does the cleaning up
  const method = headers[':method'] ?? 'GET';
  const grpc = isGrpc(headers['content-type']);
  const { started, span, peer } = inbound.admit(method, headers, stream.session?.socket as TLSSocket);
  const { facts, exchange } = trackH2Exchange(stream, method, headers, grpc);
  if (grpc) stream.once('close', () => inbound.grpcEnded('error' in peer ? undefined : peer.identity, exchange?.grpcStatus));
  if ('error' in peer) {
    inbound.answered(started, undefined, 403, span, facts);
    return replyH2(stream, 'ISTHMUS_ERR_TRUST_IDENTITY_DENIED', peer.error, grpc);
  }
  let path = headers[':path'] ?? '/';
  if (inbound.authz && method !== 'CONNECT') {
    const verdict = inbound.authz.request(peer.caller, method, path, headers);
    if ('refusal' in verdict) {
      inbound.answered(started, peer.identity, verdict.refusal.status, span, facts);
      return replyH2(stream, verdict.refusal.code, verdict.refusal.message, grpc);
    }
    path = verdict.target;
  }
  const limited = inbound.rateLimit?.admit(peer.caller);
  if (limited) {
    inbound.answered(started, peer.identity, 429, span, facts);
    return replyH2(stream, limited.code, limited.message, grpc, { status: 429, grpcStatus: grpcStatusOf(429), headers: limited.headers });
  }
  const app = inbound.apps.for(headers[':authority']);
  const refuse = (err: Error) => {
    inbound.answered(started, peer.identity, 502, span, facts);
    inbound.logger.warn({ err: err.message }, 'inbound HTTP/2 request to the app failed');
    replyH2(stream, 'ISTHMUS_ERR_DATAPLANE_APP_UNREACHABLE', `the app at ${app.address} did not answer: ${err.message}`, grpc);
  };
  const done = (status: number) => inbound.answered(started, peer.identity, status, span, facts);
  const { timeouts } = inbound;
  // Before the app's head, the relay's limits answer (responseHeaders, streamIdle: 502 named); after
  // it, silence cuts the stream (an open-ended answer's, a gRPC call's among them, after timeouts.tunnelIdle: h2-relay.ts
  // openEndedIdleMs; H2ResponseRelay's likewise).
  stream.setTimeout(timeouts.streamIdleMs, () => {
    if (stream.headersSent) stream.close(NGHTTP2_CANCEL);
  });
  if (method === 'CONNECT') {
    inbound.answered(started, peer.identity, 501, span, facts);
    return replyH2(stream, 'ISTHMUS_ERR_DATAPLANE_PROTOCOL_UNSUPPORTED', 'CONNECT over HTTP/2 is not carried', grpc);
  }

  if (app.protocol === 'h2c') {
    const fields = h2ForwardFields(headers, 'x-forwarded-client-cert');
    fields[':method'] = method;
    fields[':path'] = path;
    fields[':authority'] = headers[':authority'] ?? '';
    fields[':scheme'] = 'http';
    // Only in trace mode; a `delete` otherwise would slow the object down for nothing.
    if (fields[traceHeader] !== undefined) delete fields[traceHeader];
    inbound.appFields(fields, peer.xfcc, span);
    let trailers: IncomingHttpHeaders | undefined;
    stream.once('trailers', (t: IncomingHttpHeaders) => { trailers = t; });
    app.session()
      .then((session) => {
        const relayed = relayH2(session, stream, {
          headers: fields, sendBody: stream.endAfterHeaders ? undefined : (sink) => forwardBytes(stream, sink), trailers: () => trailers, grpc,
          responseHeadersMs: headWaitMs(timeouts.responseHeadersMs, grpc ? headers['grpc-timeout'] : undefined), streamIdleMs: timeouts.streamIdleMs,
          openEndedIdleMs: timeouts.tunnelIdleMs,
        });
        // The relay reads the body by now.
        if (!stream.endAfterHeaders) countRequestBody(stream, exchange);
        return relayed;
      })
      .then(done, (err: unknown) => {
        // The app refused the stream unprocessed (REFUSED_STREAM, GOAWAY): so is the caller's, and
        // its sidecar may send it again whatever the method (retry-policy.ts), here or elsewhere.
        if (!isIsthmusError(err, 'ISTHMUS_ERR_DATAPLANE_UPSTREAM_REFUSED')) return refuse(err as Error);
        inbound.answered(started, peer.identity, 503, span, facts);
        if (!stream.closed) stream.close(NGHTTP2_REFUSED_STREAM);
      });
    return;
  }

  if (grpc) {
    inbound.answered(started, peer.identity, 501, span, facts);
    return replyH2(stream, 'ISTHMUS_ERR_DATAPLANE_PROTOCOL_UNSUPPORTED',
      'gRPC needs HTTP/2 to the app, and this sidecar speaks HTTP/1.1 to it: set inbound.appProtocol: h2c in its config', true);
  }
  const request = h2RequestAsHttp1(path === headers[':path'] ? headers : { ...headers, ':path': path }, 'x-forwarded-client-cert');
  delete request.headers[traceHeader];
  inbound.appFields(request.headers, peer.xfcc, span);
  const relay = new H2ResponseRelay(stream, method, undefined, timeouts.tunnelIdleMs);
  // undici destroys a body stream once it has sent it; the HTTP/2 stream must live on for the
  // answer, so the body goes through a stream of its own (piped: back-pressure is kept).
  const body = stream.endAfterHeaders ? null : stream.pipe(new PassThrough());
  if (body) countRequestBody(stream, exchange);
  app.pool.dispatch({
    path: request.path, method: request.method as Dispatcher.HttpMethod, headers: request.headers, body,
    headersTimeout: timeouts.responseHeadersMs, bodyTimeout: timeouts.streamIdleMs, openEndedTimeout: timeouts.tunnelIdleMs,
  } as H1DispatchOptions, relay);
  relay.started.then(done, refuse);
}
