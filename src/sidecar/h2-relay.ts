import type { ClientHttp2Session, IncomingHttpHeaders, OutgoingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import { NGHTTP2_CANCEL, NGHTTP2_FLAG_END_STREAM, NGHTTP2_NO_ERROR } from './h2-codes.js';
import type { Readable } from 'node:stream';
import { IsthmusError } from '../core/errors.js';
import { h2ExchangeOf } from './h2-exchange.js';
import { h2ForwardFields, h2Response } from './h2-headers.js';
import { goawayLastStreamId } from './h2-sessions.js';
import { h2StreamUnprocessed, retriedAnswerCode } from './retry-policy.js';


export interface H2Forward {
  /** The request head for the next hop, pseudo-headers included. */
  headers: OutgoingHttpHeaders;
  /** The request body for this attempt; absent when the request ended with its headers. */
  body: Readable | undefined;
  /** The request's trailers, read when the body has been sent (gRPC rarely has any; they pass if present). */
  trailers: () => IncomingHttpHeaders | undefined;
  responseHeadersMs: number;
  streamIdleMs: number;
  /** A response header the caller must not see (the trace report between sidecars). */
  drop?: string;
  /** Asked before the head is passed on: true drops the answer (it will be retried, attempts.ts). */
  retryAnswer?: (status: number, grpcStatus: number | undefined) => boolean;
  /** Runs once when the stream is over, however it ended (a circuit breaker's count). */
  done?: () => void;
}

/**
 * One HTTP/2 stream relayed over `session` into the caller's stream `downstream`: body both
 * ways with back-pressure (pipe, within HTTP/2 flow control), trailers both ways (gRPC's
 * grpc-status lives there), a trailers-only answer kept trailers-only, and cancellation both
 * ways: an RST_STREAM from either side closes the other with the same code.
 *
 * Resolves with the status once the response head has been passed on; rejects when the attempt
 * failed before that, so the caller may retry: with ISTHMUS_ERR_DATAPLANE_UPSTREAM_REFUSED when
 * the destination provably did not process the stream (retry-policy.ts, any method may be
 * retried), with ETIMEDOUT when no head came within `responseHeadersMs` or the stream stayed
 * silent for `streamIdleMs` before it. After the head, a failure or silence cuts the stream.
 */
export function relayH2(session: ClientHttp2Session, downstream: ServerHttp2Stream, f: H2Forward): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    let started = false;
    const upstream = session.request(f.headers, { endStream: !f.body, waitForTrailers: f.body !== undefined });
    if (f.done) upstream.once('close', f.done);
    const fail = (err: Error) => {
      clearTimeout(headTimer);
      downstream.removeListener('close', onDownstreamClose);
      reject(err);
    };
    // An end before any head: refused unprocessed (safe to send again), or anything else.
    const ended = (err: Error) => {
      const unprocessed = h2StreamUnprocessed({ rstCode: upstream.rstCode, streamId: upstream.id, goawayLastStreamId: goawayLastStreamId(session) });
      fail(unprocessed
        ? new IsthmusError('ISTHMUS_ERR_DATAPLANE_UPSTREAM_REFUSED', `the destination refused the stream unprocessed (${err.message})`, { cause: err })
        : err);
    };
    const headTimer = setTimeout(() => {
      upstream.close(NGHTTP2_CANCEL);
      fail(Object.assign(new Error(`no response head within ${f.responseHeadersMs} ms`), { code: 'ETIMEDOUT' }));
    }, f.responseHeadersMs);
    // The caller cancelled (or its connection went): the destination stops working on it too.
    const onDownstreamClose = () => {
      if (!upstream.closed) upstream.close(downstream.rstCode && downstream.rstCode !== NGHTTP2_NO_ERROR ? downstream.rstCode : NGHTTP2_CANCEL);
    };
    downstream.once('close', onDownstreamClose);
    upstream.setTimeout(f.streamIdleMs, () => {
      if (!started) fail(Object.assign(new Error(`no byte either way for ${f.streamIdleMs} ms before a response head (timeouts.streamIdle)`), { code: 'ETIMEDOUT' }));
      upstream.close(NGHTTP2_CANCEL);
    });

    if (f.body) {
      f.body.pipe(upstream);
      f.body.once('error', () => upstream.close(NGHTTP2_CANCEL));
      upstream.once('wantTrailers', () => upstream.sendTrailers(h2ForwardFields(f.trailers() ?? {})));
    }

    upstream.once('response', (headers, flags) => {
      clearTimeout(headTimer);
      if (downstream.destroyed || downstream.closed) return void upstream.close(NGHTTP2_CANCEL);
      if (f.retryAnswer) {
        const grpcStatus = headers['grpc-status'] === undefined ? undefined : Number(headers['grpc-status']);
        if (f.retryAnswer(Number(headers[':status']), grpcStatus)) {
          fail(Object.assign(new Error(`the destination answered ${headers[':status']}${grpcStatus === undefined ? '' : ` (grpc-status ${grpcStatus})`}; retried`), { code: retriedAnswerCode, status: Number(headers[':status']) }));
          return void upstream.close(NGHTTP2_CANCEL);
        }
      }
      const head = h2Response(headers, f.drop);
      const exchange = h2ExchangeOf(downstream);
      // gRPC's trailers-only answer (an error, most often) must stay one HEADERS frame with END_STREAM.
      if ((flags & NGHTTP2_FLAG_END_STREAM) !== 0) {
        exchange?.noteGrpcStatus(headers);
        downstream.respond(head, { endStream: true });
        upstream.resume();
      } else {
        let trailers: IncomingHttpHeaders | undefined;
        upstream.once('trailers', (t: IncomingHttpHeaders) => {
          trailers = t;
          exchange?.noteGrpcStatus(t);
        });
        downstream.respond(head, { waitForTrailers: true });
        downstream.once('wantTrailers', () => downstream.sendTrailers(h2ForwardFields(trailers ?? {})));
        upstream.pipe(downstream);
        if (exchange?.countsBytes) upstream.on('data', (chunk: Buffer) => { exchange.responseBytes += chunk.length; });
      }
      started = true;
      resolve(head[':status'] as number);
    });

    upstream.once('error', (err: Error) => {
      if (!started) ended(err);
    });
    upstream.once('close', () => {
      if (!started) {
        // Closed with no head and no error: the destination refused or cancelled the stream.
        return ended(Object.assign(new Error(`the destination closed the stream (code ${upstream.rstCode}) before answering`), { code: 'ERR_HTTP2_STREAM_ERROR' }));
      }
      // Cut mid-answer (RST_STREAM, idle timeout, lost connection): the caller's stream ends the same way.
      if (upstream.rstCode !== NGHTTP2_NO_ERROR && !downstream.closed) downstream.close(upstream.rstCode);
    });
  });
}
