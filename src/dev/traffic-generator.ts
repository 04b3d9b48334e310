import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { redisPing } from './redis-sample.js';
import { grpcServerError } from '../sidecar/grpc-status.js';

/** A unary call: resolves with its gRPC status (0 OK). */
type GrpcCall = () => Promise<number>;

export interface TrafficTarget {
  /** host:port of a sidecar's outbound HTTP proxy. */
  proxy: string;
  /** Absolute URLs the proxy routes, e.g. http://hello.demo.mesh/, asked with GET in turn. */
  urls: string[];
  /**
   * Echo POSTs mixed in: every `every`-th request is a POST of the next of `sizes` bytes to `url`
   * (a sample app's `/echo`), and an answer of another length counts as failed. Bodies larger
   * than a reader's buffer, on kept connections, are what a load of GETs never exercises.
   */
  echo?: { url: string; sizes: readonly number[]; every: number };
  /**
   * gRPC calls mixed in: every `every`-th request is a unary `Echo` of the gRPC sample
   * (grpc-echo.ts) through `listener`, the client sidecar's fixed listener for it (h2c). A call
   * that ends with a server-error status (UNAVAILABLE, INTERNAL…) counts as failed.
   */
  grpc?: { listener: string; every: number };
  /**
   * Every `every`-th GET on a connection of its own, closed after the answer (`connection:
   * close`), as apps that keep no connections send them; the others share kept connections.
   * Connections that come and go are what kept traffic never exercises (their setup and teardown).
   */
  fresh?: { every: number };
  /**
   * Redis commands mixed in, through `listener` (the client sidecar's fixed TCP listener for the
   * redis sample): every `every`-th tick a PING on one connection kept open (opened again when it
   * closes), and every fourth of those on a connection of its own, so a TCP service shows both
   * open connections and new ones. A PING not answered with PONG counts as failed.
   */
  redis?: { listener: string; every: number };
}

/**
 * Steady sample traffic for `isthmus dev up`, so the dashboard's real-traffic views have
 * something to show: each target's URLs in turn, `rps` requests a second per target, through the
 * client sidecars like an app's own requests. Answers are read and dropped; failures are
 * the point of watching, so they are only counted.
 */
export class TrafficGenerator {
  private timers: NodeJS.Timeout[] = [];
  /** One gRPC client per listener, made at the first call (loading @grpc/grpc-js only then). */
  private grpcClients = new Map<string, Promise<{ call: GrpcCall; close: () => void }>>();
  /** One kept redis connection per listener. */
  private redisConnections = new Map<string, KeptRedis>();
  private inFlight = 0;
  sent = 0;
  failed = 0;

  constructor(private readonly targets: readonly TrafficTarget[], private readonly rps: number) {}

  start(): void {
    if (this.rps <= 0) return;
    for (const target of this.targets) {
      let next = 0;
      let gets = 0;
      const timer = setInterval(() => {
        // A stalled mesh must not pile up sockets: at most 50 requests wait at once.
        if (this.inFlight >= 50) return;
        const { echo, grpc, redis } = target;
        next += 1;
        if (grpc && next % grpc.every === 0) {
          this.callGrpc(grpc.listener);
          return;
        }
        if (redis && next % redis.every === 0) {
          this.ping(redis.listener, (next / redis.every) % 4 === 0);
          return;
        }
        if (target.urls.length === 0) return;
        if (echo && echo.sizes.length > 0 && next % echo.every === 0) {
          this.post(target.proxy, echo.url, echo.sizes[(next / echo.every - 1) % echo.sizes.length] as number);
          return;
        }
        const url = target.urls[gets % target.urls.length] as string;
        gets += 1;
        this.send(target.proxy, url, target.fresh !== undefined && gets % target.fresh.every === 0);
      }, 1000 / this.rps);
      timer.unref();
      this.timers.push(timer);
    }
  }

