import type { ProbeRecord } from '../model/records.js';
import type { ReportedEvent } from '../model/traffic-report.js';

/**
 * Turns gateway probe rounds into events when a cluster stops being reachable through any of
 * its gateways, and when it is reachable again: the partition a failover follows, seen from
 * this federation. Pure state machine over the probe records; no I/O.
 */
export class Reachability {
  private readonly reachable = new Map<string, boolean>();
  /** Clusters we said were unreachable: only those make news when they answer again. */
  private readonly announced = new Set<string>();

  constructor(private readonly cluster: string) {}

  /**
   * Events for the pairs whose reachability changed in this round. A cluster still starting (its
   * first probes fail, then answer) is not news: "reachable" follows only an "unreachable".
   */
  round(records: readonly Pick<ProbeRecord, 'to' | 'gateways' | 'lastError'>[], now = new Date()): ReportedEvent[] {
    const events: ReportedEvent[] = [];
    const seen = new Set<string>();
    for (const r of records) {
      seen.add(r.to);
      // A gateway's `ok` is its latest probe: one answering gateway is enough to reach the cluster.
      const up = r.gateways.some((g) => g.ok);
      const was = this.reachable.get(r.to);
      this.reachable.set(r.to, up);
      if (was === true && !up) {
        this.announced.add(r.to);
        events.push({ at: now.toISOString(), kind: 'unreachable', summary: `${this.cluster} cannot reach ${r.to} through any of its ${r.gateways.length} gateway(s)${r.lastError ? `: ${r.lastError}` : ''}` });
      } else if (up && this.announced.delete(r.to)) {
        events.push({ at: now.toISOString(), kind: 'reachable', summary: `${this.cluster} reaches ${r.to}'s gateways again` });
      }
    }
    // A cluster that left the catalog is no longer probed; its state goes with it.
    for (const to of [...this.reachable.keys()]) {
      if (!seen.has(to)) {
        this.reachable.delete(to);
        this.announced.delete(to);
      }
    }
    return events;
  }
}
