import type { ServerHttp2Stream } from 'node:http2';
import { NGHTTP2_INTERNAL_ERROR } from './h2-codes.js';
import type { Dispatcher } from 'undici';
import { h2ExchangeOf, type H2Exchange } from './h2-exchange.js';
import { bodiless, h2ForwardFields, http1ResponseAsH2 } from './h2-headers.js';
import { openEndedAnswer } from './timeouts.js';

type Controller = Dispatcher.DispatchController;

/**
 * The counterpart of response-relay.ts for a caller that spoke HTTP/2 to an app that speaks
 * HTTP/1.1: an undici dispatch handler that writes the app's answer into the caller's HTTP/2
 * stream, translated (http1ResponseAsH2): head, body with back-pressure, trailers.
 *
 * `started` settles once: with the status when the head has been written, or with the error
 * when the attempt failed before any byte of an answer.
 */
export class H2ResponseRelay implements Dispatcher.DispatchHandler {
  readonly started: Promise<number>;
  private resolve!: (status: number) => void;
  private reject!: (err: Error) => void;
  private controller: Controller | undefined;
  private headWritten = false;
  private noBody = false;
  /** The answer's trailers are passed on (the app announced them). */
  private withTrailers = false;
  private trailers: Record<string, string | string[]> = {};
  /** The access log's counts of the caller's stream, when it keeps them. */
  private readonly exchange: H2Exchange | undefined;
  private readonly flushed = () => {
    if (this.controller?.paused) this.controller.resume();
  };

  constructor(
    private readonly stream: ServerHttp2Stream,
    private readonly method: string,
    private readonly decorate?: (headers: Record<string, string | string[] | number>) => void,
    /** The caller's stream may be silent this long once an open-ended answer's head is written (timeouts.ts openEndedAnswer); its timeout listener stays. */
    private readonly openEndedIdleMs?: number,
  ) {
    this.exchange = h2ExchangeOf(stream);
    this.started = new Promise<number>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  onRequestStart(controller: Controller): void {
    this.controller = controller;
    // The caller cancelled its stream: the app's request is aborted too.
    this.stream.once('close', () => {
      if (!this.stream.writableFinished && !controller.aborted) controller.abort(new Error('the caller closed its stream'));
    });
  }

  onResponseStart(_controller: Controller, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    if (statusCode < 200 || this.stream.destroyed) return;
    const head = http1ResponseAsH2(statusCode, headers);
    this.decorate?.(head);
    this.noBody = bodiless(this.method, statusCode);
    // Trailers are waited for only when the app announced some (its Trailer field, RFC 9110
    // §6.6.2): waiting costs every answer another round of callbacks and an END_STREAM of its
    // own, and a chunked answer that sends trailers unannounced is rare. Those are dropped.
    this.withTrailers = !this.noBody && headers.trailer !== undefined;
    if (this.noBody) this.stream.respond(head, { endStream: true });
    else if (!this.withTrailers) this.stream.respond(head);
    else {
      this.stream.respond(head, { waitForTrailers: true });
      this.stream.once('wantTrailers', () => this.stream.sendTrailers(this.trailers));
    }
    if (this.openEndedIdleMs !== undefined && !this.noBody && openEndedAnswer(headers)) this.stream.setTimeout(this.openEndedIdleMs);
    this.headWritten = true;
    this.resolve(statusCode);
  }

  onResponseData(controller: Controller, chunk: Buffer): void {
    if (this.noBody || this.stream.destroyed) return;
    if (this.exchange) this.exchange.responseBytes += chunk.length;
    if (!this.stream.write(chunk, this.flushed)) controller.pause();
  }

  onResponseEnd(_controller: Controller, trailers: Record<string, string | string[] | undefined>): void {
    if (this.noBody || this.stream.destroyed) return;
    if (this.withTrailers) this.trailers = h2ForwardFields(trailers);
    this.stream.end();
  }

  onResponseError(_controller: Controller, err: Error): void {
    if (!this.headWritten) this.reject(err);
    else if (!this.stream.closed) this.stream.close(NGHTTP2_INTERNAL_ERROR);
  }
}
