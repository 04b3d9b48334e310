/**
 * The fault toolkit of the reliability scenarios (docs/reliability.md): a userspace link proxy
 * that can slow, stall, cut or black-hole a TCP link, process faults (pause, kill) that always
 * end within a bound, and the one-line figure each scenario prints.
 *
 * The link works at the TCP level, because `tc netem` needs privileges and a network namespace
 * per link that tests do not have. TCP never loses a byte from the application's point of view:
 * a lost segment is a retransmission, that is a stall of the stream. So "loss" here is a stall
 * of a chunk (and of everything behind it on that connection) for `stallMs`, with probability
 * `stallPercent`; it is not packet loss, and nothing below TCP (checksums, reordering) is tested.
 */
import { readFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { freePort } from './ports.js';

export interface LinkConditions {
  /** Added one way to every chunk, in both directions. */
  latencyMs?: number;
  /** Up to this much more, uniformly, per chunk; order on a connection is kept. */
  jitterMs?: number;
  /** Share of chunks (0–100) held for `stallMs`, as a retransmission would hold them. */
  stallPercent?: number;
  /** How long a stalled chunk waits (default 1000 ms, a little above Linux's first RTO). */
  stallMs?: number;
}

export type LinkState = 'open' | 'cut' | 'black-hole';

/**
 * A TCP proxy standing for a network link: `address` forwards to `target`. Conditions apply to
 * what flows; `cut()` resets every connection and refuses new ones (a partition the peers see at
 * once), `blackHole()` keeps connections open and accepts new ones but delivers nothing (a
 * partition the peers see only through their own timeouts); `heal()` opens it again.
 */
export class LinkProxy {
  private server: Server | undefined;
  private readonly connections = new Set<Socket>();
  private conditions: LinkConditions = {};
  private linkState: LinkState = 'open';
  private readonly timers = new Set<NodeJS.Timeout>();

  private constructor(readonly host: string, readonly port: number, readonly target: { host: string; port: number }) {}

  /** Listens on `host` (a free port) and forwards to `target` ("host:port"). */
  static async start(target: string, opts: { host?: string; port?: number; conditions?: LinkConditions } = {}): Promise<LinkProxy> {
    const split = target.lastIndexOf(':');
    const host = opts.host ?? '127.0.0.1';
    const link = new LinkProxy(host, opts.port ?? await freePort(host), { host: target.slice(0, split), port: Number(target.slice(split + 1)) });
    link.conditions = opts.conditions ?? {};
    await link.listen();
    return link;
  }

  get address(): string {
    return `${this.host}:${this.port}`;
  }

  get state(): LinkState {
    return this.linkState;
  }

  /** New conditions for every chunk from now on (chunks already queued keep their time). */
  set(conditions: LinkConditions): void {
    this.conditions = conditions;
  }

  async cut(): Promise<void> {
    this.linkState = 'cut';
    const server = this.server;
    this.server = undefined;
    const closed = new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    for (const socket of this.connections) socket.destroy();
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    await closed;
  }

  async blackHole(): Promise<void> {
    if (!this.server) await this.listen();
    this.linkState = 'black-hole';
  }

  async heal(): Promise<void> {
    if (!this.server) await this.listen();
    this.linkState = 'open';
  }

  async close(): Promise<void> {
    await this.cut();
  }

  private listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      const server = createServer((downstream) => this.accept(downstream));
      server.once('error', reject);
      server.listen(this.port, this.host, () => {
        this.server = server;
        resolve();
      });
    });
  }

  private accept(downstream: Socket): void {
    this.track(downstream);
    // A connection opened into a black hole never reaches the target, even after heal: as a SYN
    // that was lost, the client's own timeout ends it.
    if (this.linkState === 'black-hole') return;
    const upstream = connect(this.target.port, this.target.host);
    this.track(upstream);
    downstream.on('error', () => upstream.destroy());
    upstream.on('error', () => downstream.destroy());
    downstream.on('close', () => upstream.destroy());
    upstream.on('close', () => downstream.destroy());
    this.forward(downstream, upstream);
    this.forward(upstream, downstream);
  }

  private track(socket: Socket): void {
    this.connections.add(socket);
    socket.on('close', () => this.connections.delete(socket));
    socket.on('error', () => undefined);
  }

  /** Chunks from `from` reach `to` after the link's delay, in order; in a black hole, never. */
  private forward(from: Socket, to: Socket): void {
    let lastDelivery = 0;
    from.on('data', (chunk: Buffer) => {
      if (this.linkState === 'black-hole') return;
      const { latencyMs = 0, jitterMs = 0, stallPercent = 0, stallMs = 1000 } = this.conditions;
      const delay = latencyMs + Math.random() * jitterMs + (Math.random() * 100 < stallPercent ? stallMs : 0);
      if (delay === 0 && lastDelivery <= Date.now()) {
        to.write(chunk);
        return;
      }
      lastDelivery = Math.max(lastDelivery, Date.now() + delay);
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        if (this.linkState !== 'black-hole' && !to.destroyed) to.write(chunk);
      }, lastDelivery - Date.now());
      this.timers.add(timer);
    });
    from.on('end', () => {
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        to.end();
      }, Math.max(0, lastDelivery - Date.now()));
      this.timers.add(timer);
    });
  }
}

