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
 */
export function splice(a: Duplex, b: Duplex, idleMs: number, open?: OpenSockets, onEnd?: (how: SpliceEnd, bytes: SplicedBytes) => void, bReads?: OwnReads): void {
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
  a.on('data', (chunk: Buffer) => {
    bytes.fromA += chunk.length;
    timer.refresh();
  });
  if (bReads) {
    // b was opened with bReads' onread: its reads are written to a from the read callback.
    bReads.attach(a, (n) => {
      bytes.fromB += n;
      timer.refresh();
    });
    b.once('end', () => a.end());
  } else {
    b.on('data', (chunk: Buffer) => {
      bytes.fromB += chunk.length;
      timer.refresh();
    });
  }
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
  a.pipe(b);
  if (!bReads) b.pipe(a);
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
