import type { IncomingHttpHeaders } from 'node:http2';
import { exchangeBytesCounted, type ExchangeEnd, type RequestFacts } from '../core/channels.js';
import { h2Error } from '../h2/frames.js';
import type { H2Stream } from '../h2/stream.js';

/**
 * What is known of one HTTP/2 stream a sidecar answers (outbound from the app, inbound from
 * another sidecar) when it ends: a gRPC call's grpc-status, noted by whatever passes the answer's
 * trailers on or makes the answer (the relays, the sidecar's own error answers), and, while an
 * access log reads them, the body bytes each way. The access log reads them when the stream
 * closes (telemetry/access-log.ts), as it does an HTTP/1.1 answer's; a gRPC call's end is
 * published for the metrics whether or not a log runs.
 */
/** What H2Exchange reads of the caller's stream (src/h2/stream.ts). */
export type ExchangeStream = Pick<H2Stream, 'closed' | 'closeCode' | 'whenClosed'>;

export class H2Exchange implements ExchangeEnd {
  requestBytes = 0;
  responseBytes = 0;
  /** A gRPC answer's status, from its trailers (or its trailers-only head). */
  grpcStatus: number | undefined;

  /** `countsBytes`: an access log reads the byte counts (else they stay 0, and nothing counts them). */
  constructor(private readonly stream: ExchangeStream, readonly countsBytes: boolean) {}

  get bodyBytes(): number {
    return this.responseBytes;
  }

  get closed(): boolean {
    return this.stream.closed;
  }

  /** Closed without an error code: the whole answer went out (a reset stream, by either side, did not). */
  get writableFinished(): boolean {
    return this.stream.closed && this.stream.closeCode === h2Error.noError;
  }

  /** Keeps the `grpc-status` value of an answer's trailers (or trailers-only head), if it is a valid one. */
  noteGrpcStatus(value: string | undefined): void {
    if (value !== undefined && /^\d{1,2}$/.test(value)) this.grpcStatus = Number(value);
  }

  /** The access log's wait for the end (ExchangeEnd). */
  once(_event: 'close', listener: () => void): void {
    this.stream.whenClosed(listener);
  }
}

/**
 * Starts following `stream`: its bytes, if an access log reads them, and a gRPC call's status.
 * Neither (no log, not gRPC): nothing is followed, and `exchange` is undefined. `facts` is what
 * the access log reads of the request, its answer included; the request's body bytes are
 * counted by whoever reads them (h2-caller.ts), and set on the exchange when the stream closes.
 */
export function trackH2Exchange(stream: ExchangeStream, method: string, headers: IncomingHttpHeaders, grpc: boolean): { facts: RequestFacts; exchange: H2Exchange | undefined } {
  const counted = exchangeBytesCounted();
  if (!counted && !grpc) return { facts: { method, headers }, exchange: undefined };
  const exchange = new H2Exchange(stream, counted);
  if (!counted) return { facts: { method, headers }, exchange };
  return { facts: { method, headers, get bodyBytes() { return exchange.requestBytes; }, response: exchange }, exchange };
}

