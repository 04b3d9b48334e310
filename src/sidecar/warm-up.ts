import { createServer } from 'node:http';
import { silentLogger } from '../core/log.js';
import { InboundAuthorization } from './authz-layer.js';
import type { WorkloadIdentity } from './identity.js';
import { Inbound } from './inbound.js';
import { closeServer, listen } from './listen.js';
import { createOutbound } from './outbound.js';
import { RoutingTable } from './routing.js';
import type { DataPlaneTimeouts } from './timeouts.js';
import { UpstreamPool } from './upstream-pool.js';
import { Upstreams } from './upstreams.js';

/** The mesh name the warm-up calls; no real service can be in this namespace (it is never exported or registered). */
const namespace = 'isthmus-warm-up';
const service = 'warm-up';
const body = Buffer.alloc(1024, 'w');
/** A warm-up still running after this stops sending, and the sidecar serves with what it has warmed. */
const warmUpDeadlineMs = 5_000;
/** How long requests in flight at the deadline may still take before the warm-up is given up as failed. */
const warmUpGraceMs = 2_000;
/**
 * Enough for V8 to optimise the functions every request runs before the first real one comes:
 * measured on 2026-12-07 (docs/benchmarks.md, "Cold start"), a fresh mesh given 500 requests/s
 * met the cold-start target in one run of nine with 300, the default until then, and in nine of
 * nine with 1000 or 1500. ISTHMUS_SIDECAR_WARM_UP_REQUESTS changes the default for every sidecar
 * a process starts (the test suite sets a small one: it starts hundreds of sidecars).
 */
export function defaultWarmUpRequests(env: NodeJS.ProcessEnv = process.env): number {
  const fromEnv = Number(env.ISTHMUS_SIDECAR_WARM_UP_REQUESTS);
  return env.ISTHMUS_SIDECAR_WARM_UP_REQUESTS !== undefined && Number.isInteger(fromEnv) && fromEnv >= 0 ? Math.min(fromEnv, 10_000) : 1000;
}

export interface WarmUpOptions {
  cluster: string;
  zone: string;
  /** The workload's own credentials: the private chain calls itself with them. */
  identity: Pick<WorkloadIdentity, 'current' | 'secureContext'>;
  timeouts: Readonly<DataPlaneTimeouts>;
  /** Requests sent through the private chain; 0 skips the warm-up. */
  requests: number;
  /** The private chain carries them as the sidecar will: HTTP/2 between its outbound and inbound (outbound.upgradeToHttp2). */
  upgradeToHttp2?: boolean;
  /** Stop sending after this long (default 5 s): a busy machine must not hold the sidecar back from serving. */
  deadlineMs?: number;
}

/**
 * Sends `requests` HTTP/1.1 requests through a private copy of this sidecar's own data plane
 * before it starts serving: a client → an outbound proxy → a pooled mTLS connection with the
 * workload's own certificate → an inbound → a small app, all on 127.0.0.1 ephemeral ports and
 * torn down afterwards. The code is the real code (createOutbound, Upstreams, Inbound), so V8 has
 * compiled and optimised the request path, and the TLS session code has run, by the time the
 * first real request comes: without it, a fresh sidecar given hundreds of requests a second
 * answered its first ones in tens of milliseconds (docs/benchmarks.md, "Cold start"). Nothing of
 * it is seen outside: its routing table, inbound and authorization are its own objects, so the
 * sidecar's metrics, traffic reports and events (which count only their own origins) never see
 * it. Returns how long it took; never throws (a warm-up that fails only leaves the sidecar cold).
 */
export async function warmUp(opts: WarmUpOptions): Promise<{ ms: number; answered: number; cutShort?: true; error?: string }> {
  const started = performance.now();
  if (opts.requests <= 0) return { ms: 0, answered: 0 };
  const closers: (() => Promise<unknown> | void)[] = [];
  let answered = 0;
  try {
    const app = createServer((req, res) => {
      // No Date field: node:http would write it with Date#toUTCString (core/utc-text.ts).
      res.sendDate = false;
      req.resume();
      req.on('end', () => res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length }).end(body));
    });
    closers.push(() => closeServer(app));
    const appAddress = await listen(app, '127.0.0.1:0');

    const credentials = opts.identity.current();
    const inbound = new Inbound(credentials, appAddress, silentLogger, { cluster: opts.cluster, service: `${namespace}/${service}` }, opts.timeouts, 'http', new InboundAuthorization(namespace, service));
    closers.push(() => inbound.close());
    const inboundAddress = await listen(inbound.server, '127.0.0.1:0');

    const routing = new RoutingTable({ cluster: opts.cluster, zone: opts.zone }, () => true);
    routing.setCatalog({ revision: 0, clusters: [], services: [], invalidKeys: [] });
    routing.setEndpoints({
      version: 0, cluster: opts.cluster,
      services: [{ namespace, name: service, identities: [credentials.identity], endpoints: [{ address: inboundAddress, zone: opts.zone, healthy: true }] }],
    });
    const upstreams = new Upstreams(() => opts.identity.secureContext(), { connectTimeoutMs: opts.timeouts.connectMs, idleMs: opts.timeouts.connectionIdleMs });
    closers.push(() => upstreams.close());
    const outbound = createOutbound({ cluster: opts.cluster, routing, upstreams, timeouts: opts.timeouts, logger: silentLogger, upgradeToHttp2: opts.upgradeToHttp2 === true });
    closers.push(() => closeServer(outbound));
    const outboundAddress = await listen(outbound, '127.0.0.1:0');

    // A few at a time, as an app's burst would: the pool opens more than one connection and the
    // later ones resume the first one's TLS session.
    const client = new UpstreamPool(`http://${outboundAddress}`, { connections: 4, maxConnecting: 4, idleMs: 10_000, connect: { timeout: 2_000 } });
    closers.push(() => client.destroy());
    let next = 0;
    // Bounded: on a busy machine the warm-up stops sending at the deadline and the sidecar serves
    // with what it warmed; one that stalls (a bug) is given up as failed soon after.
    const deadlineMs = opts.deadlineMs ?? warmUpDeadlineMs;
    let cutShort = false;
    const timer = setTimeout(() => { cutShort = true; }, deadlineMs);
    let stalled: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      stalled = setTimeout(() => reject(new Error(`not done within ${(deadlineMs + warmUpGraceMs) / 1000} s`)), deadlineMs + warmUpGraceMs);
    });
    closers.push(() => {
      clearTimeout(timer);
      clearTimeout(stalled);
    });
    await Promise.race([deadline, Promise.all(Array.from({ length: 4 }, async () => {
      while (next < opts.requests && !cutShort) {
        next += 1;
        const res = await client.request({ method: next % 4 === 0 ? 'POST' : 'GET', path: `http://${service}.${namespace}.mesh/`, headers: { host: `${service}.${namespace}.mesh` }, ...(next % 4 === 0 ? { body } : {}) });
        await res.body.dump();
        if (res.statusCode === 200) answered += 1;
      }
    }))]);
    return { ms: performance.now() - started, answered, ...(cutShort ? { cutShort: true as const } : {}) };
  } catch (err) {
    return { ms: performance.now() - started, answered, error: (err as Error).message };
  } finally {
    for (const close of closers.reverse()) await Promise.resolve(close()).catch(() => undefined);
  }
}
