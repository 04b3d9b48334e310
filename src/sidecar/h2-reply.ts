import type { ServerHttp2Stream } from 'node:http2';
import { NGHTTP2_INTERNAL_ERROR } from './h2-codes.js';
import { errorCodes, type ErrorCode } from '../core/errors.js';
import { encodeGrpcMessage, grpcStatusOf } from './grpc-status.js';
import { countRequestBody, h2ExchangeOf } from './h2-exchange.js';

/**
 * The sidecar's own answer on an HTTP/2 stream: the same JSON error and `x-isthmus-error` as on
 * HTTP/1.1, or, for a gRPC request, a trailers-only response (status 200, one HEADERS frame with
 * END_STREAM) whose grpc-status follows gRPC's HTTP mapping (503 → 14 UNAVAILABLE) and whose
 * grpc-message is the same message: gRPC clients show those, and drop the body of anything else.
 */
export function replyH2(stream: ServerHttp2Stream, code: ErrorCode, message: string, grpc: boolean, override?: { status: number; grpcStatus: number; headers?: Record<string, string> }): void {
  if (stream.destroyed || stream.closed) return;
  if (stream.headersSent) return void stream.close(NGHTTP2_INTERNAL_ERROR);
  // A policy's own answer (a fault's status or gRPC code, a rate limit's retry-after) overrides the code's.
  const status = override?.status ?? errorCodes[code].status;
  const exchange = h2ExchangeOf(stream);
  // Whatever body is still arriving is not wanted; reading it lets the stream close cleanly. The
  // access log counts it, as it does a body that was forwarded (once: a relay may count it already).
  countRequestBody(stream, exchange);
  stream.resume();
  if (grpc) {
    const grpcStatus = override?.grpcStatus ?? grpcStatusOf(status);
    if (exchange) exchange.grpcStatus = grpcStatus;
    stream.respond({
      ...override?.headers, ':status': 200, 'content-type': 'application/grpc', 'grpc-status': String(grpcStatus),
      'grpc-message': encodeGrpcMessage(message), 'x-isthmus-error': code,
    }, { endStream: true });
    return;
  }
  const body = JSON.stringify({ error: { code, message } });
  if (exchange) exchange.responseBytes += Buffer.byteLength(body);
  stream.respond({ ...override?.headers, ':status': status, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-isthmus-error': code });
  stream.end(body);
}
