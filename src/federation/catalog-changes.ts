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
 * The catalog a mirror holds, rebuilt when its inputs change (looked at on every store change and
 * every tick, since heartbeats go stale with time alone), and handed on only when it differs in
 * more than the revision: the revision
 * moves with every heartbeat, and listeners (sidecars, the dashboard stream) should not wake for it.
 * Used by the federation service and by `isthmus dash`, so both see the same mesh.
 */
export class CatalogChanges {
  #json = '';
  #inputs = '';

  /** The new catalog, or undefined when nothing but the revision changed. */
  next(mirror: StoreMirror, now: number, staleAfter: number): Catalog | undefined {
    // Heartbeats and telemetry records change etcd every second; most changes touch nothing the
    // catalog is built from, and then it is not rebuilt (with 1000 services a rebuild and its
    // JSON took 12–14 ms, and came about three times a second with two clusters' heartbeats and
    // the tick, in every federation).
    const inputs = mirror.catalogInputs(now, staleAfter);
    if (inputs === this.#inputs) return undefined;
    this.#inputs = inputs;
    const catalog = mirror.catalog(now, staleAfter);
    const json = JSON.stringify({ ...catalog, revision: 0 });
    if (json === this.#json) return undefined;
    this.#json = json;
    return catalog;
  }
}
