import { randomUUID } from 'node:crypto';
import { keys, recordVersion } from '../core/keys.js';
import type { EventsRecord, MeshEvent, TrafficRecord } from '../model/records.js';
import { mergeRoutes, mergeSplits, mergeTcp, routeKey, splitKey, tcpRowEmpty, type ReportedEvent, type RouteCounts, type SplitCounts, type TcpCounts, type TrafficReport } from '../model/traffic-report.js';
import { compareText } from '../core/compare-text.js';

/** A sidecar that reported in, as `/api/sidecars` lists it. */
export interface ReportingSidecar {
  identity: string;
  namespace: string | undefined;
  service: string | undefined;
  admin: string | undefined;
  lastReportAt: string;
}

const maxEvents = 50;
/** The same event from many sidecars within this long is one line with a count. */
const sameEventMs = 15_000;
const sidecarTtlMs = 30_000;
/** Rows of `/traffic/<cluster>` at most (services × destination clusters); far above any real mesh's. */
export const maxRoutes = 5000;

/**
 * The federation's side of the sidecars' reports: this cluster's request and TCP connection
 * counters since the federation started (one `epoch`), its recent events, and which sidecars report. Produces the
 * leased `/traffic/<cluster>` and `/events/<cluster>` records. No I/O: the federation publishes
 * what records() returns.
 */
export class TrafficLedger {
  readonly epoch = randomUUID();
  private readonly routes = new Map<string, RouteCounts>();
  /** Requests per split and backend (the policy step's choices), capped as routes are. */
  private readonly splits = new Map<string, SplitCounts>();
  /** Connections through fixed TCP listeners per service and destination cluster, capped as routes are. */
  private readonly tcp = new Map<string, TcpCounts>();
  private events: MeshEvent[] = [];
  private readonly sidecars = new Map<string, ReportingSidecar & { at: number }>();
  private seq = 0;
  /** Report rows refused because the record was full (see maxRoutes). */
  droppedRoutes = 0;
  /** Moves whenever records() would return something new. */
  generation = 0;

  constructor(private readonly cluster: string) {}

  accept(report: TrafficReport, caller: { identity: string; namespace?: string | undefined; serviceAccount?: string | undefined }, now = Date.now()): void {
    if (report.routes.length > 0) {
      // Sidecars name only services their catalog knows, so rows follow services × clusters; the
      // cap keeps a misbehaving workload from growing the record without bound.
      mergeRoutes(this.routes, this.withinCap(report.routes, this.routes, routeKey, (r) => r.requests === 0));
      this.generation += 1;
    }
    if (report.splits && report.splits.length > 0) {
      mergeSplits(this.splits, this.withinCap(report.splits, this.splits, splitKey, (s) => s.requests === 0));
      this.generation += 1;
    }
    if (report.tcp && report.tcp.length > 0) {
      mergeTcp(this.tcp, this.withinCap(report.tcp, this.tcp, routeKey, tcpRowEmpty));
      this.generation += 1;
    }
    for (const event of report.events) this.addEvent(event, now);
    const key = report.admin ?? caller.identity;
    this.sidecars.set(key, {
      identity: caller.identity, namespace: caller.namespace, service: caller.serviceAccount,
      admin: report.admin, lastReportAt: new Date(now).toISOString(), at: now,
    });
  }

  /** The rows of a report worth adding: not empty, and either known already or within maxRoutes new rows. */
  private withinCap<T>(rows: readonly T[], held: ReadonlyMap<string, unknown>, keyOf: (row: T) => string, empty: (row: T) => boolean): T[] {
    let room = maxRoutes - held.size;
    return rows.filter((row) => {
      if (empty(row)) return false;
      if (held.has(keyOf(row))) return true;
      if (room <= 0) {
        this.droppedRoutes += 1;
        return false;
      }
      room -= 1;
      return true;
    });
  }

  /** Adds an event; one equal to a recent one (same kind, service and summary) only counts up. */
  addEvent(event: ReportedEvent, now = Date.now()): void {
    const at = Date.parse(event.at);
    const same = this.events.find((e) => e.kind === event.kind && e.service === event.service && e.summary === event.summary
      && Math.abs(Date.parse(e.at) - (Number.isNaN(at) ? now : at)) < sameEventMs);
    if (same) {
      same.count = (same.count ?? 1) + (event.count ?? 1);
    } else {
      this.seq += 1;
      this.events.push({ ...event, id: `${this.epoch.slice(0, 8)}-${this.seq}`, at: Number.isNaN(at) ? new Date(now).toISOString() : event.at });
      this.events.sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
      if (this.events.length > maxEvents) this.events.splice(0, this.events.length - maxEvents);
    }
    this.generation += 1;
  }

  /** Sidecars that reported in the last 30 s, most recent first. */
  reportingSidecars(now = Date.now()): ReportingSidecar[] {
    for (const [key, s] of this.sidecars) if (now - s.at > sidecarTtlMs) this.sidecars.delete(key);
    return [...this.sidecars.values()].sort((a, b) => b.at - a.at).map(({ at: _at, ...rest }) => rest);
  }

  /** The leased records for this cluster: counters once anything was counted, events once any happened. */
  records(now = Date.now()): Map<string, TrafficRecord | EventsRecord> {
    const out = new Map<string, TrafficRecord | EventsRecord>();
    if (this.routes.size > 0 || this.splits.size > 0 || this.tcp.size > 0) {
      out.set(keys.trafficOf(this.cluster), {
        version: recordVersion,
        from: this.cluster,
        epoch: this.epoch,
        updatedAt: new Date(now).toISOString(),
        routes: [...this.routes.values()]
          .map((r) => ({ ...r, buckets: [...r.buckets] }))
          .sort((a, b) => compareText(`${a.namespace}/${a.service}/${a.to}`, `${b.namespace}/${b.service}/${b.to}`)),
        ...(this.splits.size > 0 ? { splits: [...this.splits.values()].map((s) => ({ ...s })).sort((a, b) => compareText(splitKey(a), splitKey(b))) } : {}),
        ...(this.tcp.size > 0 ? { tcp: [...this.tcp.values()].map((r) => ({ ...r })).sort((a, b) => compareText(routeKey(a), routeKey(b))) } : {}),
      });
    }
    if (this.events.length > 0) {
      out.set(keys.eventsOf(this.cluster), { version: recordVersion, cluster: this.cluster, events: this.events.map((e) => ({ ...e })) });
    }
    return out;
  }
}
