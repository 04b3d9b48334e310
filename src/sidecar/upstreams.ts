import type { SecureContext } from 'node:tls';
import { Pool } from 'undici';
import { checkDestination } from './peer-identity.js';

export interface UpstreamKey {
  /** host:port of a local sidecar's inbound listener or of a remote gateway. */
  address: string;
  /** Names the service to a gateway; for direct connections, the same name of our own cluster. */
  sni: string;
  /** SPIFFE IDs the catalog allows to serve the service. */
  identities: readonly string[];
  /** address|sni|identities, computed with the route, so a request only looks a pool up. */
  id: string;
}

/**
 * Keep-alive mTLS connection pools, one per (address, SNI). A new handshake costs ~3 ms of CPU
 * in Node (PERF-NOTES.md), so it must never happen per request. Pools are rebuilt when the
 * workload certificate or the trust bundle changes; old pools finish their requests first.
 */
export class Upstreams {
  private readonly pools = new Map<string, Pool>();

  constructor(private contextOf: () => SecureContext, private readonly connections = 32) {}

  /** The credentials new connections use now (renewals apply at once); `isthmus trace` dials with them too. */
  secureContext(): SecureContext {
    return this.contextOf();
  }

  get(key: UpstreamKey): Pool {
    const { id } = key;
    let pool = this.pools.get(id);
    if (!pool) {
      const split = key.address.lastIndexOf(':');
      pool = new Pool(`https://${key.address}`, {
        connections: this.connections,
        keepAliveTimeout: 30_000,
        connect: {
          host: key.address.slice(0, split),
          port: Number(key.address.slice(split + 1)),
          servername: key.sni,
          secureContext: this.contextOf(),
          checkServerIdentity: checkDestination(key.identities),
          noDelay: true,
          timeout: 2_000,
        },
      });
      this.pools.set(id, pool);
    }
    return pool;
  }

  /** New credentials: new pools for new connections; in-flight requests complete on the old ones. */
  rotate(secureContext: () => SecureContext): void {
    this.contextOf = secureContext;
    const old = [...this.pools.values()];
    this.pools.clear();
    for (const pool of old) void pool.close().catch(() => undefined);
  }

  async close(): Promise<void> {
    await Promise.all([...this.pools.values()].map((p) => p.destroy()));
    this.pools.clear();
  }
}