  stop(): void {
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
    for (const client of this.grpcClients.values()) void client.then((c) => c.close(), () => undefined);
    this.grpcClients.clear();
    for (const connection of this.redisConnections.values()) connection.close();
    this.redisConnections.clear();
  }

  private ping(listener: string, fresh: boolean): void {
    this.inFlight += 1;
    this.sent += 1;
    let kept = this.redisConnections.get(listener);
    if (!kept && !fresh) this.redisConnections.set(listener, (kept = new KeptRedis(listener)));
    void (fresh || !kept ? redisPing(listener, 10_000) : kept.ping()).then((ok) => {
      this.inFlight -= 1;
      if (!ok) this.failed += 1;
    });
  }

  private callGrpc(listener: string): void {
    this.inFlight += 1;
    this.sent += 1;
    let client = this.grpcClients.get(listener);
    if (!client) this.grpcClients.set(listener, (client = grpcEchoCaller(listener)));
    void client.then((c) => c.call()).then((status) => status, () => 14).then((status) => {
      this.inFlight -= 1;
      if (grpcServerError(status)) this.failed += 1;
    });
  }

  private post(proxy: string, url: string, size: number): void {
    this.inFlight += 1;
    this.sent += 1;
    void postThrough(proxy, url, bodyOf(size)).then(({ status, bytes }) => {
      this.inFlight -= 1;
      if (status >= 500 || bytes !== size) this.failed += 1;
    });
  }

  private send(proxy: string, url: string, fresh: boolean): void {
    this.inFlight += 1;
    this.sent += 1;
    void requestThrough(proxy, url, 10_000, fresh).then((status) => {
      this.inFlight -= 1;
      if (status >= 500) this.failed += 1;
    });
  }
}

/**
 * One GET of `url` through the HTTP proxy at `proxy`: the status, or 599 when none came. With
 * `fresh`, on a connection of its own that closes after the answer; otherwise on Node's kept ones.
 */
export function requestThrough(proxy: string, url: string, timeoutMs = 10_000, fresh = false): Promise<number> {
  const split = proxy.lastIndexOf(':');
  return new Promise((resolve) => {
    const headers = fresh ? { host: new URL(url).host, connection: 'close' } : { host: new URL(url).host };
    const req = request({ host: proxy.slice(0, split), port: Number(proxy.slice(split + 1)), path: url, headers, timeout: timeoutMs, ...(fresh ? { agent: false } : {}) }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 599));
      res.on('error', () => resolve(599));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', () => resolve(599));
    req.end();
  });
}

const bodies = new Map<number, Buffer>();
const bodyOf = (size: number): Buffer => {
  let body = bodies.get(size);
  if (!body) bodies.set(size, (body = Buffer.alloc(size, 'isthmus ')));
  return body;
};

