import type { HeaderBlock } from '../h2/hpack.js';
import type { H2Stream } from '../h2/stream.js';
import { defaultRetryBufferBytes } from './request-body.js';

/** What the relay of the current attempt hears of the caller's stream (h2-stream-relay.ts). */
export interface CallerLink {
  /** The caller reset its stream, or its connection went (`code` its RST_STREAM code), or it ended well (0). */
  callerClosed(code: number): void;
  /** The caller's side took what waited to be sent to it: the answer may flow again. */
  callerWritable(): void;
}

/**
 * The caller's side of an HTTP/2 stream a sidecar relays, on Isthmus's own HTTP/2: it holds the
 * stream's handler for as long as the stream lives, across attempts, and feeds the request body
 * into each attempt's upstream stream, as request-body.ts does for node:http2 and HTTP/1.1.
 *
 * The first `limit` bytes are kept (copied), so that an attempt that failed before its answer
 * can be repeated elsewhere with the same body; they are credited to the caller as they are
 * kept, since this side holds them either way. Past `limit` the kept bytes are dropped,
 * `replayable` turns false, and each byte is credited only once the attempt's stream took it:
 * a slow destination holds the caller back by HTTP/2 flow control, and memory stays flat for a
 * body of any size.
 */
export class CallerStream {
  private kept: Buffer[] | undefined = [];
  private keptBytes = 0;
  private up: H2Stream | undefined;
  private onEnded: (() => void) | undefined;
  private trailers: HeaderBlock | undefined;
  private relay: CallerLink | undefined;
  /** Bytes passed to the attempt's stream but not yet credited to the caller (that stream was full). */
  private owed = 0;
  /** The request has ended (END_STREAM, with its data or trailers). */
  ended: boolean;
  /** The caller's stream closed, with this code; undefined while it is open. */
  closedCode: number | undefined;
  /** Request body bytes received, for the access log. */
  requestBytes = 0;
  /** A byte arrived that could be neither kept nor passed on (no attempt, and past `limit`). */
  private lost = false;

  constructor(readonly stream: H2Stream, endedWithHead: boolean, private readonly limit = defaultRetryBufferBytes) {
    this.ended = endedWithHead;
    stream.attach({
      onHeaders: (_s, trailers) => this.onTrailers(trailers),
      onData: (_s, piece, end) => this.onData(piece, end),
      onWritable: () => this.relay?.callerWritable(),
      onClose: (_s, code) => {
        this.closedCode = code;
        this.relay?.callerClosed(code);
      },
    });
  }

  /** The request ended with its head: no body, no trailers. */
  get headOnly(): boolean {
    return this.ended && this.requestBytes === 0 && this.trailers === undefined;
  }

  /** True while every body byte handed to an attempt is still kept: another attempt can send it all again. */
  get replayable(): boolean {
    return this.kept !== undefined && !this.lost;
  }

  /** The relay of the attempt now running (undefined between attempts). */
  link(relay: CallerLink | undefined): void {
    this.relay = relay;
  }

  /**
   * Sends the body into `up`, the current attempt's stream: the kept bytes first, then what
   * arrives, ending `up` where the request ends (with its trailers, if it had any). `onEnded`
   * runs once the whole request has been handed to `up` (the answer's head is due from then).
   * The attempt before, if any, gets nothing more.
   */
  feed(up: H2Stream, onEnded: () => void): void {
    this.up = up;
    this.onEnded = onEnded;
    for (const piece of this.kept ?? []) up.write(piece);
    if (this.ended) this.endUp();
  }

  /** The current attempt is over: nothing more goes to its stream. */
  detach(): void {
    this.up = undefined;
    this.onEnded = undefined;
    this.upWritable();
  }

  /** The attempt's stream took what waited: credit the caller for it. */
  upWritable(): void {
    if (this.owed === 0) return;
    const owed = this.owed;
    this.owed = 0;
    this.stream.consumed(owed);
  }

  private onData(piece: Buffer, end: boolean): void {
    this.requestBytes += piece.length;
    let out = piece;
    if (this.kept && piece.length > 0) {
      this.keptBytes += piece.length;
      if (this.keptBytes <= this.limit) {
        out = Buffer.from(piece);
        this.kept.push(out);
        this.stream.consumed(piece.length);
      } else {
        // Past the limit: no attempt after this one can be sent the whole body.
        this.kept = undefined;
      }
    }
    const credited = out !== piece;
    if (end) this.ended = true;
    const up = this.up;
    if (!up || up.closed) {
      if (!credited && piece.length > 0) {
        // Neither kept nor passed on: this body cannot reach any attempt whole now.
        this.lost = true;
        this.stream.consumed(piece.length);
      }
      return;
    }
    if (piece.length > 0 || end) {
      const taken = up.write(out, end && this.trailers === undefined);
      if (!credited && piece.length > 0) {
        if (taken) this.stream.consumed(piece.length);
        else this.owed += piece.length;
      }
    }
    if (end) this.endedOnce();
  }

  private onTrailers(trailers: HeaderBlock): void {
    this.trailers = trailers;
    this.ended = true;
    if (this.up && !this.up.closed) this.endUp();
  }

  /** The request has ended and `up` takes it: its end (with trailers when they came). */
  private endUp(): void {
    const up = this.up!;
    if (this.trailers) up.end(this.trailers.fields, this.trailers.neverIndexed);
    else up.write(Buffer.alloc(0), true);
    this.endedOnce();
  }

  private endedOnce(): void {
    const onEnded = this.onEnded;
    this.onEnded = undefined;
    onEnded?.();
  }
}
