import type { Dispatcher } from 'undici';
import type { H1Response } from './h1-server.js';
import { forwardableTrailers } from './body-trailers.js';
import { fieldsObject, forwardableHeaders } from './headers.js';
import type { FieldsReader, ViewReader } from './h1-connection.js';
import { isLentView, keepsView } from './lent-views.js';
import { retriedAnswerCode } from './retry-policy.js';

type Controller = Dispatcher.DispatchController;

/**
 * An undici dispatch handler that writes the upstream's answer straight into the app's
 * response: head, body chunks with back-pressure (the upstream is paused while the app's socket
 * is full), trailers, end. No BodyReadable, no pipe and no promise per chunk.
 *
 * A long body with a length comes as views of the upstream connection's reads (h1-connection.ts
 * ViewReader): each is written out at once, and if the app's socket could not take it whole,
 * the connection reads into a fresh buffer after it.
 *
 * `started` settles once: with the status when the head has been written, or with the error
 * when the attempt failed before any byte of an answer (the caller may then retry). After the
 * head, a failure can only cut the app's response short.
 */
export class ResponseRelay implements Dispatcher.DispatchHandler, ViewReader, FieldsReader {
  readonly takesViews = true;
  readonly started: Promise<number>;
  private resolve!: (status: number) => void;
  private reject!: (err: Error) => void;
  private controller: Controller | undefined;
  private headWritten = false;
  /** The answer is being retried: its body is read to its end (the connection stays usable) and dropped. */
  private dropping = false;
  /**
   * Resumes the upstream once a write the app's socket could not take at once has been flushed.
   * A write callback, not the response's 'drain': on an https server whose request is paused
   * for back-pressure (a full-duplex echo), Node 20 was seen to reset the response's need-drain
   * state without emitting 'drain', and the relay then stalled for good.
   */
  private readonly flushed = () => {
    if (this.controller?.paused) this.controller.resume();
  };

  /**
   * `drop`: a response header the app must not see; `decorate`: adds headers of this sidecar's
   * own to the head just before it is written (the trace report).
   */
  constructor(
    private readonly res: H1Response, private readonly drop?: string, private readonly decorate?: (headers: Record<string, string | string[]>) => void,
    /** Asked before the head is written: true holds the answer back (it will be retried, attempts.ts). */
    private readonly retryAnswer?: (status: number, grpcStatus: number | undefined) => boolean,
  ) {
    this.started = new Promise<number>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  onRequestStart(controller: Controller): void {
    this.controller = controller;
    this.res.cutWatcher = this;
  }

  /** The app went away before its answer ended: stop reading (and stop the upstream sending) at once. */
  responseCut(): void {
    const controller = this.controller;
    if (controller && !this.res.writableFinished && !controller.aborted) controller.abort(new Error('the app closed its connection'));
  }

  onResponseStart(_controller: Controller, statusCode: number, headers: Record<string, string | string[] | undefined>, statusMessage?: string): void {
    if (statusCode < 200 || this.retried(statusCode)) return; // 1xx: informational, the final head follows
    const forwarded = forwardableHeaders(headers, this.drop);
    this.decorate?.(forwarded);
    this.res.writeHead(statusCode, statusMessage ?? '', forwarded);
    this.headWritten = true;
    this.resolve(statusCode);
  }

  /** The head of an HTTP/1.1 upstream's answer, as its parser gave it (h1-connection.ts FieldsReader). */
  onResponseFields(controller: Controller, statusCode: number, fields: readonly string[], statusMessage: string): void {
    // A traced answer gets fields of this sidecar's own: the object form adds them.
    if (this.decorate !== undefined) return this.onResponseStart(controller, statusCode, fieldsObject(fields), statusMessage);
    if (this.retried(statusCode)) return;
    this.res.writeFields(statusCode, statusMessage, fields, this.drop);
    this.headWritten = true;
    this.resolve(statusCode);
  }

  /** Whether the answer is held back to be retried: its body is then read to its end and dropped. */
  private retried(statusCode: number): boolean {
    if (!this.retryAnswer?.(statusCode, undefined)) return false;
    this.dropping = true;
    this.reject(Object.assign(new Error(`the destination answered ${statusCode}; retried`), { code: retriedAnswerCode, status: statusCode }));
    return true;
  }

  onResponseData(controller: Controller, chunk: Buffer): void {
    if (this.dropping) return;
    const ok = this.res.write(chunk, this.flushed);
    // A view of a read buffer goes out now, or the connection reads into a fresh one after it.
    if (isLentView(chunk) && this.res.flushHolds()) keepsView(chunk);
    if (!ok) controller.pause();
  }

  onResponseEnd(_controller: Controller, trailers: Record<string, string | string[] | undefined>): void {
    if (this.dropping) return;
    // Trailers reach an HTTP/1.1 app only on a chunked response (RFC 9112 §7.1.2), without the
    // fields a trailer may not carry (body-trailers.ts), as a request's are.
    const fields = forwardableTrailers(trailers);
    if (fields) this.res.addTrailers(fields);
    this.res.end();
  }

  onResponseError(_controller: Controller, err: Error): void {
    if (this.dropping) return;
    if (!this.headWritten) this.reject(err);
    else this.res.destroy(err);
  }
}
