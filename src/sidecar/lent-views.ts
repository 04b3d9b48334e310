/**
 * Views of a read buffer lent to the code that relays them, for a body read past Node's parser
 * (a long one with a length, or a chunked one): an upload at the server side (h1-server.ts), a
 * download at the upstream side (h1-connection.ts). Such a body arrives as views of its connection's own read buffer,
 * which the connection's next read overwrites. Each view is handed on inside `lendView`; whoever
 * still references it once its callback returns (a socket write not taken whole, a stream's
 * buffer) says so with `keepsView`, and the connection then reads into a fresh buffer, leaving
 * the old one to the holder. Whoever keeps a view for longer on purpose (the retry buffer) copies
 * it (`isLentView`). A chunk buffered on the way and handed on later is no longer lent: its
 * buffer is already the holder's.
 */
import type { Socket } from 'node:net';

/** From this length on a body is read past the parser as views: it is longer than one read (64 KiB). */
const viewsFromBytes = 64 * 1024;

/**
 * The length of a body read past the parser as views, from its `content-length` field; 0 for one
 * the parser reads (no field, not a plain decimal, or no longer than one read, whose one copy
 * costs less than restarting the parser and a buffer of the socket's own). The caller checks
 * there is no transfer-encoding beside it (llhttp refuses that pair).
 */
export function viewsLength(contentLength: string | string[] | undefined): number {
  if (typeof contentLength !== 'string' || contentLength.length < 5 || !/^\d{1,15}$/.test(contentLength)) return 0;
  const length = Number(contentLength);
  return length > viewsFromBytes ? length : 0;
}

/**
 * Whether `socket` still references a chunk just written to it: one queued behind bytes it held
 * before the write (`queuedBefore`), or, over plain TCP, one the kernel did not take whole. TLS
 * encrypts what it is handed at once: a write still pending there holds only its ciphertext.
 */
export function socketHolds(socket: Socket, queuedBefore: boolean): boolean {
  return queuedBefore || (socket.writableLength > 0 && (socket as { encrypted?: boolean }).encrypted !== true);
}

let lent: Buffer | undefined;
let held = false;

/** Hands `view` to `deliver`; true when something still holds it afterwards (keepsView). */
export function lendView(view: Buffer, deliver: (view: Buffer) => void): boolean {
  lent = view;
  held = false;
  try {
    deliver(view);
  } finally {
    lent = undefined;
  }
  return held;
}

/** Whether `chunk` is the view being lent now: kept beyond the call, it must be copied. */
export function isLentView(chunk: Buffer): boolean {
  return chunk === lent;
}

/** `chunk`, if it is the view being lent now, is still referenced after the call that handed it over. */
export function keepsView(chunk: Buffer): void {
  if (chunk === lent) held = true;
}
