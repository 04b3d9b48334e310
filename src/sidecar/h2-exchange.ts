import type { IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import { exchangeBytesCounted, type ExchangeEnd, type RequestFacts } from '../core/channels.js';
import { NGHTTP2_NO_ERROR } from './h2-codes.js';

/**
 * The body bytes of one HTTP/2 stream a sidecar answers (outbound from the app, inbound from
 * another sidecar), counted by whatever writes its answer or reads its body: the relays and the
 * sidecar's own error answers. The access log reads them when the stream closes
 * (telemetry/access-log.ts), as it does an HTTP/1.1 answer's.
 */
export class H2Exchange implements ExchangeEnd {
  requestBytes = 0;
  responseBytes = 0;
  /** A gRPC answer's status, from its trailers (or its trailers-only head). */
  grpcStatus: number | undefined;

  constructor(private readonly stream: ServerHttp2Stream) {}

  get bodyBytes(): number {
    return this.responseBytes;
  }

  get closed(): boolean {
    return this.stream.closed;
  }

  /** Closed without an error code: the whole answer went out (a reset stream, by either side, did not). */
  get writableFinished(): boolean {
    return this.stream.closed && this.stream.rstCode === NGHTTP2_NO_ERROR;
  }

  /** Keeps the `grpc-status` of an answer's trailers (or trailers-only head), if it has a valid one. */
  noteGrpcStatus(fields: IncomingHttpHeaders): void {
    const value = fields['grpc-status'];
    if (typeof value === 'string' && /^\d{1,2}$/.test(value)) this.grpcStatus = Number(value);
  }

  once(event: 'close', listener: () => void): unknown {
    return this.stream.once(event, listener);
  }
}

const exchanges = new WeakMap<ServerHttp2Stream, H2Exchange>();

/**
 * Starts counting `stream`'s bytes, if an access log reads them (none does: nothing is counted,
 * and `exchange` is undefined). `facts` is what the access log reads of the request, its answer
 * included; the request's body bytes are counted by whoever reads them (`countRequestBody`).
 */
export function trackH2Exchange(stream: ServerHttp2Stream, method: string, headers: IncomingHttpHeaders): { facts: RequestFacts; exchange: H2Exchange | undefined } {
  if (!exchangeBytesCounted()) return { facts: { method, headers }, exchange: undefined };
  const exchange = new H2Exchange(stream);
  exchanges.set(stream, exchange);
  return { facts: { method, headers, get bodyBytes() { return exchange.requestBytes; }, response: exchange }, exchange };
}

/**
 * Counts the request body as it is read. Call it once the body has its reader (piped, or a
 * RequestBody made): a 'data' listener added before would start the stream flowing with nobody
 * to take the bytes.
 */
export function countRequestBody(stream: ServerHttp2Stream, exchange: H2Exchange | undefined): void {
  if (exchange) stream.on('data', (chunk: Buffer) => { exchange.requestBytes += chunk.length; });
}

/** The counts of a stream `trackH2Exchange` was given (undefined for any other). */
export function h2ExchangeOf(stream: ServerHttp2Stream): H2Exchange | undefined {
  return exchanges.get(stream);
}
