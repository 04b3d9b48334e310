import type { Server } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/** A socket, or what stands for some (the gateway's natively relayed pairs, core/native-relay.ts). */
export interface Closable {
  once(event: 'close', listener: () => void): unknown;
  destroy(): unknown;
}

/**
 * The sockets a proxy has open now (accepted, dialled, or spliced), so that stopping it closes
 * them at once: `server.close()` waits for every connection to end by itself, and a half-open
 * or spliced socket may never do so.
 */
export class OpenSockets {
  private readonly sockets = new Set<Closable>();

  /** Holds `socket` until it closes. */
  track(socket: Closable): void {
    if (this.sockets.has(socket)) return;
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
  }

  get size(): number {
    return this.sockets.size;
  }

  destroyAll(): void {
    for (const socket of this.sockets) socket.destroy();
  }

  /** Resolves once none is open, or after `ms` with how many still are. */
  async emptied(ms: number): Promise<number> {
    const deadline = performance.now() + ms;
    while (this.sockets.size > 0) {
      const left = deadline - performance.now();
      if (left <= 0) break;
      await sleep(Math.min(25, left));
    }
    return this.sockets.size;
  }
}

/**
 * Makes an HTTP server's `closeAllConnections()` also run `close`: sockets the server handed
 * away (upgrades, CONNECT tunnels, connections taken over by another protocol's server) are no
 * longer its own, and would otherwise outlive it.
 */
export function alsoOnCloseAll(server: Server & { closeAllConnections(): void }, close: () => void): void {
  const closeAll = server.closeAllConnections.bind(server);
  server.closeAllConnections = () => {
    closeAll();
    close();
  };
}
