import { connect } from 'node:net';
import { defaultJitter, jitteredMs } from '../core/jitter.js';

/**
 * Active TCP health checks of this cluster's instances. An instance is healthy once a connect
 * succeeds and unhealthy after `unhealthyAfter` consecutive failures, so one slow accept does
 * not flap the exported counts that every other cluster sees.
 */
export class HealthChecker {
  private readonly state = new Map<string, { healthy: boolean; failures: number; checkedAtRound: number }>();
  private rounds = 0;
  private timer: NodeJS.Timeout | undefined;
  private running = false;

  constructor(
    private readonly opts: {
      intervalMs: number;
      timeoutMs?: number;
      unhealthyAfter?: number;
      addresses: () => string[];
      /**
       * Some address changed health; `failed` lists those that were healthy and are not now,
       * `recovered` those that had failed and pass again (not addresses checked for the first time).
       */
      onChange: (failed: string[], recovered: string[]) => void;
      /** How one address is checked; a TCP connect (`tcpProbe`) by default. */
      probe?: (address: string, timeoutMs: number) => Promise<boolean>;
      /** After every round, changed or not (the sidecar un-ejects hosts that pass a check). */
      onRound?: () => void;
      /**
       * Passive proof: an address that answered real traffic since the last round is healthy
       * without a probe. Under load a sidecar then probes only what it does not use, and the
       * instances and gateways it calls are spared a connection from every caller every round.
       */
      servedSince?: (address: string, since: number) => boolean;
      /**
       * Checks of idle addresses spaced out: a healthy address that neither answered traffic
       * since the last round nor `needsCheck` is probed only once in this many rounds (its last
       * verdict, from a probe or from traffic, holds in between). 1 (the default): every round.
       */
      idleEvery?: number;
      /**
       * With `idleEvery`: the address must be probed this round anyway (the sidecar: requests
       * wait on it for their answers, and may hang there now; or outlier detection ejected it,
       * and only a fresh check may end that early). Unhealthy addresses are probed every round.
       */
      needsCheck?: (address: string) => boolean;
      /**
       * Each wait between rounds is `intervalMs` times a factor drawn from 1 ± `jitter` (default
       * 0.1; core/jitter.ts), so that checkers started together drift apart instead of probing
       * in step: each probe wakes its target too, and a fleet probing at once is a burst of CPU
       * on every core that delays every request in flight. 0 turns it off.
       */
      jitter?: number;
      /** A number in [0, 1); Math.random unless a test fixes it. */
      random?: () => number;
    },
  ) {}

  /** The wait before the next round: `intervalMs` scaled by a factor in [1 - jitter, 1 + jitter). */
  nextWaitMs(): number {
    return jitteredMs(this.opts.intervalMs, this.opts.jitter ?? defaultJitter, this.opts.random);
  }

  isHealthy(address: string): boolean {
    return this.state.get(address)?.healthy ?? false;
  }

  /** undefined until the address has been checked once. */
  healthOf(address: string): boolean | undefined {
    return this.state.get(address)?.healthy;
  }

  /** A healthy, idle address checked less than `idleEvery` rounds ago keeps its verdict this round. */
  private restsThisRound(address: string, round: number): boolean {
    const every = this.opts.idleEvery ?? 1;
    const known = this.state.get(address);
    if (every <= 1 || !known?.healthy) return false;
    if (this.opts.needsCheck?.(address) === true) return false;
    return round - known.checkedAtRound < every;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    void this.round();
  }

  stop(): void {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
  }

  private lastRoundAt = Number.NEGATIVE_INFINITY;

  /** Checks every address once now (or takes its recent traffic as proof); resolves when all are done. */
  async round(): Promise<void> {
    // An address listed more than once (one pod behind several services, or several ports of one
    // instance named by the same address) is one target: probed once a round, and its failures
    // counted once a round, so `unhealthyAfter` means rounds for it too.
    const addresses = [...new Set(this.opts.addresses())];
    const listed = new Set(addresses);
    for (const known of [...this.state.keys()]) if (!listed.has(known)) this.state.delete(known);
    const since = this.lastRoundAt;
    this.lastRoundAt = Date.now();
    const round = (this.rounds += 1);
    const served = (a: string) => this.state.has(a) && this.opts.servedSince?.(a, since) === true;
    const probe = this.opts.probe ?? tcpProbe;
    const results = await Promise.all(addresses.map(async (a) => {
      // The third value: whether the verdict is fresh (traffic or a probe), not carried over.
      if (served(a)) return [a, true, true] as const;
      if (this.restsThisRound(a, round)) return [a, true, false] as const;
      return [a, await probe(a, this.opts.timeoutMs ?? 1000), true] as const;
    }));
    let changed = false;
    const failed: string[] = [];
    const recovered: string[] = [];
    for (const [address, ok, fresh] of results) {
      const previous = this.state.get(address) ?? { healthy: false, failures: 0, checkedAtRound: round };
      const failures = ok ? 0 : previous.failures + 1;
      const healthy = ok ? true : previous.healthy && failures < (this.opts.unhealthyAfter ?? 2);
      if (healthy !== previous.healthy || !this.state.has(address)) changed = true;
      if (previous.healthy && !healthy) failed.push(address);
      if (!previous.healthy && healthy && this.state.has(address)) recovered.push(address);
      this.state.set(address, { healthy, failures, checkedAtRound: fresh ? round : previous.checkedAtRound });
    }
    if (changed) this.opts.onChange(failed, recovered);
    this.opts.onRound?.();
    if (this.running) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = setTimeout(() => void this.round(), this.nextWaitMs());
      this.timer.unref();
    }
  }
}

/**
 * A TCP connect. It proves the kernel accepts connections, not that the process answers: a
 * stopped process still completes handshakes into its listen backlog.
 */
export function tcpProbe(address: string, timeoutMs: number): Promise<boolean> {
  const split = address.lastIndexOf(':');
  const host = address.slice(0, split);
  const port = Number(address.slice(split + 1));
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}
