import { recordVersion } from '../core/keys.js';
import { compareText } from '../core/compare-text.js';

/** A certificate held by someone, as far as this federation knows: the root it chains to and when it expires. */
export interface HeldLeaf { root: string; notAfter: number }

/** The record `/trust/issued/<cluster>` (leased): per root, how many certificates still chain to it and until when. */
export interface IssuedRecord {
  version: number;
  cluster: string;
  roots: { root: string; leaves: number; until: string }[];
}

/**
 * Which roots the certificates of this cluster still chain to, so `isthmus ca remove-root` can
 * refuse to drop a root that something still presents. Two sources, both keyed by who holds the
 * certificate, so that a holder that moves on stops counting for its old root:
 * - leaves this federation signed, by serial; a renewal (the caller presented its certificate)
 *   retires the serial it replaces;
 * - certificates this cluster's gateways present when they report in (a gateway on a laptop
 *   makes its own from the CA directory), by gateway id; the newest replaces the one before.
 * A certificate counts until it expires. The ledger lives in memory: a federation restarted after
 * a rotation does not know the leaves it signed before (docs/trust.md says what to do then).
 */
export class IssuedLedger {
  private readonly held = new Map<string, HeldLeaf>();
  /** Moves whenever a holder is added or retired; expiry is seen by `record()`. */
  generation = 0;

  constructor(private readonly cluster: string) {}

  signed(serial: string, leaf: HeldLeaf, replaces?: string): void {
    if (replaces !== undefined) this.held.delete(`leaf:${replaces}`);
    this.held.set(`leaf:${serial}`, leaf);
    this.generation += 1;
  }

  presented(holder: string, leaf: HeldLeaf): void {
    const key = `holder:${holder}`;
    const known = this.held.get(key);
    if (known?.root === leaf.root && known.notAfter === leaf.notAfter) return;
    this.held.set(key, leaf);
    this.generation += 1;
  }

  /** Per root, the certificates still valid at `now` (expired ones are forgotten), roots in a stable order. */
  record(now: number): IssuedRecord {
    const byRoot = new Map<string, { leaves: number; until: number }>();
    for (const [key, leaf] of this.held) {
      if (leaf.notAfter <= now) {
        this.held.delete(key);
        continue;
      }
      const entry = byRoot.get(leaf.root) ?? { leaves: 0, until: 0 };
      byRoot.set(leaf.root, { leaves: entry.leaves + 1, until: Math.max(entry.until, leaf.notAfter) });
    }
    const roots = [...byRoot].sort(([a], [b]) => compareText(a, b)).map(([root, { leaves, until }]) => ({ root, leaves, until: new Date(until).toISOString() }));
    return { version: recordVersion, cluster: this.cluster, roots };
  }
}
