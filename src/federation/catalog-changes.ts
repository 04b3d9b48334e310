import type { Catalog } from '../model/catalog.js';
import type { StoreMirror } from './mirror.js';

/**
 * How long a cluster's heartbeat may go unseen before its records leave a catalog: two lease
 * TTLs and a margin, so one late keepalive does not make a live cluster flap.
 */
export function staleAfterMs(leaseTtlSeconds: number): number {
  return (2 * leaseTtlSeconds + 5) * 1000;
}

/**
 * The catalog a mirror holds, rebuilt on every store change and every tick (heartbeats go stale
 * with time alone), but handed on only when it differs in more than the revision: the revision
 * moves with every heartbeat, and listeners (sidecars, the dashboard stream) should not wake for it.
 * Used by the federation service and by `isthmus dash`, so both see the same mesh.
 */
export class CatalogChanges {
  #json = '';

  /** The new catalog, or undefined when nothing but the revision changed. */
  next(mirror: StoreMirror, now: number, staleAfter: number): Catalog | undefined {
    const catalog = mirror.catalog(now, staleAfter);
    const json = JSON.stringify({ ...catalog, revision: 0 });
    if (json === this.#json) return undefined;
    this.#json = json;
    return catalog;
  }
}
