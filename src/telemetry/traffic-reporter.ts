import { reportOpenMeters } from '../core/byte-meter.js';
import { channels, type AuthzDeniedMessage, type EjectionMessage, type FailoverMessage, type GrpcOutboundEndedMessage, type OutboundRequestMessage, type TcpOutboundBytesMessage, type TcpOutboundClosedMessage, type TcpOutboundMessage } from '../core/channels.js';
import { grpcServerError } from '../sidecar/grpc-status.js';
import { record } from '../model/latency-histogram.js';
import { backendName } from '../model/policy-summary.js';
import { authzDeniedEvent, ejectionEvent, failoverEvent, mergeRoutes, mergeSplits, mergeTcp, splitKey, tcpRowEmpty, type ReportedEvent, type RouteCounts, type SplitCounts, type TcpCounts, type TrafficReport } from '../model/traffic-report.js';

type SplitBackend = { namespace: string; service: string; subset?: { name: string } | undefined };

/** The policy step's split counts, cumulative since a policy snapshot (RoutingTable.forEachSplitCount). */
export type SplitCountSource = (fn: (routes: { namespace: string; service: string }, backend: SplitBackend, requests: number) => void) => void;

export interface TrafficReporterOptions {
  cluster: string;
  /** The objects whose channel messages are this sidecar's (several sidecars can share a process). */
  origins: readonly object[];
  /** Delivers one report; rejects when the federation did not take it (the counts go into the next). */
  send: (report: TrafficReport) => Promise<void>;
  /** This sidecar's admin address, told to the federation so `isthmus trace` can find it. */
  admin?: string;
  intervalMs?: number;
  /**
   * A report with nothing in it is sent only every this many intervals (default 2): it only
   * tells the federation the sidecar is still there, and the federation lists a sidecar for 30 s
   * after its last report, so one lost still leaves it listed. The first report always goes.
   */
  emptyEvery?: number;
  onError?: (err: Error) => void;
  /** How long TCP counts stay out of reports after a federation refused the field (default 10 min). */
  tcpRetryMs?: number;
  /** Where the splits' backend choices are counted; absent: no split counts are reported. */
  splitCounts?: SplitCountSource;
}

const maxPendingEvents = 100;
/** How long TCP counts stay out of reports after a federation refused them. */
const tcpRetryMs = 10 * 60_000;

/** The federation's 400 for a report field it does not know, that field being `tcp`. */
const refusedTcp = (err: unknown): boolean => /\b400\b/.test((err as Error).message) && (err as Error).message.includes('/tcp: Unexpected property');

/**
 * Counts this sidecar's outbound requests per destination service and cluster (requests,
 * errors, latency buckets), its connections through fixed TCP listeners (opened, failed, closed,
 * bytes each way), and the failovers and ejections it publishes, and sends them to its
 * federation every few seconds (while there is nothing to report, every other time). Deltas
 * only: a sidecar that restarts loses at most one interval, and a report the federation did not
 * take is merged into the next one, not dropped.
 */
export class TrafficReporter {
  private pending = new Map<string, RouteCounts>();
  private readonly keys = new Map<string, Map<string, string>>();
  private pendingSplits = new Map<string, SplitCounts>();
  private pendingTcp = new Map<string, TcpCounts>();
  /** The split counts already taken into a report, by the source's own objects (a new policy snapshot brings new ones). */
  private splitsSeen = new WeakMap<object, Map<object, number>>();
  private events: ReportedEvent[] = [];
  private timer: NodeJS.Timeout | undefined;
  private sending: Promise<void> | undefined;
  private readonly origins: Set<object>;
  /** Intervals since a report was last sent; the first report goes whatever it holds. */
  private unsent = Infinity;
  /**
   * Until when TCP counts are left out of reports: a federation older than the `tcp` field refused
   * one that had it (400, `/tcp: Unexpected property`). Its other counts go at once without it;
   * the TCP counts of that time are dropped, and `tcp` is tried again after tcpRetryMs.
   */
  private tcpRefusedUntil = 0;

  private readonly onRequest = (m: OutboundRequestMessage): void => {
    // A gRPC call is counted when it ends, with the status it ended with (onGrpcEnded).
    if (!this.origins.has(m.origin) || m.service === undefined || m.grpc) return;
    this.count(m.service, m.cluster, m.code === 'connect_error' || m.code >= 500, m.seconds);
  };

