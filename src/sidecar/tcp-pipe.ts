import type { Socket } from 'node:net';

/** Envoy's tcp_proxy default: an hour without a byte either way closes both sides. */
export const defaultTcpIdleTimeoutMs = 60 * 60 * 1000;

/**
 * Splices two connected sockets both ways until both directions are done. Both must be made
 * with `allowHalfOpen: true`: a FIN (or a TLS close_notify) from one side ends only the
 * matching direction (`pipe` calls `end()` on the other socket), and the reverse direction
 * keeps flowing until its own end, as a TCP proxy must (Envoy's tcp_proxy does the same).
 * `pipe` pauses the reader while the writer's buffer is full, so memory stays bounded
 * whatever the sizes. An error, or `idleMs` without a byte either way, tears down both.
 */
export function spliceSockets(a: Socket, b: Socket, idleMs: number): void {
  const destroyBoth = () => {
    a.destroy();
    b.destroy();
  };
  a.on('error', destroyBoth);
  b.on('error', destroyBoth);
  // A clean close of one side means both of its directions ended; the other socket then has
  // end() called already and closes by itself once its buffer is flushed. Anything else
  // (a reset, a destroy by the idle timer) cuts the other side at once.
  a.once('close', () => { if (!b.writableEnded) b.destroy(); });
  b.once('close', () => { if (!a.writableEnded) a.destroy(); });
  a.setTimeout(idleMs, destroyBoth);
  b.setTimeout(idleMs, destroyBoth);
  a.pipe(b);
  b.pipe(a);
}
