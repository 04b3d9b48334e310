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
export function splice(a: Duplex, b: Duplex, idleMs: number, open?: OpenSockets, onEnd?: (how: SpliceEnd, bytes: SplicedBytes) => void): void {
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
  b.on('data', (chunk: Buffer) => {
    bytes.fromB += chunk.length;
    timer.refresh();
  });
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
  b.pipe(a);
}
