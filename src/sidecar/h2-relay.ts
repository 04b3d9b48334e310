import type { ClientHttp2Session, ClientHttp2Stream, IncomingHttpHeaders, OutgoingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import { NGHTTP2_CANCEL, NGHTTP2_FLAG_END_STREAM, NGHTTP2_NO_ERROR } from './h2-codes.js';
import { IsthmusError } from '../core/errors.js';
import { forwardBytes } from './forward-bytes.js';
import { h2ExchangeOf } from './h2-exchange.js';
import { h2ForwardFields, h2Response } from './h2-headers.js';
import { goawayLastStreamId } from './h2-sessions.js';
import { h2StreamUnprocessed, retriedAnswerCode } from './retry-policy.js';
import { openEndedAnswer } from './timeouts.js';


export interface H2Forward {
  /** The request head for the next hop, pseudo-headers included. */
  headers: OutgoingHttpHeaders;
  /**
   * Starts writing the request body into the upstream stream, ending it at the body's end (and
   * cancelling it if the body fails); absent when the request ended with its headers.
   */
  sendBody: ((upstream: ClientHttp2Stream) => void) | undefined;
  /**
   * The request's trailers, read when the body has been sent; they pass if present. Not asked
   * for a gRPC request: gRPC's request is headers, messages and the end of the stream, never
   * trailers (gRPC over HTTP/2, "Requests"), and waiting for them costs every call a round of
   * callbacks.
   */
  trailers: () => IncomingHttpHeaders | undefined;
  /** The request is a gRPC call (grpc-status.ts isGrpc). */
  grpc: boolean;
  /** The answer's head must come within this, counted from the request's end. */
  responseHeadersMs: number;
  streamIdleMs: number;
  /**
   * Once the head of an open-ended answer (timeouts.ts openEndedAnswer: no content-length, as
   * every gRPC answer) has passed, silence on the stream (both ways) is limited by this instead
   * of `streamIdleMs` (the sidecars give timeouts.tunnelIdle): a server-streaming or
   * bidirectional call, a watch, server-sent events may rightly stay silent for minutes.
   */
  openEndedIdleMs?: number;
  /** A response header the caller must not see (the trace report between sidecars). */
  drop?: string;
  /** Asked before the head is passed on: true drops the answer (it will be retried, attempts.ts). */
  retryAnswer?: (status: number, grpcStatus: number | undefined) => boolean;
  /** Told the grpc-status of the answer's trailers when its head had none and was not a 5xx (attempts.ts TrailersStatus). */
  trailersStatus?: (grpcStatus: number) => void;
  /** Runs once when the stream is over, however it ended (a circuit breaker's count). */
  done?: () => void;
}

/**
 * One HTTP/2 stream relayed over `session` into the caller's stream `downstream`: body both
 * ways with back-pressure (forwardBytes, within HTTP/2 flow control), trailers both ways (gRPC's
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
    const body = f.sendBody;
    const upstream = session.request(f.headers, { endStream: !body, waitForTrailers: body !== undefined && !f.grpc });
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
    // The head is due `responseHeadersMs` after the request's end, as over HTTP/1.1
    // (h1-connection.ts): a client-streaming gRPC call or a long upload is not cut while it still
    // sends; until then only silence (streamIdleMs, below) ends it.
    let headTimer: NodeJS.Timeout | undefined;
    const startHeadClock = () => {
      if (started) return;
      headTimer = setTimeout(() => {
        upstream.close(NGHTTP2_CANCEL);
        fail(Object.assign(new Error(`no response head within ${f.responseHeadersMs} ms of the request's end`), { code: 'ETIMEDOUT' }));
      }, f.responseHeadersMs);
    };
    // The caller cancelled (or its connection went): the destination stops working on it too.
    const onDownstreamClose = () => {
      if (!upstream.closed) upstream.close(downstream.rstCode && downstream.rstCode !== NGHTTP2_NO_ERROR ? downstream.rstCode : NGHTTP2_CANCEL);
    };
    downstream.once('close', onDownstreamClose);
    upstream.setTimeout(f.streamIdleMs, () => {
      if (!started) fail(Object.assign(new Error(`no byte either way for ${f.streamIdleMs} ms before a response head (timeouts.streamIdle)`), { code: 'ETIMEDOUT' }));
      upstream.close(NGHTTP2_CANCEL);
    });

    if (!body) startHeadClock();
    else {
      upstream.once('finish', startHeadClock);
      body(upstream);
      upstream.once('wantTrailers', () => upstream.sendTrailers(h2ForwardFields(f.trailers() ?? {})));
    }

    upstream.once('response', (headers, flags) => {
      clearTimeout(headTimer);
      if (downstream.destroyed || downstream.closed) return void upstream.close(NGHTTP2_CANCEL);
      const status = Number(headers[':status']);
      if (f.retryAnswer) {
        const grpcStatus = headers['grpc-status'] === undefined ? undefined : Number(headers['grpc-status']);
        if (f.retryAnswer(status, grpcStatus)) {
          fail(Object.assign(new Error(`the destination answered ${status}${grpcStatus === undefined ? '' : ` (grpc-status ${grpcStatus})`}; retried`), { code: retriedAnswerCode, status }));
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
        const judge = f.trailersStatus !== undefined && headers['grpc-status'] === undefined && status < 500 ? f.trailersStatus : undefined;
        upstream.once('trailers', (t: IncomingHttpHeaders) => {
          trailers = t;
          exchange?.noteGrpcStatus(t);
          if (judge && typeof t['grpc-status'] === 'string') judge(Number(t['grpc-status']));
        });
        downstream.respond(head, { waitForTrailers: true });
        downstream.once('wantTrailers', () => downstream.sendTrailers(h2ForwardFields(trailers ?? {})));
        if (f.openEndedIdleMs !== undefined && openEndedAnswer(headers)) {
          // The same timeout listeners, a longer limit.
          upstream.setTimeout(f.openEndedIdleMs);
          downstream.setTimeout(f.openEndedIdleMs);
        }
        forwardBytes(upstream, downstream);
        if (exchange?.countsBytes) upstream.on('data', (chunk: Buffer) => { exchange.responseBytes += chunk.length; });
      }
      started = true;
      resolve(head[':status'] as number);
    });

    // `on`, not `once`: a stream can report a second error (a write after its reset), and one
    // without a listener would throw.
    upstream.on('error', (err: Error) => {
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
