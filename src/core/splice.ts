import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { OpenSockets } from './open-sockets.js';

export type SpliceEnd = 'closed' | 'idle' | 'error';

/** Bytes read from each side (and so handed to the other) while the two were spliced. */
export interface SplicedBytes { fromA: number; fromB: number }

/**
 * Bytes both ways between two sockets until both sides are done: back-pressure through pipe,
 * a half-close (one side's FIN) is passed on while the other direction keeps flowing, an error,
 * reset or abrupt close on either side tears down both, and no byte in either direction for
 * `idleMs` closes both (a WebSocket or TCP session left open by a vanished peer must not hold
 * sockets forever). `open`, when given, holds both sockets while they are spliced, so that a
 * stopping proxy can close its tunnels (an HTTP server's closeAllConnections does not see them).
 * `onEnd` is told once, when both are closed, how it ended and how many bytes each side sent.
 * Returns those byte counts, which move as the bytes do (core/byte-meter.ts reads them while
 * the connection is open).
 */
export function splice(a: Duplex, b: Duplex, idleMs: number, open?: OpenSockets, onEnd?: (how: SpliceEnd, bytes: SplicedBytes) => void, bReads?: OwnReads, aReads?: OwnReads): Readonly<SplicedBytes> {
  open?.track(a);
  open?.track(b);
  let done = false;
  const finish = (how: SpliceEnd) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    a.destroy();
    b.destroy();
    onEnd?.(how, bytes);
  };
  const timer = setTimeout(() => finish('idle'), idleMs);
  const bytes: SplicedBytes = { fromA: 0, fromB: 0 };
  // a, already open, switched to aReads: what it had read before goes first, then its reads are
  // written to b from the read callback. Not once a has read its end: that end is already in its
  // readable state, and the stream's own 'end' passes it on.
  const early = aReads ? (a.read() as Buffer | null) : null;
  const aOwn = aReads !== undefined && !readEnd(a) && aReads.adopt(a as Socket);
  if (early) {
    bytes.fromA += early.length;
    b.write(early);
  }
  // One direction: from a socket opened with (or adopted by) OwnReads, written on from its read
  // callback; otherwise through its 'data' events and pipe().
  const direction = (from: Duplex, to: Duplex, reads: OwnReads | undefined, count: (n: number) => void) => {
    if (reads) {
      reads.attach(to, (n) => {
        count(n);
        timer.refresh();
      });
      from.once('end', () => to.end());
    } else {
      from.on('data', (chunk: Buffer) => {
        count(chunk.length);
        timer.refresh();
      });
      from.pipe(to);
    }
  };
  direction(a, b, aOwn ? aReads : undefined, (n) => { bytes.fromA += n; });
  direction(b, a, bReads, (n) => { bytes.fromB += n; });
  a.on('error', () => finish('error'));
  b.on('error', () => finish('error'));
  // A side that closed after its clean end (FIN) leaves the other to finish its direction; one
  // that closed abruptly takes the other down with it.
  let closed = 0;
  const onClose = (side: Duplex) => () => {
    closed += 1;
    if (closed === 2) finish('closed');
    else if (!side.readableEnded) finish('error');
  };
  a.once('close', onClose(a));
  b.once('close', onClose(b));
  return bytes;
}

/** Whether `stream` has read its end (a FIN), whether or not 'end' was emitted yet. */
function readEnd(stream: Duplex): boolean {
  return (stream as unknown as { _readableState?: { ended?: boolean } })._readableState?.ended === true || stream.readableEnded;
}

/**
 * The symbols net.Socket keeps its `onread` option under (`kBuffer`, `kBufferCb`, `kBufferGen`,
 * set on every socket by its constructor, null when unused); undefined when a socket has not
 * exactly one of each, as a Node that changed them would not.
 */
function onreadKeys(socket: Socket): { buffer: symbol; callback: symbol; generator: symbol } | undefined {
  const symbols = Object.getOwnPropertySymbols(socket);
  const one = (name: string) => {
    const found = symbols.filter((s) => s.description === name);
    return found.length === 1 ? found[0] : undefined;
  };
  const [buffer, callback, generator] = [one('kBuffer'), one('kBufferCb'), one('kBufferGen')];
  return buffer && callback && generator ? { buffer, callback, generator } : undefined;
}

