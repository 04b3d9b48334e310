import type { LeaseSession } from './store.js';

/**
 * Keeps this cluster's leased records in etcd equal to the desired set, writing only the
 * difference. `sync` is idempotent: after a failure the next call simply tries again, and a
 * re-granted lease (which re-puts what the session remembers) needs no special case here.
 */
export class Publisher {
  private readonly written = new Map<string, string>();

  constructor(private readonly session: () => LeaseSession) {}

  async sync(desired: ReadonlyMap<string, object>): Promise<{ puts: number; deletes: number }> {
    let puts = 0;
    let deletes = 0;
    for (const [key, value] of desired) {
      const json = JSON.stringify(value);
      if (this.written.get(key) === json) continue;
      await this.session().put(key, value);
      this.written.set(key, json);
      puts += 1;
    }
    for (const key of [...this.written.keys()]) {
      if (desired.has(key)) continue;
      await this.session().delete(key);
      this.written.delete(key);
      deletes += 1;
    }
    return { puts, deletes };
  }

  /**
   * Forgets records whose copy in etcd (as our watch last saw it) differs from what we wrote,
   * so the next sync repairs them: someone deleted or overwrote a record we still want.
   */
  reconcile(current: (key: string) => unknown): void {
    for (const [key, json] of [...this.written]) {
      const value = current(key);
      if (value === undefined || JSON.stringify(value) !== json) this.written.delete(key);
    }
  }
}