  /**
   * A gRPC call ended. It failed if its answer's head did (a 5xx or no endpoint: the sidecar's
   * own gRPC errors are accounted so), or if it ended with a server-error grpc-status
   * (grpc-status.ts: UNAVAILABLE, INTERNAL, DEADLINE_EXCEEDED…), which an app's gRPC errors
   * carry behind an HTTP 200. Its latency is still the time to the answer's head.
   */
  private readonly onGrpcEnded = (m: GrpcOutboundEndedMessage): void => {
    if (!this.origins.has(m.origin) || m.service === undefined) return;
    const failed = m.code === 'connect_error' || m.code >= 500 || (m.grpcStatus !== undefined && grpcServerError(m.grpcStatus));
    this.count(m.service, m.cluster, failed, m.seconds);
  };

  private count(service: string, cluster: string | undefined, failed: boolean, seconds: number): void {
    const to = cluster ?? '';
    const key = this.keyOf(service, to);
    let counts = this.pending.get(key);
    if (!counts) {
      const split = service.indexOf('/');
      counts = { namespace: service.slice(0, split), service: service.slice(split + 1), to, requests: 0, errors: 0, buckets: [] };
      this.pending.set(key, counts);
    }
    counts.requests += 1;
    if (failed) counts.errors += 1;
    record(counts.buckets, seconds * 1000);
  }

  /**
   * `<ns>/<name>\0<to>`, the same key routeKey() makes, without splitting the name per request;
   * one string per pair, made once, so that a request's lookup hashes no new string.
   */
  private keyOf(service: string, to: string): string {
    let byTo = this.keys.get(service);
    if (!byTo) {
      if (this.keys.size >= 10_000) this.keys.clear();
      this.keys.set(service, (byTo = new Map()));
    }
    let key = byTo.get(to);
    if (key === undefined) byTo.set(to, (key = `${service}\u0000${to}`));
    return key;
  }

  /** The row of a TCP service and destination cluster, made at its first message. */
  private tcpRow(service: string, cluster: string | undefined): TcpCounts {
    const to = cluster ?? '';
    const key = `${service}\u0000${to}`;
    let row = this.pendingTcp.get(key);
    if (!row) {
      const split = service.indexOf('/');
      row = { namespace: service.slice(0, split), service: service.slice(split + 1), to, connections: 0, failed: 0, closed: 0, sentBytes: 0, receivedBytes: 0 };
      this.pendingTcp.set(key, row);
    }
    return row;
  }

  private readonly onTcp = (m: TcpOutboundMessage): void => {
    if (!this.origins.has(m.origin)) return;
    const row = this.tcpRow(m.service, m.cluster);
    row.connections += 1;
    if (m.result !== 'connected') row.failed += 1;
  };

  private readonly onTcpBytes = (m: TcpOutboundBytesMessage): void => {
    if (!this.origins.has(m.origin)) return;
    const row = this.tcpRow(m.service, m.cluster);
    row.sentBytes += m.sentBytes;
    row.receivedBytes += m.receivedBytes;
  };

  private readonly onTcpClosed = (m: TcpOutboundClosedMessage): void => {
    if (this.origins.has(m.origin)) this.tcpRow(m.service, m.cluster).closed += 1;
  };

  private readonly onFailover = (m: FailoverMessage): void => {
    if (this.origins.has(m.origin)) this.addEvent(failoverEvent(m));
  };

  private readonly onEjection = (m: EjectionMessage): void => {
    if (this.origins.has(m.origin)) this.addEvent(ejectionEvent(m, this.opts.cluster));
  };

  private readonly onAuthzDenied = (m: AuthzDeniedMessage): void => {
    if (!this.origins.has(m.origin)) return;
    const event = authzDeniedEvent(m);
    // Folded here too: a caller refused in a loop must not push every other event out of the report.
    const same = this.events.find((e) => e.kind === event.kind && e.summary === event.summary);
    if (same) same.count = (same.count ?? 1) + 1;
    else this.addEvent(event);
  };

  constructor(private readonly opts: TrafficReporterOptions) {
    this.origins = new Set(opts.origins);
  }

  start(): void {
    channels.outboundRequest.subscribe(this.onRequest);
    channels.grpcOutboundEnded.subscribe(this.onGrpcEnded);
    channels.balancerFailover.subscribe(this.onFailover);
    channels.balancerEjection.subscribe(this.onEjection);
    channels.authzDenied.subscribe(this.onAuthzDenied);
    channels.tcpOutbound.subscribe(this.onTcp);
    channels.tcpOutboundBytes.subscribe(this.onTcpBytes);
    channels.tcpOutboundClosed.subscribe(this.onTcpClosed);
    this.timer = setInterval(() => void this.flush(), this.opts.intervalMs ?? 5000);
    this.timer.unref();
    // The first report at once, not an interval later: the federation lists a sidecar (for
    // `isthmus explain`, `isthmus trace` and the dashboard) from its first report on.
    void this.flush();
  }

