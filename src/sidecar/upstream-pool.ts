import type { Dispatcher } from 'undici';
import { IsthmusError } from '../core/errors.js';
import { breakerVerdict, connectionCap, type BreakerLimits } from '../model/circuit-breaker.js';
import { countedHandler } from './counted-handler.js';
import { channels } from '../core/channels.js';
import { wrapHandler, type Connector, type ConnectorOptions } from '../core/undici.js';
import { sharedReadConnector } from './shared-reads.js';
import { failHandler, H1Connection } from './h1-connection.js';
import { OwnDispatcher } from './own-dispatcher.js';

export interface UpstreamPoolOptions {
  /** Keep-alive connections at most. */
  connections: number;
  /**
   * Handshakes in flight at most. A burst on a cold pool otherwise opens every connection at once:
   * each costs milliseconds of CPU on both sidecars, they all finish together, and every request
   * waits for the slowest. Bounded, the first connections are up in one handshake's time, the
   * requests beyond them go to whichever connection frees first, and the later handshakes resume
   * the TLS session the first one got (no certificate signature or chain check).
   */
  maxConnecting: number;
  /** An idle connection is closed after this. */
  idleMs: number;
  /** What undici's connector gets (TLS options of the upstream, connect timeout, no delay), or a connector of one's own. */
  connect: ConnectorOptions | Connector;
}

interface Member {
  client: H1Connection;
  connecting: boolean;
  /** The client said it takes nothing more (its dispatch returned false) until it emits 'drain'. */
  busy: boolean;
  /** Left the pool (closed, failed to connect): takes no more requests. */
  removed: boolean;
}

interface Waiting {
  opts: Dispatcher.DispatchOptions;
  handler: Dispatcher.DispatchHandler;
  /** performance.now() when it began to wait. */
  since: number;
}

/**
 * With a connection up, a waiting request gets a new connection once it has waited as long as the
 * pool's last handshake took, but never later than this, however slow this upstream's handshakes.
 */
export const maxGrowDelayMs = 50;

/**
 * Keep-alive HTTP/1.1 connections to one upstream (a sidecar's inbound, or a gateway for one
 * SNI), like undici's Pool, with one difference that matters at start-up: at most `maxConnecting`
 * handshakes at a time, and a request that finds every connection busy waits in the pool's own
 * queue for the first one that frees (or the next that connects), not behind a handshake of its
 * own. The connector is built once per pool, so its TLS session cache serves every connection,
 * and it carries the mesh SNI (`connect.servername`). Each connection is an H1Connection
 * (h1-connection.ts: Node's own HTTP/1.1 parser, one request at a time).
 */
export class UpstreamPool extends OwnDispatcher {
  private readonly members: Member[] = [];
  private queue: Waiting[] = [];
  private head = 0;
  private connecting = 0;
  private closing: (() => void) | undefined;
  private closed = false;
  private readonly connector: Connector;
  /** A CircuitBreaker's limits (model/circuit-breaker.ts), and the requests it counts. */
  private limits: Readonly<BreakerLimits> | undefined;
  private outstanding = 0;
  /** How long the pool's last handshake took (ms); 0 before the first. */
  private handshakeMs = 0;
  /** When the pool last began a handshake (performance.now()). */
  private lastGrowAt = -Infinity;
  private growTimer: NodeJS.Timeout | undefined;

  constructor(private readonly origin: string, private readonly options: UpstreamPoolOptions) {
    super();
    this.connector = typeof options.connect === 'function' ? options.connect : sharedReadConnector(options.connect);
  }

  /** Requests waiting for a connection (not yet handed to one). */
  get queued(): number {
    return this.queue.length - this.head;
  }

  /** Connections open or opening. */
  get size(): number {
    return this.members.length;
  }

  /** WebSocket and CONNECT tunnels open to this upstream: they hold connections of maxConnections (upstreams.ts). */
  tunnels = 0;

  /** Connections carrying a request now (or opening for one). */
  get busy(): number {
    let n = 0;
    for (const m of this.members) if (m.busy || m.connecting) n += 1;
    return n;
  }

