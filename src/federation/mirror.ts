import { keys, prefix } from '../core/keys.js';
import { buildCatalog, type Catalog } from '../model/catalog.js';
import { AliveRecordSchema, isRecord } from '../model/records.js';
import type { StoredRecord, StoreEvent } from './store.js';
import { compareText } from '../core/compare-text.js';

export interface ClusterSync {
  cluster: string;
  /** The newest etcd revision we have seen written by that cluster. */
  revision: number;
  /** When we received it (local clock, ms). */
  seenAt: number;
}

/**
 * Our copy of the federation store, fed by the prefix watch. Keeps just enough bookkeeping to
 * answer "how far behind is each cluster" (sync lag) and "is it still alive" without trusting
 * remote clocks. No I/O.
 */
export class StoreMirror {
  private readonly records = new Map<string, unknown>();
  private readonly heartbeatsSeenAt = new Map<string, number>();
  private readonly syncs = new Map<string, ClusterSync>();
  revision = 0;
  /**
   * Change counters of the key prefixes someone asked about (changesUnder). A record put with
   * another value, added or deleted counts; a heartbeat rewritten with only a new time does not
   * (each cluster rewrites its own every second; when it was seen is kept in heartbeatsSeenAt).
   */
  private readonly counters = new Map<string, number>();

  reset(records: StoredRecord[], revision: number, now: number): void {
    for (const [keyPrefix, count] of this.counters) this.counters.set(keyPrefix, count + 1);
    this.records.clear();
    for (const record of records) this.records.set(record.key, record.value);
    // Anything listed is live in etcd right now, whatever we saw before.
    this.heartbeatsSeenAt.clear();
    for (const record of records) this.noteWriter(record.key, record.modRevision, now);
    this.revision = revision;
  }

  apply(events: StoreEvent[], revision: number, now: number): void {
    for (const event of events) {
      if (event.type === 'put') {
        const before = this.records.get(event.record.key);
        this.records.set(event.record.key, event.record.value);
        if (isChange(event.record.key, before, event.record.value)) this.count(event.record.key);
        this.noteWriter(event.record.key, event.record.modRevision, now);
      } else {
        if (this.records.has(event.key)) this.count(event.key);
        this.records.delete(event.key);
        const cluster = aliveKeyCluster(event.key);
        if (cluster) this.heartbeatsSeenAt.delete(cluster);
      }
    }
    this.revision = Math.max(this.revision, revision);
  }

  /**
   * How many times a record under `keyPrefix` changed since the first time anyone asked: the same
   * number twice means nothing under it changed in between, so a caller that rebuilds something
   * from those records on every store change can skip the rebuild.
   */
  changesUnder(keyPrefix: string): number {
    const count = this.counters.get(keyPrefix);
    if (count !== undefined) return count;
    this.counters.set(keyPrefix, 0);
    return 0;
  }

  get(key: string): unknown {
    return this.records.get(key);
  }

  entries(keyPrefix: string): [string, unknown][] {
    return [...this.records].filter(([key]) => key.startsWith(keyPrefix));
  }

  catalog(now: number, staleAfterMs: number): Catalog {
    return buildCatalog({
      records: this.records,
      revision: this.revision,
      now: new Date(now),
      heartbeatsSeenAt: this.heartbeatsSeenAt,
      staleAfterMs,
    });
  }

  /**
   * Changes whenever catalog() could answer differently: the records it is built from, or which
   * clusters' heartbeats are recent enough at `now`. The same value means the same catalog, so a
   * caller rebuilding it on every change of etcd and every tick can skip the rebuild.
   */
  catalogInputs(now: number, staleAfterMs: number): string {
    const recent: string[] = [];
    for (const [cluster, seenAt] of this.heartbeatsSeenAt) if (now - seenAt <= staleAfterMs) recent.push(cluster);
    const changes = catalogPrefixes.map((keyPrefix) => this.changesUnder(keyPrefix)).join(',');
    return `${changes}|${recent.sort().join(',')}`;
  }

  /** Per cluster: the last revision and when we saw it. */
  clusterSyncs(): ClusterSync[] {
    return [...this.syncs.values()].sort((a, b) => compareText(a.cluster, b.cluster));
  }

  private count(key: string): void {
    for (const [keyPrefix, count] of this.counters) if (key.startsWith(keyPrefix)) this.counters.set(keyPrefix, count + 1);
  }

  private noteWriter(key: string, modRevision: number, now: number): void {
    const cluster = aliveKeyCluster(key);
    if (cluster) {
      this.heartbeatsSeenAt.set(cluster, now);
      const previous = this.syncs.get(cluster);
      if (!previous || previous.revision <= modRevision) this.syncs.set(cluster, { cluster, revision: modRevision, seenAt: now });
    }
  }
}

/** The records buildCatalog reads. */
const catalogPrefixes = [keys.clusters, keys.gateways, keys.exports];

/**
 * Whether a put from `before` (undefined: absent) to `after` counts as a change: any put does
 * but a heartbeat's rewrite, which counts only when it turns valid or invalid.
 */
function isChange(key: string, before: unknown, after: unknown): boolean {
  if (before !== undefined && aliveKeyCluster(key) !== undefined) return isRecord(AliveRecordSchema, before) !== isRecord(AliveRecordSchema, after);
  return true;
}

function aliveKeyCluster(key: string): string | undefined {
  if (!key.startsWith(keys.clusters) || !key.endsWith('/alive')) return undefined;
  const rest = key.slice(`${prefix}/clusters/`.length, -'/alive'.length);
  return rest.includes('/') || rest === '' ? undefined : rest;
}
