import { Readable, type Writable } from 'node:stream';
import { passTrailers } from './body-trailers.js';
import { isLentView, keepsView } from './lent-views.js';

/** Envoy keeps up to its per-request buffer limit (1 MiB by default) so that a retry can resend a body; so do we. */
export const defaultRetryBufferBytes = 1024 * 1024;

/**
 * An app's request body (an HTTP/1.1 request or an HTTP/2 stream), streamed to the upstream with back-pressure and never held whole.
 * Each attempt reads it through `open()` (a stream of its own, for undici) or has it written into
 * its upstream stream by `feed()` (HTTP/2, with no stream in between); the first `limit` bytes are also kept, so that an
 * attempt that failed before the upstream answered can be repeated elsewhere with the same body.
 * Once more than `limit` bytes have gone out, the kept bytes are dropped (memory stays flat for
 * a 1 GiB upload) and `replayable` turns false: such a request is never retried. The source's
 * trailers, if it ends with any, go on every attempt's stream before its end (body-trailers.ts).
 */
export class RequestBody {
  private kept: Buffer[] | undefined = [];
  private keptBytes = 0;
  private current: Readable | undefined;
  /** The attempt `feed()` writes into, and what cancels it if the body fails. */
  private sink: Writable | undefined;
  private cancelSink: (() => void) | undefined;
  private readonly resumeSource = () => this.source.resume();
  private ended = false;
  private failed: Error | undefined;

  constructor(private readonly source: Readable, private readonly limit = defaultRetryBufferBytes) {
    source.on('data', (chunk: Buffer) => this.onData(chunk));
    source.once('end', () => {
      this.ended = true;
      // The attempt's stream ends with the source's trailers (body-trailers.ts), for its writer.
      const current = this.current;
      if (current) {
        passTrailers(source, current);
        current.push(null);
      }
      if (this.sink?.writable) {
        passTrailers(source, this.sink);
        this.sink.end();
      }
    });
    // The app went away mid-body: the attempt reading it fails too, and is never retried.
    source.once('aborted', () => this.fail(new Error('the app closed its request before the body ended')));
    source.once('error', (err) => this.fail(err));
    source.pause();
  }

  /** True while every byte handed to an attempt is still kept (always, until `limit` is passed). */
  get replayable(): boolean {
    return this.kept !== undefined && this.failed === undefined;
  }

  /** A stream of the whole body for one attempt: the kept bytes first, then the rest as it arrives. */
  open(): Readable {
    this.detach();
    const stream = new Readable({
      // Readable asks for more to fill its buffer even while its reader has paused it: the app's
      // side is resumed only for a reader that reads.
      read: () => {
        if (!this.ended && !stream.isPaused()) this.source.resume();
      },
      destroy: (err, callback) => {
        if (this.current === stream) {
          this.current = undefined;
          this.source.pause();
        }
        // An attempt still waiting for a connection has no reader yet: the error must not be
        // thrown for want of a listener; that attempt finds the stream destroyed when it starts.
        process.nextTick(() => callback(stream.listenerCount('error') > 0 ? err : null));
      },
    });
    // A read asked for while paused waits for this: Readable asks no more until something is pushed.
    stream.on('resume', () => {
      if (this.current === stream && !this.ended) this.source.resume();
    });
    this.current = stream;
    for (const chunk of this.kept ?? []) stream.push(chunk);
    if (this.failed) stream.destroy(this.failed);
    else if (this.ended) {
      // A retry after the body ended: its trailers are the source's still.
      passTrailers(this.source, stream);
      stream.push(null);
    }
    return stream;
  }

  /**
   * Writes the whole body into `sink` for one attempt, the kept bytes first, then the rest as it
   * arrives, with back-pressure, and ends it; `cancel` runs instead if the body fails. The
   * attempt before, if any, gets nothing more.
   */
  feed(sink: Writable, cancel: () => void): void {
    this.detach();
    this.sink = sink;
    this.cancelSink = cancel;
    // At most `limit` bytes, in memory already.
    for (const chunk of this.kept ?? []) sink.write(chunk);
    if (this.failed) return cancel();
    if (this.ended) {
      passTrailers(this.source, sink);
      return void sink.end();
    }
    this.source.resume();
  }

  /** The attempt reading now, if any, gets nothing more. */
  private detach(): void {
    this.current?.destroy();
    if (this.sink) {
      this.sink.removeListener('drain', this.resumeSource);
      this.sink = undefined;
      this.cancelSink = undefined;
      this.source.pause();
    }
  }

  private onData(chunk: Buffer): void {
    if (this.kept) {
      this.keptBytes += chunk.length;
      // A view lent by the app's connection (lent-views.ts) is overwritten by its next read: kept as a copy.
      if (this.keptBytes <= this.limit) this.kept.push(isLentView(chunk) ? Buffer.from(chunk) : chunk);
      else this.kept = undefined;
    }
    if (this.sink) {
      // A sink that takes no more (its attempt failed): the chunk is kept, if it can be, for the next.
      if (!this.sink.writable) return void this.source.pause();
      const ok = this.sink.write(chunk);
      if (this.sink.writableLength > 0) keepsView(chunk);
      if (!ok) {
        this.source.pause();
        this.sink.once('drain', this.resumeSource);
      }
      return;
    }
    if (!this.current) {
      // Nobody reads now (between attempts): hold this chunk only if it is kept anyway.
      this.source.pause();
      if (!this.kept) this.fail(new Error('the request body could not be kept for another attempt'));
      return;
    }
    const ok = this.current.push(chunk);
    // Not read at once (the attempt's reader is paused): the stream holds it.
    if (this.current.readableLength > 0) keepsView(chunk);
    // The attempt's reader paused (its socket is full): the app's side waits with it, rather than
    // fill this stream's buffer first.
    if (!ok || this.current.isPaused()) this.source.pause();
  }

  private fail(err: Error): void {
    if (this.failed) return;
    this.failed = err;
    this.current?.destroy(err);
    this.cancelSink?.();
  }
}