  /** Sends what has been counted since the last accepted report; one send at a time. */
  flush(): Promise<void> {
    this.sending ??= this.sendPending().finally(() => { this.sending = undefined; });
    return this.sending;
  }

  /** Stops counting and makes one last attempt to deliver. */
  async stop(): Promise<void> {
    channels.outboundRequest.unsubscribe(this.onRequest);
    channels.grpcOutboundEnded.unsubscribe(this.onGrpcEnded);
    channels.balancerFailover.unsubscribe(this.onFailover);
    channels.balancerEjection.unsubscribe(this.onEjection);
    channels.authzDenied.unsubscribe(this.onAuthzDenied);
    channels.tcpOutbound.unsubscribe(this.onTcp);
    channels.tcpOutboundBytes.unsubscribe(this.onTcpBytes);
    channels.tcpOutboundClosed.unsubscribe(this.onTcpClosed);
    if (this.timer) clearInterval(this.timer);
    await this.sending;
    await this.flush();
  }

  private addEvent(event: ReportedEvent): void {
    this.events.push(event);
    if (this.events.length > maxPendingEvents) this.events.splice(0, this.events.length - maxPendingEvents);
  }

  /** What the splits chose since the last look: the source counts, less what was seen of them before. */
  private takeSplits(): void {
    this.opts.splitCounts?.((routes, backend, requests) => {
      let seen = this.splitsSeen.get(routes);
      if (!seen) this.splitsSeen.set(routes, (seen = new Map()));
      const delta = requests - (seen.get(backend) ?? 0);
      if (delta <= 0) return;
      seen.set(backend, requests);
      mergeSplits(this.pendingSplits, [{ namespace: routes.namespace, service: routes.service, backend: backendName(backend), requests: delta }]);
    });
  }

  private async sendPending(): Promise<void> {
    this.takeSplits();
    // Open connections' bytes so far join this report (each meter tells what moved since it last told anyone).
    reportOpenMeters();
    if (Date.now() < this.tcpRefusedUntil) this.pendingTcp.clear();
    for (const [key, row] of this.pendingTcp) if (tcpRowEmpty(row)) this.pendingTcp.delete(key);
    this.unsent += 1;
    const empty = this.pending.size === 0 && this.pendingSplits.size === 0 && this.pendingTcp.size === 0 && this.events.length === 0;
    if (empty && this.unsent < (this.opts.emptyEvery ?? 2)) return;
    this.unsent = 0;
    const routes = this.pending;
    const splits = this.pendingSplits;
    const tcp = this.pendingTcp;
    const events = this.events;
    this.pending = new Map();
    this.pendingSplits = new Map();
    this.pendingTcp = new Map();
    this.events = [];
    const report: TrafficReport = {
      version: 1, routes: [...routes.values()], ...(splits.size > 0 ? { splits: [...splits.values()] } : {}),
      ...(tcp.size > 0 ? { tcp: [...tcp.values()] } : {}), events,
      ...(this.opts.admin ? { admin: this.opts.admin } : {}),
    };
    try {
      try {
        await this.opts.send(report);
      } catch (err) {
        if (!report.tcp || !refusedTcp(err)) throw err;
        // An older federation: the rest goes now, the TCP counts are lost, and TCP waits a while.
        const waitMs = this.opts.tcpRetryMs ?? tcpRetryMs;
        this.tcpRefusedUntil = Date.now() + waitMs;
        tcp.clear();
        const { tcp: _left, ...withoutTcp } = report;
        this.opts.onError?.(new Error(`the federation does not take TCP connection counts yet (upgrade it to this sidecar's version); they are left out of reports for ${Math.round(waitMs / 60_000)} min: ${(err as Error).message}`));
        await this.opts.send(withoutTcp);
      }
    } catch (err) {
      // Not taken: what was counted meanwhile joins it, and the next interval tries again.
      this.pending = mergeRoutes(routes, this.pending.values());
      this.pendingSplits = mergeSplits(splits, this.pendingSplits.values());
      this.pendingTcp = mergeTcp(tcp, this.pendingTcp.values());
      this.events = [...events, ...this.events].slice(-maxPendingEvents);
      this.opts.onError?.(err as Error);
    }
  }
}
