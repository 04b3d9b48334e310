import type { HeaderBlock } from '../h2/hpack.js';
import type { H2Stream } from '../h2/stream.js';
import { defaultRetryBufferBytes } from './request-body.js';

/** Where an attempt's request body goes: its upstream HTTP/2 stream, or a body stream for an HTTP/1.1 app (inbound-h2.ts). */
export interface BodySink {
  /** False when it takes no more for now; the sink's owner calls CallerStream.upWritable when it does. */
  write(data: Buffer, end?: boolean): boolean;
  /** Ends the body, with trailers when given. */
  end(trailers?: readonly string[], neverIndexed?: readonly number[]): void;
  readonly closed: boolean;
}

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
  private up: BodySink | undefined;
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
  /** Bytes that arrived while no attempt ran, for the next one; `credited` when they are kept too. */
  private undelivered: { data: Buffer; credited: boolean }[] = [];

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
    return this.kept !== undefined;
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
  feed(up: BodySink, onEnded: () => void): void {
    this.up = up;
    this.onEnded = onEnded;
    if (this.kept) {
      // Every byte so far is kept (and credited): the whole body to this point, again.
      for (const piece of this.kept) up.write(piece);
    } else {
      // What no attempt had yet; bytes not credited are credited as the attempt takes them.
      for (const { data, credited } of this.undelivered) {
        const taken = up.write(data);
        if (!credited) {
          if (taken) this.stream.consumed(data.length);
          else this.owed += data.length;
        }
      }
    }
    this.undelivered = [];
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
    if (end) this.ended = true;
    const up = this.up && !this.up.closed ? this.up : undefined;
    let held: Buffer | undefined;
    let credited = false;
    if (this.kept && piece.length > 0) {
      if (this.keptBytes + piece.length <= this.limit) {
        held = Buffer.from(piece);
        this.kept.push(held);
        this.keptBytes += piece.length;
        this.stream.consumed(piece.length);
        credited = true;
      } else {
        // Past the limit: no attempt after this one can be sent the whole body. What no attempt
        // has had yet stays in `undelivered` below.
        this.kept = undefined;
      }
    }
    if (!up) {
      // No attempt runs now (the first is still connecting, or one failed): held for the next.
      // Bytes not kept are not credited, so flow control stops the caller while it waits.
      if (piece.length > 0) this.undelivered.push({ data: held ?? Buffer.from(piece), credited });
      return;
    }
    if (piece.length > 0 || end) {
      const taken = up.write(held ?? piece, end && this.trailers === undefined);
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
