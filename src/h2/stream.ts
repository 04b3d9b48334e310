import type { HeaderBlock } from './hpack.js';

/**
 * What uses a stream: the relay that passes it on, a test's echo. Told of everything the peer
 * sends on the stream, in order. A piece of DATA is a view of the connection's read, valid
 * during the call: pass it on or copy it, then call `stream.consumed(n)` once its bytes have
 * left (written onward), which is what reopens the peer's flow-control window. Nothing is
 * delivered after onClose.
 */
export interface StreamHandler {
  /** A header block: the response head (client), informational heads (1xx, `informational`), or trailers (`trailers`, always with the end). */
  onHeaders(stream: H2Stream, head: HeaderBlock, endStream: boolean, kind: 'head' | 'informational' | 'trailers'): void;
  onData(stream: H2Stream, piece: Buffer, endStream: boolean): void;
  /** The stream can take writes again (its send window opened, or the connection's socket drained). */
  onWritable?(stream: H2Stream): void;
  /**
   * The stream is over: both sides ended it (`code` 0), or it was reset by the peer, by this
   * side, or with its connection (`code` the RST_STREAM or GOAWAY code). `unprocessed`: the
   * peer provably did nothing with it (RST_STREAM REFUSED_STREAM, or beyond a GOAWAY's last
   * stream, RFC 9113 §8.7), so it may be sent again elsewhere.
   */
  onClose(stream: H2Stream, code: number, unprocessed: boolean): void;
}

/** RFC 9113 §5.1, less the push states (push is never enabled here). */
export type StreamState = 'idle' | 'open' | 'half-closed-local' | 'half-closed-remote' | 'closed';

/** What a stream asks of its connection; connection.ts implements it. */
export interface StreamOwner {
  sendHeaders(stream: H2Stream, fields: readonly string[], endStream: boolean, neverIndexed?: readonly number[]): void;
  /** Sends what the windows allow of `data` now; returns how many octets were sent. */
  sendData(stream: H2Stream, data: Buffer, endStream: boolean): number;
  sendReset(stream: H2Stream, code: number): void;
  /** `n` octets of received DATA left this side: credit the peer's windows. */
  credit(stream: H2Stream, n: number): void;
  /** Whether the connection's socket is taking writes. */
  readonly writable: boolean;
}

/**
 * One HTTP/2 stream. Writes go out as the flow-control windows allow; what they do not allow
 * waits here, in order, and `write` says false until it has gone (then onWritable).
 */
export class H2Stream {
  state: StreamState = 'idle';
  private handler: StreamHandler | undefined;
  /**
   * What the peer sent before a handler was attached (a server's stream while its route is
   * still being decided): kept in order, data copied, and replayed on attach. Bounded by the
   * stream's receive window, since nothing of it is credited until the handler consumes it.
   */
  private early: (() => void)[] | undefined;
  /** What this side may still send (the peer's window for it), and what the peer may still send us. */
  sendWindow: number;
  receiveWindow: number;
  /** Octets received and handed on since the last WINDOW_UPDATE for this stream. */
  unacknowledged = 0;
  /** Octets handed to the handler and not yet consumed: credited to the connection if the stream closes first. */
  held = 0;
  /** Writes waiting for window: data, and whether the stream ends after it. */
  private readonly waiting: { data: Buffer; endStream: boolean }[] = [];
  private waitingTrailers: { fields: readonly string[]; neverIndexed?: readonly number[] } | undefined;
  /** The head this side sent or received; for a server, the request's. */
  headSent = false;
  headReceived = false;
  /** DATA octets received, against a content-length the head gave (RFC 9113 §8.1.1), or -1. */
  receivedBytes = 0;
  expectedBytes = -1;
  /** The RST_STREAM or GOAWAY code the stream closed with, once closed. */
  closeCode = -1;
  /** A write returned false and the handler waits for onWritable. */
  needsWritable = false;

  constructor(readonly id: number, private readonly owner: StreamOwner, sendWindow: number, receiveWindow: number) {
    this.sendWindow = sendWindow;
    this.receiveWindow = receiveWindow;
  }

  /** Gives the stream its handler, which first hears what came before it. */
  attach(handler: StreamHandler): void {
    this.handler = handler;
    const early = this.early;
    this.early = undefined;
    if (early) for (const replay of early) replay();
  }

  get attached(): boolean {
    return this.handler !== undefined;
  }

  /** For the connection: hands an event to the handler, or keeps it until one is attached. */
  emitHeaders(block: HeaderBlock, endStream: boolean, kind: 'head' | 'informational' | 'trailers'): void {
    if (this.handler) this.handler.onHeaders(this, block, endStream, kind);
    else (this.early ??= []).push(() => this.handler!.onHeaders(this, block, endStream, kind));
  }

