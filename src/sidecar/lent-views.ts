/**
 * Views of a read buffer lent to the code that relays them, for a long body with a length read
 * past Node's parser: an upload at the server side (h1-server.ts), a download at the upstream
 * side (h1-connection.ts). Such a body arrives as views of its connection's own read buffer,
 * which the connection's next read overwrites. Each view is handed on inside `lendView`; whoever
 * still references it once its callback returns (a socket write not taken whole, a stream's
 * buffer) says so with `keepsView`, and the connection then reads into a fresh buffer, leaving
 * the old one to the holder. Whoever keeps a view for longer on purpose (the retry buffer) copies
 * it (`isLentView`). A chunk buffered on the way and handed on later is no longer lent: its
 * buffer is already the holder's.
 */
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
