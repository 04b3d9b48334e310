import { request } from 'node:http';

export interface TrafficTarget {
  /** host:port of a sidecar's outbound HTTP proxy. */
  proxy: string;
  /** Absolute URLs the proxy routes, e.g. http://hello.demo.mesh/. */
  urls: string[];
}

/**
 * Steady sample traffic for `isthmus dev up`, so the dashboard's real-traffic views have
 * something to show: each target's URLs in turn, `rps` requests a second per target, through the
 * client sidecars like an app's own requests. Answers are read and dropped; failures are
 * the point of watching, so they are only counted.
 */
export class TrafficGenerator {
  private timers: NodeJS.Timeout[] = [];
  private inFlight = 0;
  sent = 0;
  failed = 0;

  constructor(private readonly targets: readonly TrafficTarget[], private readonly rps: number) {}

  start(): void {
    if (this.rps <= 0) return;
    for (const target of this.targets) {
      let next = 0;
      const timer = setInterval(() => {
        // A stalled mesh must not pile up sockets: at most 50 requests wait at once.
        if (this.inFlight >= 50 || target.urls.length === 0) return;
        const url = target.urls[next % target.urls.length] as string;
        next += 1;
        this.send(target.proxy, url);
      }, 1000 / this.rps);
      timer.unref();
      this.timers.push(timer);
    }
  }

  stop(): void {
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
  }

  private send(proxy: string, url: string): void {
    const split = proxy.lastIndexOf(':');
    this.inFlight += 1;
    this.sent += 1;
    const done = (ok: boolean) => {
      this.inFlight -= 1;
      if (!ok) this.failed += 1;
    };
    const req = request({ host: proxy.slice(0, split), port: Number(proxy.slice(split + 1)), path: url, headers: { host: new URL(url).host }, timeout: 10_000 }, (res) => {
      res.resume();
      res.on('end', () => done((res.statusCode ?? 500) < 500));
      res.on('error', () => done(false));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', () => done(false));
    req.end();
  }
}