  emitData(piece: Buffer, endStream: boolean): void {
    if (this.handler) this.handler.onData(this, piece, endStream);
    else {
      const kept = Buffer.from(piece);
      (this.early ??= []).push(() => this.handler!.onData(this, kept, endStream));
    }
  }

  emitClose(code: number, unprocessed: boolean): void {
    if (this.handler) this.handler.onClose(this, code, unprocessed);
    else (this.early ??= []).push(() => this.handler!.onClose(this, code, unprocessed));
    const watchers = this.closeWatchers;
    this.closeWatchers = undefined;
    if (watchers) for (const watcher of watchers) watcher();
  }

  private closeWatchers: (() => void)[] | undefined;

  /** Runs `listener` once the stream has closed (after its handler heard it), or now if it has. */
  whenClosed(listener: () => void): void {
    if (this.state === 'closed') listener();
    else (this.closeWatchers ??= []).push(listener);
  }

  get closed(): boolean {
    return this.state === 'closed';
  }

  /** Whether this side may still send on the stream. */
  get localOpen(): boolean {
    return this.state === 'open' || this.state === 'half-closed-remote';
  }

  /** Sends a head (a response's, or informational), or, after DATA, trailers (always ending the stream). */
  sendHeaders(fields: readonly string[], endStream: boolean, neverIndexed?: readonly number[]): void {
    if (!this.localOpen && this.state !== 'idle') return;
    // Trailers of a client stream whose head still waits for a slot, or after data still waiting
    // for window: they follow what is before them.
    if (this.state === 'idle' || (this.headSent && this.waiting.length > 0)) {
      this.waitingTrailers = { fields, neverIndexed };
      return;
    }
    this.owner.sendHeaders(this, fields, endStream, neverIndexed);
  }

  /**
   * Sends data, ending the stream after it when `endStream`. False when some of it must wait
   * for the peer's window or the socket: stop writing until onWritable.
   */
  write(data: Buffer, endStream = false): boolean {
    if (this.state === 'idle') {
      // A client stream whose head waits for a slot: the data follows the head.
      this.waiting.push({ data: Buffer.from(data), endStream });
      this.needsWritable = true;
      return false;
    }
    if (!this.localOpen) return false;
    if (this.waiting.length > 0) {
      this.waiting.push({ data: Buffer.from(data), endStream });
      this.needsWritable = true;
      return false;
    }
    const sent = this.owner.sendData(this, data, endStream);
    if (sent < data.length) {
      // The rest waits: copied, since `data` may be a view of a read that will be reused.
      this.waiting.push({ data: Buffer.from(data.subarray(sent)), endStream });
      this.needsWritable = true;
      return false;
    }
    if (!this.owner.writable) {
      this.needsWritable = true;
      return false;
    }
    return true;
  }

  /** Ends the stream: with trailers when given, else with an empty DATA frame. */
  end(trailers?: readonly string[], neverIndexed?: readonly number[]): void {
    // Already ending: trailers wait behind data still waiting for window.
    if (this.waitingTrailers) return;
    if (trailers && trailers.length > 0) this.sendHeaders(trailers, true, neverIndexed);
    else this.write(Buffer.alloc(0), true);
  }

  /** Resets the stream (RST_STREAM with `code`); the handler hears onClose. */
  reset(code: number): void {
    if (this.state === 'closed') return;
    this.owner.sendReset(this, code);
  }

  /** `n` octets of DATA delivered by onData have been passed on: the peer may send that much more. */
  consumed(n: number): void {
    if (n <= 0 || this.state === 'closed') return;
    this.held -= n;
    this.owner.credit(this, n);
  }

  /** The send window grew or the socket drained: sends what waited, then tells the handler. */
  flush(): void {
    while (this.waiting.length > 0 && this.localOpen) {
      const next = this.waiting[0]!;
      const sent = this.owner.sendData(this, next.data, next.endStream);
      if (sent < next.data.length) {
        next.data = next.data.subarray(sent);
        return;
      }
      this.waiting.shift();
    }
    if (this.waitingTrailers && this.localOpen) {
      const { fields, neverIndexed } = this.waitingTrailers;
      this.waitingTrailers = undefined;
      this.owner.sendHeaders(this, fields, true, neverIndexed);
    }
    if (this.needsWritable && this.waiting.length === 0 && this.owner.writable) {
      this.needsWritable = false;
      this.handler?.onWritable?.(this);
    }
  }

  /** Octets written to the stream and still waiting for the peer's window (held in this process). */
  get waitingBytes(): number {
    let n = 0;
    for (const w of this.waiting) n += w.data.length;
    return n;
  }

  /** Whether writes wait for window. */
  get blocked(): boolean {
    return this.waiting.length > 0;
  }

  /** Drops what waited to be sent (the stream was reset). */
  discard(): void {
    this.waiting.length = 0;
    this.waitingTrailers = undefined;
  }
}