/**
 * Makes `socket`, opened without an `onread` option (an accepted connection: net.Server takes
 * none), read into `buffer` from its next read on: `callback` is called for each read, as a
 * method of the socket, with the byte count and the buffer, and `next` names the buffer of the
 * read after it. This sets the keys net.Socket keeps for its `onread` option and hands the buffer
 * to its handle, as net does for a socket made with one. False, and the socket reads as before,
 * when this Node has no such keys or the socket no handle that takes a buffer. What the socket
 * read before is left in its readable buffer. Once adopted, a socket reads this way for good
 * (its handle keeps the reader; a parser that consumes the handle reads in front of it).
 */
export function adoptReads(socket: Socket, buffer: Buffer, callback: (this: Socket, nread: number, buffer: Uint8Array) => boolean, next: () => Buffer): boolean {
  const keys = onreadKeys(socket);
  const handle = (socket as unknown as { _handle?: { useUserBuffer?: (buffer: Uint8Array) => void } })._handle;
  if (!keys || typeof handle?.useUserBuffer !== 'function') return false;
  const own = socket as unknown as Record<symbol, unknown>;
  own[keys.buffer] = buffer;
  own[keys.callback] = callback;
  own[keys.generator] = next;
  handle.useUserBuffer(buffer);
  return true;
}

/** Whether adoptReads can switch `socket` (this Node has the keys, its handle takes a buffer). */
export function readsAdoptable(socket: Socket): boolean {
  const handle = (socket as unknown as { _handle?: { useUserBuffer?: unknown } })._handle;
  return typeof handle?.useUserBuffer === 'function' && onreadKeys(socket) !== undefined;
}

/** What a socket opened with `OwnReads` reads at a time: a TLS record and then some, as HAProxy's default buffer. */
export const ownReadBytes = 16 * 1024;

/**
 * Reads for a socket whose bytes splice() passes on as they are (the gateway's connection to the
 * destination), given to net.connect as its `onread` option. By default Node gives each read a
 * fresh 64 KiB allocation, shrinks it and pushes it through the socket's Readable stream; with
 * this, every read lands in one buffer of this socket's own and is written to the other side
 * from the read callback. A write that the kernel takes at once leaves nothing behind, and the
 * buffer is read into again; one it does not take whole keeps a view of the buffer, and the next
 * read goes into a fresh one. The other side's back-pressure stops the socket's reads until it
 * drains. Costs one 16 KiB buffer per connection for its life.
 */
export class OwnReads {
  private buffer = Buffer.allocUnsafeSlow(ownReadBytes);
  private to: Duplex | undefined;
  private onBytes: (n: number) => void = () => undefined;
  readonly onread: { buffer: () => Buffer; callback: (this: Socket, nread: number, buffer: Uint8Array) => boolean };

  constructor() {
    const reads = this;
    this.onread = {
      buffer: () => reads.buffer,
      // Node calls it as a method of the socket that read.
      callback(this: Socket, nread: number, buffer: Uint8Array): boolean {
        return reads.deliver(this, nread, buffer as Buffer);
      },
    };
  }

  /**
   * Makes `socket`, opened without this buffer (an accepted connection), read into it from its
   * next read on (adoptReads). False when it cannot: the caller then reads it through its 'data'
   * events.
   */
  adopt(socket: Socket): boolean {
    return adoptReads(socket, this.buffer, this.onread.callback, this.onread.buffer);
  }

  /** From now on what the socket reads goes to `to`; `onBytes` hears of each read. */
  attach(to: Duplex, onBytes: (n: number) => void): void {
    this.to = to;
    this.onBytes = onBytes;
  }

  private deliver(from: Socket, nread: number, buffer: Buffer): boolean {
    const to = this.to;
    if (!to) {
      // splice() attaches on 'connect', before anything can be read: bytes here would be lost.
      from.destroy(new Error('bytes arrived before the connection was spliced'));
      return false;
    }
    this.onBytes(nread);
    const writable = to.write(buffer.subarray(0, nread));
    if (to.writableLength > 0) this.buffer = Buffer.allocUnsafeSlow(ownReadBytes);
    if (writable) return true;
    to.once('drain', () => from.resume());
    return false;
  }
}