  /** Sets or clears the circuit breaker's limits; requests already admitted are not affected. */
  setLimits(limits: Readonly<BreakerLimits> | undefined): void {
    this.limits = limits;
  }

  override dispatch(opts: Dispatcher.DispatchOptions, given: Dispatcher.DispatchHandler): boolean {
    // undici's request API passes a handler of its older interface: adapted here, once, so that
    // everything below (the breaker's count, H1Connection) speaks only the newer one.
    let handler = wrapHandler.wrap(given);
    if (this.closed) {
      failHandler(handler, Object.assign(new Error('the upstream pool is closed'), { code: 'UND_ERR_CLOSED' }));
      return false;
    }
    if (this.limits) {
      const verdict = breakerVerdict({ inFlight: this.outstanding - this.queued, queued: this.queued, canSendNow: this.free() !== undefined || this.mayGrow() }, this.limits);
      if (verdict.open) {
        const what = verdict.limit === 'maxRequests' ? 'requests outstanding' : 'requests waiting for a connection';
        failHandler(handler, new IsthmusError('ISTHMUS_ERR_DATAPLANE_CIRCUIT_OPEN', `circuit breaker open at ${this.origin}: ${verdict.value} ${what} already (${verdict.limit} ${verdict.value} of ${this.limits.policy}); refused without sending`));
        return true;
      }
      if (this.limits.maxRequests !== undefined) {
        this.outstanding += 1;
        handler = countedHandler(handler, () => { this.outstanding -= 1; });
      }
    }
    const member = this.free();
    if (member) {
      this.send(member, opts, handler);
      return true;
    }
    // Every connection busy: the request waits for whichever is first, a connection that frees
    // (often within a millisecond) or one that opens for it (a handshake, milliseconds of CPU on
    // both sidecars and more on a process still cold), never bound to a handshake of its own.
    this.queue.push({ opts, handler, since: performance.now() });
    this.growForQueue();
    return true;
  }

  protected closeAll(): Promise<void> {
    this.closed = true;
    return (this.queued === 0 ? Promise.resolve() : new Promise<void>((resolve) => { this.closing = resolve; }))
      .then(() => Promise.all(this.members.map((m) => m.client.close()))).then(() => undefined);
  }

  protected destroyAll(err: Error | null): Promise<void> {
    this.closed = true;
    this.failQueued(err ?? Object.assign(new Error('the upstream pool was destroyed'), { code: 'UND_ERR_DESTROYED' }));
    return Promise.all(this.members.map((m) => m.client.destroy(err))).then(() => undefined);
  }

  private free(): Member | undefined {
    for (const m of this.members) if (!m.busy && !m.connecting) return m;
    return undefined;
  }

  private mayGrow(): boolean {
    return this.members.length < connectionCap(this.options.connections, this.limits, this.tunnels) && this.connecting < this.options.maxConnecting;
  }

  /** A new connection, if the pool may open one now. */
  private grow(): Member | undefined {
    if (!this.mayGrow()) return undefined;
    if (channels.upstreamConnect.hasSubscribers) channels.upstreamConnect.publish({ origin: this, phase: 'start' });
    const client = new H1Connection(this.origin, { connect: this.connector, idleMs: this.options.idleMs });
    const member: Member = { client, connecting: true, busy: false, removed: false };
    this.connecting += 1;
    const started = performance.now();
    this.lastGrowAt = started;
    client.on('connect', () => {
      if (channels.upstreamConnect.hasSubscribers) channels.upstreamConnect.publish({ origin: this, phase: 'end' });
      this.handshakeMs = performance.now() - started;
      member.connecting = false;
      this.connecting -= 1;
      this.drain(member);
      this.growForQueue();
    });
    client.on('connectionError', (_origin, _targets, err: Error) => {
      if (channels.upstreamConnect.hasSubscribers) channels.upstreamConnect.publish({ origin: this, phase: 'end', error: err.message });
      if (member.connecting) {
        member.connecting = false;
        this.connecting -= 1;
      }
      this.remove(member);
      // Nothing connected to hand the waiting requests to: they would each wait for a handshake
      // that will most likely fail the same way. Fail them now; the attempt layer retries elsewhere.
      if (!this.members.some((m) => !m.connecting)) this.failQueued(err);
      else {
        // Busy connections remain: the longest-waiting request fails with this error, as one
        // that waited for this handshake alone would, so that an upstream refusing new
        // connections cannot keep the pool reconnecting while its old ones stay busy.
        this.failNext(err);
        this.growForQueue();
      }
    });
    client.on('disconnect', () => {
      // A closed keep-alive connection (idle, or the server's choice) leaves the pool; a new one
      // opens through grow(), so every handshake is counted.
      if (member.connecting) return;
      this.remove(member);
      void client.close().catch(() => undefined);
      // Requests waiting for it would otherwise wait for nothing.
      this.growForQueue();
    });
    client.on('drain', () => {
      member.busy = false;
      this.drain(member);
    });
    this.members.push(member);
    return member;
  }