/** One POST of `body` to `url` through the HTTP proxy at `proxy`: the status and how many bytes came back (599 and 0 when no answer came). */
export function postThrough(proxy: string, url: string, body: Buffer, timeoutMs = 10_000): Promise<{ status: number; bytes: number }> {
  const split = proxy.lastIndexOf(':');
  return new Promise((resolve) => {
    const req = request({
      host: proxy.slice(0, split), port: Number(proxy.slice(split + 1)), method: 'POST', path: url, timeout: timeoutMs,
      headers: { host: new URL(url).host, 'content-type': 'application/octet-stream', 'content-length': body.length },
    }, (res) => {
      let bytes = 0;
      res.on('data', (c: Buffer) => { bytes += c.length; });
      res.on('end', () => resolve({ status: res.statusCode ?? 599, bytes }));
      res.on('error', () => resolve({ status: 599, bytes }));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', () => resolve({ status: 599, bytes: 0 }));
    req.end(body);
  });
}

/**
 * Waits until every target answers each of its URLs with a 2xx, so "the mesh is up" means a
 * request works (catalogs and health checks settle a moment after the processes start). It asks
 * the sidecar's admin port first whether the route has a healthy endpoint, so the wait itself
 * does not send requests that are bound to fail (they would show in the first minute's numbers).
 * Resolves with the URLs still failing at the deadline.
 */
export async function waitUntilServing(targets: readonly (TrafficTarget & { admin?: string })[], timeoutMs: number): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  let failing: string[] = [];
  do {
    failing = [];
    for (const t of targets) {
      for (const url of t.urls) {
        if (t.admin && !(await routeHasHealthyEndpoint(t.admin, url))) {
          failing.push(`${url} via ${t.proxy} (no healthy endpoint yet)`);
          continue;
        }
        const status = await requestThrough(t.proxy, url, 3000);
        if (status < 200 || status >= 300) failing.push(`${url} via ${t.proxy} (${status})`);
      }
    }
    if (failing.length === 0) return [];
    await new Promise((resolve) => setTimeout(resolve, 200));
  } while (Date.now() < deadline);
  return failing;
}

/** `http://<svc>.<ns>.mesh/` → the sidecar admin's /routes/<ns>/<svc> says whether anything healthy serves it. */
export async function routeHasHealthyEndpoint(admin: string, url: string): Promise<boolean> {
  const [service, namespace] = new URL(url).hostname.split('.');
  try {
    const res = await fetch(`http://${admin}/routes/${namespace}/${service}`, { signal: AbortSignal.timeout(2000) });
    if (!res.ok) return false;
    const route = (await res.json()) as { status?: string };
    return route.status !== 'no-healthy-endpoints';
  } catch {
    return false;
  }
}

/** A unary Echo caller of the gRPC sample through `listener` (h2c), with a 10 s deadline per call. */
async function grpcEchoCaller(listener: string): Promise<{ call: GrpcCall; close: () => void }> {
  const [grpc, { EchoClient }] = await Promise.all([import('@grpc/grpc-js'), import('./grpc-echo.js')]);
  const client = new EchoClient(listener, grpc.credentials.createInsecure());
  type Unary = (request: { message: string }, metadata: InstanceType<typeof grpc.Metadata>, options: { deadline: number }, callback: (err: { code?: number } | null) => void) => void;
  const echo = (client as unknown as { Echo: Unary }).Echo.bind(client);
  return {
    call: () => new Promise<number>((resolve) => {
      echo({ message: 'sample traffic' }, new grpc.Metadata(), { deadline: Date.now() + 10_000 }, (err) => resolve(err ? err.code ?? 2 : 0));
    }),
    close: () => client.close(),
  };
}

/**
 * A redis connection kept open for PINGs, one at a time (a PING sent while one waits fails at
 * once rather than queue); opened again at the next PING after it closed or failed.
 */
class KeptRedis {
  private socket: Socket | undefined;
  private waiting: ((ok: boolean) => void) | undefined;
  private answer = '';

  constructor(private readonly listener: string) {}

  ping(timeoutMs = 10_000): Promise<boolean> {
    if (this.waiting) return Promise.resolve(false);
    const socket = this.socket ?? this.open();
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.settle(false, true), timeoutMs);
      this.waiting = (ok) => { clearTimeout(timer); resolve(ok); };
      this.answer = '';
      socket.write('PING\r\n');
    });
  }

  close(): void {
    this.settle(false, true);
  }

  private open(): Socket {
    const split = this.listener.lastIndexOf(':');
    const socket = connect({ host: this.listener.slice(0, split), port: Number(this.listener.slice(split + 1)) });
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      this.answer += chunk.toString('latin1');
      if (this.answer.includes('\r\n')) this.settle(this.answer.startsWith('+PONG'), false);
    });
    socket.on('error', () => this.settle(false, true));
    socket.on('close', () => this.settle(false, true));
    this.socket = socket;
    return socket;
  }

  /** Ends the PING that waits, if any; `drop` closes the connection (the next PING opens another). */
  private settle(ok: boolean, drop: boolean): void {
    const waiting = this.waiting;
    this.waiting = undefined;
    if (drop && this.socket) {
      const socket = this.socket;
      this.socket = undefined;
      socket.destroy();
    }
    waiting?.(ok);
  }
}