const paused = new Set<number>();
// A test that fails while a process is stopped must not leave it stopped for ever.
process.once('exit', () => {
  for (const pid of paused) {
    try { process.kill(pid, 'SIGCONT'); } catch { /* gone */ }
  }
});

/**
 * SIGSTOP to `pid`: the process keeps its sockets but answers nothing, as a machine that hangs.
 * It is resumed by `resume()`, and in any case after `maxMs`.
 */
export function pauseProcess(pid: number, maxMs = 120_000): { resume(): void } {
  process.kill(pid, 'SIGSTOP');
  paused.add(pid);
  const resume = () => {
    clearTimeout(timer);
    if (!paused.delete(pid)) return;
    try { process.kill(pid, 'SIGCONT'); } catch { /* it died meanwhile */ }
  };
  const timer = setTimeout(resume, maxMs);
  timer.unref();
  return { resume };
}

/** SIGKILL to `pid`, then waits until it is gone (at most `timeoutMs`; throws after). */
export async function killProcess(pid: number, timeoutMs = 10_000): Promise<void> {
  try { process.kill(pid, 'SIGKILL'); } catch { return; }
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isRunning(pid)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`process ${pid} still runs ${timeoutMs} ms after SIGKILL`);
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie (killed, not yet reaped by its parent) answers signal 0 but runs nothing.
  try {
    return !/^\S+ \([^)]*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/**
 * Runs `down`, waits `ms`, runs `up`, and always `up` even when the wait is cut short by a
 * failure: the outage is bounded whatever happens in between.
 */
export async function outage<T>(ms: number, down: () => Promise<void> | void, up: () => Promise<void> | void, during?: () => Promise<T>): Promise<T | undefined> {
  await down();
  try {
    const [value] = await Promise.all([during?.(), new Promise((r) => setTimeout(r, ms))]);
    return value as T | undefined;
  } finally {
    await up();
  }
}

export interface TrafficResult { at: number; ok: boolean }

export interface FaultFigure {
  scenario: string;
  sent: number;
  failed: number;
  /** From the fault until the last failed request after it (0 when none failed); absent when not measured. */
  recoveryMs?: number;
  /** Anything else the scenario measured, e.g. `converged=1200ms`. */
  extra?: Record<string, string | number>;
}

/** Sent, failed and time to recover of `results` measured from `faultAt`. */
export function trafficFigure(scenario: string, results: TrafficResult[], faultAt: number, extra?: FaultFigure['extra']): FaultFigure {
  const failedAfter = results.filter((r) => !r.ok && r.at >= faultAt);
  const lastFailure = failedAfter.at(-1);
  return {
    scenario, sent: results.length, failed: results.filter((r) => !r.ok).length,
    recoveryMs: lastFailure ? lastFailure.at - faultAt : 0, ...(extra ? { extra } : {}),
  };
}

/** The figure as the one line the CI log shows (`FAULT <scenario>: sent=… failed=… recovery=…ms …`). */
export function printFigure(figure: FaultFigure): string {
  const parts = [`sent=${figure.sent}`, `failed=${figure.failed}`];
  if (figure.recoveryMs !== undefined) parts.push(`recovery=${figure.recoveryMs}ms`);
  for (const [k, v] of Object.entries(figure.extra ?? {})) parts.push(`${k}=${v}`);
  const line = `FAULT ${figure.scenario}: ${parts.join(' ')}`;
  process.stdout.write(`${line}\n`);
  return line;
}

/** ISTHMUS_FAULT_LONG=1: the full durations; otherwise the CI ones. */
export const longFaults = process.env.ISTHMUS_FAULT_LONG === '1';
