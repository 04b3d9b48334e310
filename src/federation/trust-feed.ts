import { EventEmitter } from 'node:events';
import type { TrustAnswer } from '../model/records.js';
import { sameRoots } from '../trust/root-set.js';

/** What the feed reads: every root of the mesh, and the fingerprint of the intermediate signing now. */
export type TrustState = Omit<TrustAnswer, 'version'>;

/** What this federation answers: always numbered. */
export type NumberedTrust = TrustState & { version: number };

/**
 * GET /v1/trust as a numbered snapshot, so sidecars and gateways long-poll it like the catalog
 * instead of asking every few seconds: a root added or removed (`isthmus ca add-root`,
 * `remove-root`, another trust domain joining) or a new intermediate reaches them within
 * moments. `refresh()` reads the state again (the federation calls it when the bundle records in
 * etcd or its intermediate change); only a change of content makes a new version, told as
 * `trust`. Versions start at 1 with each federation process, as the other snapshots' do.
 */
export class TrustFeed extends EventEmitter {
  private answer: NumberedTrust;

  constructor(private readonly read: () => TrustState) {
    super();
    this.answer = { version: 1, ...read() };
  }

  get current(): NumberedTrust {
    return this.answer;
  }

  refresh(): void {
    const next = this.read();
    if (sameTrust(next, this.answer)) return;
    this.answer = { version: this.answer.version + 1, ...next };
    this.emit('trust', this.answer);
  }
}

/** The same set of roots and the same issuer. */
export function sameTrust(a: TrustState, b: TrustState): boolean {
  return a.issuer === b.issuer && sameRoots(a.roots, b.roots);
}