  private send(member: Member, opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): void {
    if (!member.client.dispatch(opts, handler)) member.busy = true;
  }

  /** Hands waiting requests to a connection that can take them. */
  private drain(member: Member): void {
    while (this.head < this.queue.length && !member.busy && !member.connecting && !member.removed) this.sendNext(member);
    this.compact();
  }

  /**
   * Opens connections for waiting requests that no handshake under way would serve. With no
   * connection up (a cold pool, or every connection gone), one per such request at once, up to
   * maxConnecting: nothing else can serve them. With connections up, only once the
   * longest-waiting request has waited as long as a handshake takes (the pool's last, at most
   * maxGrowDelayMs), and then one per that interval while requests still wait: a busy connection
   * usually frees sooner than a new one opens. When the processes on both ends are short of CPU
   * (a cold start), answers slow down, requests queue, and opening a connection for each of them
   * costs both sidecars a handshake apiece, which slows the answers further; paced, the pool
   * grows as far as its connections' turnover falls short of a handshake's time, and no further.
   */
  private growForQueue(): void {
    if (!this.members.some((m) => !m.connecting)) {
      while (this.queued > this.connecting && this.grow());
      return;
    }
    if (this.growTimer || this.queued <= this.connecting) return;
    const delay = Math.min(this.handshakeMs, maxGrowDelayMs);
    const head = this.queue[this.head] as Waiting;
    let due = Math.max(head.since, this.lastGrowAt) + delay - performance.now();
    if (due <= 0) {
      if (!this.grow()) return;
      if (this.queued <= this.connecting) return;
      due = delay;
    }
    this.growTimer = setTimeout(() => {
      this.growTimer = undefined;
      this.growForQueue();
    }, Math.max(1, Math.ceil(due)));
  }

  /** Hands the longest-waiting request to `member`. */
  private sendNext(member: Member): void {
    const next = this.takeNext();
    this.send(member, next.opts, next.handler);
  }

  /** The longest-waiting request fails with `err`, if one waits. */
  private failNext(err: Error): void {
    if (this.queued === 0) return;
    failHandler(this.takeNext().handler, err);
    this.compact();
  }

  /** Takes the longest-waiting request off the queue (the caller knows one waits). */
  private takeNext(): Waiting {
    const next = this.queue[this.head] as Waiting;
    this.queue[this.head] = undefined as unknown as Waiting;
    this.head += 1;
    return next;
  }

  private failQueued(err: Error): void {
    clearTimeout(this.growTimer);
    this.growTimer = undefined;
    const waiting = this.queue.slice(this.head);
    this.queue = [];
    this.head = 0;
    for (const w of waiting) failHandler(w.handler, err);
    this.closing?.();
  }

  private compact(): void {
    if (this.head === this.queue.length) {
      clearTimeout(this.growTimer);
      this.growTimer = undefined;
      this.queue = [];
      this.head = 0;
      this.closing?.();
    } else if (this.head > 1024) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
  }

  private remove(member: Member): void {
    member.removed = true;
    const i = this.members.indexOf(member);
    if (i !== -1) this.members.splice(i, 1);
  }
}
