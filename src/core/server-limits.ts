import type { Server } from 'node:http';

/**
 * Limits for the servers people and tools reach (admin ports, the dashboard, the federation API),
 * so that a slow or greedy client costs a bounded amount: a client that trickles a request head
 * is cut off, and a host that opens connections without end is refused past a number no honest
 * one reaches. The data-plane listeners have their own timeouts (src/sidecar/timeouts.ts).
 */
export interface HttpServerLimits {
  maxConnections: number;
  /** The whole request head must arrive within this (Node measures it per request). */
  headersTimeoutMs: number;
  /** The whole request, body included, must arrive within this; responses (streams) are not limited. */
  requestTimeoutMs: number;
}

export const adminServerLimits: HttpServerLimits = Object.freeze({ maxConnections: 256, headersTimeoutMs: 10_000, requestTimeoutMs: 30_000 });

/** Call before listen(): Node starts its check for late requests when the server starts listening. */
export function limitHttpServer(server: Server, limits: HttpServerLimits = adminServerLimits): void {
  server.maxConnections = limits.maxConnections;
  server.headersTimeout = limits.headersTimeoutMs;
  server.requestTimeout = limits.requestTimeoutMs;
  // Node looks for late requests every connectionsCheckingInterval (30 s by default), which
  // would stretch a 10 s limit to 40 s.
  (server as Server & { connectionsCheckingInterval: number }).connectionsCheckingInterval = Math.min(30_000, Math.max(100, Math.floor(limits.headersTimeoutMs / 2)));
}

/**
 * Live streams (server-sent events) open at once: each holds a connection and a timer for as
 * long as the client stays, so one client may hold `perClient` and all together `total`.
 */
export class StreamSlots {
  private readonly byClient = new Map<string, number>();
  private open = 0;

  constructor(readonly perClient = 8, readonly total = 256) {}

  /** A release function for a granted slot (call it once, when the stream ends), or undefined when full. */
  take(client: string): (() => void) | undefined {
    const held = this.byClient.get(client) ?? 0;
    if (held >= this.perClient || this.open >= this.total) return undefined;
    this.byClient.set(client, held + 1);
    this.open += 1;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.open -= 1;
      const left = (this.byClient.get(client) ?? 1) - 1;
      if (left === 0) this.byClient.delete(client);
      else this.byClient.set(client, left);
    };
  }

  /** What a refused client is told, with the code ISTHMUS_ERR_API_TOO_MANY_STREAMS. */
  refusal(client: string): string {
    return (this.byClient.get(client) ?? 0) >= this.perClient
      ? `this client already holds ${this.perClient} live streams, the most one client may; close one (each dashboard tab holds one)`
      : `${this.total} live streams are open, the most this server holds; try again later`;
  }
}
