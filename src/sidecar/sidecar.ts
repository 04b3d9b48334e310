import type { AddressInfo } from 'node:net';
import { HeapTrim, largeTableServices } from '../core/heap-trim.js';
import { mallocTrimAtStart, mallocTrimOutcome, mallocTrimWhenIdle } from '../core/malloc-trim.js';
import { YoungGeneration } from '../core/young-generation.js';
import type { Logger } from '../core/log.js';
import { parseDuration } from '../core/validate.js';
import { HealthChecker } from '../federation/health-checker.js';
import { GatewayCheck } from './gateway-check.js';
import type { Catalog } from '../model/catalog.js';
import { channels, type EjectionMessage } from '../core/channels.js';
import type { PoliciesSnapshot } from '../model/policy-records.js';
import { createMetrics } from '../telemetry/metrics.js';
import { flushTracing, startTracing } from '../telemetry/tracing.js';
import { TrafficReporter } from '../telemetry/traffic-reporter.js';
import { startSidecarAdmin } from './admin.js';
import { InboundAuthorization } from './authz-layer.js';
import { InboundRateLimit } from './inbound-rate-limit.js';
import { trustDomainOf } from '../trust/spiffe.js';
import { CatalogWatch } from './catalog-watch.js';
import { appPortsOf, type SidecarConfig } from './config.js';
import { WorkloadIdentity, type WorkloadCredentials } from './identity.js';
import { Inbound } from './inbound.js';
import { splitAppPorts, TcpPorts } from './inbound-ports.js';
import { createOutbound } from './outbound.js';
import { RoutingTable, type LocalEndpointsSnapshot } from './routing.js';
import { TcpInbound } from './tcp-inbound.js';
import { TcpListener } from './tcp-listener.js';
import { listenerProtocol } from './tcp-protocol.js';
import { resolveTimeouts } from './timeouts.js';
import { Upstreams } from './upstreams.js';
import { defaultWarmUpRequests, warmUp } from './warm-up.js';
import { closeServer, hostPort, listen } from './listen.js';

export interface RunningSidecar {
  outbound: string;
  inbound: string | undefined;
  /** `<ns>/<service>` (`<ns>/<service>:<port>` for a listener with a port) → address of its fixed local listener. */
  listeners: Record<string, string>;
  admin: string;
  identity: WorkloadIdentity;
  routing: RoutingTable;
  /**
   * The inbound stops taking connections and lets those open finish, for `timeouts.drain` at
   * most, while the outbound and the fixed listeners serve on (the app may still be finishing
   * work that calls the mesh). Resolves with how many inbound connections were still open at
   * the end; stop() then closes everything.
   */
  drain(): Promise<number>;
  stop(): Promise<void>;
}

/**
 * One workload's sidecar: its certificate, its catalog, the outbound proxy for the app, the
 * inbound mTLS listener in front of it, and the admin port. Starts with the federation down
 * when an earlier run left a certificate and catalog in stateDir.
 */
export interface RunOptions {
  /**
   * The sidecar is the process (`isthmus sidecar`), not one of many in a dev mesh's or a test's
   * process: it then manages the process's young generation (core/young-generation.ts).
   */
  ownProcess?: boolean;
}

export async function runSidecar(config: Readonly<SidecarConfig>, logger: Logger, run: RunOptions = {}): Promise<RunningSidecar> {
  const closers: (() => Promise<void> | void)[] = [];
  const stop = async () => {
    for (const close of closers.reverse()) await Promise.resolve(close()).catch(() => undefined);
  };
  try {
    // The access log's file first: a path that cannot be written stops the start here, named.
    // Loaded only when configured. The first closer, so the last to run: requests answered while draining are logged.
    const accessLog = config.accessLog && (await import('../telemetry/access-log.js')).openAccessLog({
      file: config.accessLog.file, given: 'accessLog.file (or --access-log)', format: config.accessLog.format,
      onProblem: (problem) => logger.warn({ file: config.accessLog?.file }, problem),
    });
    if (accessLog) closers.push(() => accessLog.close());
    // Process-wide and idempotent: on only when an OTLP endpoint is set (docs/tracing.md).
    await startTracing('isthmus-sidecar');
    closers.push(() => flushTracing());
    const identity = await WorkloadIdentity.start({
      federationUrl: config.federation.url, rootCertPem: config.rootCertPem, stateDir: config.stateDirPath, logger,
      ...(config.bootstrapToken ? { bootstrapToken: config.bootstrapToken } : {}),
    });
    closers.push(() => identity.stop());

    let catalog: Catalog | undefined;
    let endpoints: LocalEndpointsSnapshot | undefined;
    const timeouts = resolveTimeouts(config.timeouts);
    const gatewayCheck = new GatewayCheck((address) => routing.gatewayCluster(address), timeouts.connectMs);
    const health = new HealthChecker({
      intervalMs: 2000,
      unhealthyAfter: 1,
      addresses: () => routing.checkedAddresses(),
      probe: gatewayCheck.probe,
      onChange: (failed, recovered) => {
        routing.invalidate();
        for (const address of failed) upstreams.closeTo(address, 'its active health check failed');
        // Back in service: the balancer forgets the latency it measured while the address was sick.
        for (const address of recovered) routing.forgetLatency(address);
      },
      onRound: () => routing.unejectReachable((address) => health.healthOf(address)),
      servedSince: (address, since) => routing.answeredSince(address, since),
      // An idle, healthy address is checked every third round (~6 s), not every 2 s: a gateway
      // check is a handshake, and each idle sidecar made one per remote gateway every round. A
      // request waiting there makes it due at the next round, so a request never waits on a
      // hung peer longer than before (docs/sidecar.md, "Health checks and outlier detection").
      idleEvery: 3,
      needsCheck: (address) => routing.needsCheck(address),
    });
    // An address not checked yet is as healthy as the federation says: no blackout at start or
    // when an endpoint appears.
    const routing: RoutingTable = new RoutingTable({ cluster: config.cluster, zone: config.zone }, (address) => health.healthOf(address) ?? true);
    const upstreams = new Upstreams(() => identity.secureContext(), { connectTimeoutMs: timeouts.connectMs, idleMs: timeouts.upstreamIdleMs });
    closers.push(() => upstreams.close());
    // An endpoint ejected because new connections to it fail (refused, or no handshake within
    // timeouts.connect) loses its pooled ones too: a peer that completes no handshake is most
    // likely hung, and a request on a kept connection would wait for it. One ejected for 5xx
    // answers keeps them: it answers, and what is in flight there gets its answer.
    const onEjection = (message: EjectionMessage) => {
      if (message.origin === routing && message.reason === 'connect-error') upstreams.closeTo(message.address, 'outlier detection ejected it: new connections to it fail');
    };
    channels.balancerEjection.subscribe(onEjection);
    closers.push(() => { channels.balancerEjection.unsubscribe(onEjection); });

    const watch = new CatalogWatch({ federationUrl: config.federation.url, identity, stateDir: config.stateDirPath, logger });
    const first = (feed: 'catalog' | 'policies') => new Promise<void>((resolve) => {
      watch.once(feed, () => resolve());
      setTimeout(resolve, 10_000).unref();
    });
    const firstCatalog = first('catalog');
    // The inbound opens only with a policy snapshot (from the federation, or the last one on
    // disk): before it, a service's authorization rules are not known and every caller would
    // pass. A federation that serves no policies is waited for 10 s at most, as the catalog is.
    const firstPolicies = first('policies');
    // A large catalog leaves the heap grown by its parse and index; give that back once the
    // changes settle (core/heap-trim.ts). A small one costs too little to be worth the pause, and
    // so does one change to a large one, which the trim tells by how little the heap grew.
    const heapTrim = new HeapTrim({ logger });
    closers.push(() => heapTrim.stop());
    // Pools to addresses that left the catalog close gracefully (upstreams.ts retireExcept): a
    // draining gateway or a deregistered instance is let go of as soon as this sidecar hears.
    routing.onAddresses = (present) => {
      const retired = upstreams.retireExcept(present);
      if (retired > 0) logger.info({ pools: retired }, 'closing the connections to addresses that left the catalog, each after its answer in flight');
    };
    watch.on('catalog', (c: Catalog) => {
      catalog = c;
      routing.setCatalog(c);
      if (c.services.length >= largeTableServices) heapTrim.request('catalog');
    });
    watch.on('endpoints', (e: LocalEndpointsSnapshot) => { endpoints = e; routing.setEndpoints(e); health.round().catch(() => undefined); });
    // Who may call this workload: enforced by its inbound (docs/authorization.md).
    const authorization = new InboundAuthorization(config.namespace, config.service);
    // How many requests it takes in: its LocalRateLimit, also enforced by its inbound.
    const rateLimit = new InboundRateLimit(config.namespace, config.service);
    watch.on('policies', (p: PoliciesSnapshot) => {
      routing.setPolicies(p.policies);
      authorization.set(p.policies);
      rateLimit.set(p.policies);
    });
    watch.start();
    closers.push(() => watch.stop());
    // Serving before the first catalog would answer "not in the mesh" for everything.
    await Promise.all([firstCatalog, firstPolicies]);
    // Before any listener opens, so that the first real requests meet compiled code (warm-up.ts).
    const warm = await warmUp({ cluster: config.cluster, zone: config.zone, identity, timeouts, requests: config.warmUpRequests ?? defaultWarmUpRequests(), upgradeToHttp2: config.outbound.upgradeToHttp2 === true });
    // The warm-up's TLS records, parsers and compiler zones were malloc'd and freed: give their
    // pages back before serving (core/malloc-trim.ts).
    const malloc = mallocTrimAtStart(logger);
    if (warm.error !== undefined) logger.warn({ err: warm.error, answered: warm.answered, ms: Math.round(warm.ms) }, 'the warm-up failed; serving anyway, with cold code');
    else if (warm.answered > 0) logger.info({ requests: warm.answered, ms: Math.round(warm.ms), ...(warm.cutShort ? { cutShort: true } : {}), mallocTrim: mallocTrimOutcome(malloc) }, warm.cutShort ? 'warmed up, cut short at the deadline (a busy machine)' : 'warmed up');
    health.start();
    closers.push(() => health.stop());
    // Ejections end by time, not by an event: look again every second.
    const recheck = setInterval(() => { if (routing.ejected().size > 0) routing.invalidate(); }, 1000);
    recheck.unref();
    closers.push(() => clearInterval(recheck));

    const outboundDeps = {
      cluster: config.cluster, routing, upstreams, timeouts, upgradeToHttp2: config.outbound.upgradeToHttp2 === true,
      ...(config.retryBuffer === undefined ? {} : { retryBufferBytes: config.retryBuffer }),
    };
    const outbound = createOutbound({ ...outboundDeps, logger: logger.child({ component: 'outbound' }) });
    const outboundAddress = await listen(outbound, config.outbound.listen);
    closers.push(() => closeServer(outbound));
    const listeners: Record<string, string> = {};
    for (const fixed of config.listeners ?? []) {
      const listenerLogger = logger.child({ component: 'listener', upstream: `${fixed.namespace}/${fixed.service}` });
      const target = { service: fixed.service, namespace: fixed.namespace, port: fixed.port };
      if (fixed.protocol === 'http') {
        const server = createOutbound({ ...outboundDeps, logger: listenerLogger }, target);
        listeners[`${fixed.namespace}/${fixed.service}${fixed.port === undefined ? '' : `:${fixed.port}`}`] = await listen(server, fixed.listen);
        closers.push(() => closeServer(server));
        continue;
      }
      // tcp, or left to the catalog per connection (docs/sidecar.md, "TCP services").
      const http = fixed.protocol === 'tcp' ? undefined : createOutbound({ ...outboundDeps, logger: listenerLogger }, target);
      const tcp = new TcpListener(
        { routing, upstreams, logger: listenerLogger, idleTimeoutMs: fixed.idleTimeout ? parseDuration(fixed.idleTimeout) * 1000 : timeouts.tunnelIdleMs },
        target, () => listenerProtocol(fixed.protocol, routing.protocolOf(fixed.namespace, fixed.service, fixed.port)), http,
      );
      listeners[`${fixed.namespace}/${fixed.service}${fixed.port === undefined ? '' : `:${fixed.port}`}`] = await listen(tcp.server, fixed.listen);
      closers.push(() => tcp.close());
    }

    // The inbound: one mTLS listener in front of every app port (inbound-ports.ts). An app with
    // one TCP port keeps the TCP inbound as its listener; any other app has the HTTP inbound,
    // which hands the connections whose ALPN names a TCP port to that port's TCP inbound.
    const tcpInbounds: TcpInbound[] = [];
    let inbound: Inbound | undefined;
    let inboundAddress: string | undefined;
    if (config.inbound) {
      const idle = config.inbound.idleTimeout ? parseDuration(config.inbound.idleTimeout) * 1000 : timeouts.tunnelIdleMs;
      const split = splitAppPorts({ address: config.inbound.app, protocol: config.inbound.appProtocol ?? 'http' }, appPortsOf(config.inbound));
      const tcpInbound = (address: string) => {
        const made = new TcpInbound(identity.current(), address, logger.child({ component: 'inbound', protocol: 'tcp', app: address }), idle, authorization);
        tcpInbounds.push(made);
        closers.push(() => made.close());
        return made;
      };
      const tcp = split.tcp && (split.http || split.tcp.ports.length > 0)
        ? new TcpPorts(new Map(split.tcp.ports.map((p) => [p.port, tcpInbound(p.address)])), split.tcp.fallback && tcpInbound(split.tcp.fallback.address))
        : undefined;
      if (!split.http && !tcp) {
        inboundAddress = await listen(tcpInbound(config.inbound.app).server, config.inbound.listen);
      } else {
        const { fallback, ports } = split.http ?? { fallback: { address: config.inbound.app, protocol: 'http' as const }, ports: [] };
        const credentials = (c: WorkloadCredentials) => ({ ...c, identity: c.identity });
        inbound = new Inbound(credentials(identity.current()), fallback.address, logger.child({ component: 'inbound' }), { cluster: config.cluster, service: `${config.namespace}/${config.service}` }, timeouts, fallback.protocol, authorization, rateLimit, ports, tcp, split.http !== undefined);
        inboundAddress = await listen(inbound.server, config.inbound.listen);
        const running = inbound;
        closers.push(() => running.close());
      }
    }
    const refresh = () => {
      upstreams.rotate(() => identity.secureContext());
      inbound?.update(identity.current());
      for (const tcpInbound of tcpInbounds) tcpInbound.update(identity.current());
    };
    identity.on('renewed', refresh);
    identity.on('trust-bundle', refresh);

    // Counts only this sidecar's events: others may share the process (isthmus dev up).
    const metrics = createMetrics('sidecar', { cluster: config.cluster }, {
      origins: [routing, authorization, rateLimit, ...(inbound ? [inbound] : []), ...tcpInbounds],
      service: `${config.namespace}/${config.service}`,
      certificates: () => [identity.current()],
    });
    closers.push(() => metrics.close());
    if (accessLog && config.accessLog) {
      accessLog.start([routing, ...(inbound ? [inbound] : []), ...tcpInbounds]);
      logger.info({ file: config.accessLog.file, format: config.accessLog.format ?? 'json' }, 'access log on');
    }

    const admin = await startSidecarAdmin({
      cluster: config.cluster,
      zone: config.zone,
      identity: () => identity.current().identity,
      routing,
      services: () => [
        ...new Map([...(catalog?.services ?? []), ...(endpoints?.services ?? [])].map((s) => [`${s.namespace}/${s.name}`, { namespace: s.namespace, name: s.name }])).values(),
      ],
      snapshot: () => ({ catalogRevision: catalog?.revision, source: watch.status().catalog?.source }),
      metrics,
      trace: { routing, secureContext: () => upstreams.secureContext() },
      operators: { rootsPem: () => identity.current().trustBundle, trustDomain: () => trustDomainOf(identity.current().identity) },
    }, ...hostPort(config.admin.listen), config.adminTls);
    closers.push(() => closeServer(admin));
    const adminAddress = admin.address() as AddressInfo;

    // Per-destination request counts and failover/ejection events for the dashboard, every 5 s.
    let reportFailures = 0;
    const reporter = new TrafficReporter({
      cluster: config.cluster,
      origins: [routing, authorization],
      splitCounts: (fn) => routing.forEachSplitCount(fn),
      admin: `${adminAddress.address}:${adminAddress.port}`,
      intervalMs: config.reportIntervalMs ?? 5000,
      send: (report) => watch.post('/v1/reports', report).then(() => {
        if (reportFailures > 0) logger.info({ after: reportFailures }, 'traffic reports reach the federation again');
        reportFailures = 0;
      }),
      onError: (err) => {
        reportFailures += 1;
        // Once, then every 12th: the federation being away is already logged by the catalog watch.
        if (reportFailures === 1 || reportFailures % 12 === 0) logger.warn({ err: err.message, failures: reportFailures }, 'could not send a traffic report; the counts are kept for the next one');
      },
    });
    reporter.start();
    closers.push(() => reporter.stop());

    logger.info({ identity: identity.current().identity, outbound: outboundAddress, inbound: inboundAddress, admin: `${adminAddress.address}:${adminAddress.port}` }, 'sidecar ready');
    // Under load the young generation may grow (to a cap), and after a burst the memory it and
    // the Buffers took goes back through the heap trim (core/young-generation.ts), and once idle
    // after collections, the pages malloc keeps for what they freed (core/malloc-trim.ts).
    if (run.ownProcess) {
      const youngGeneration = new YoungGeneration({ onQuiet: (reason) => heapTrim.request(reason, { always: true }), onIdle: mallocTrimWhenIdle(logger) });
      youngGeneration.serve();
      closers.push(() => youngGeneration.stop());
    }
    // The one inbound that listens: the HTTP one (whose raw sockets include the TCP sessions it
    // hands over), else the TCP inbound of an app with one TCP port.
    const listening = inbound ?? tcpInbounds[0];
    const drain = async (): Promise<number> => {
      if (timeouts.drainMs === 0 || !listening) return 0;
      const started = performance.now();
      logger.info({ drainSeconds: timeouts.drainMs / 1000 }, 'draining: the inbound takes no new connection; those open may finish');
      const left = await listening.drain(timeouts.drainMs);
      logger.info({ ms: Math.round(performance.now() - started), stillOpen: left }, left === 0 ? 'drained: every inbound connection finished' : 'drain time is up: closing the inbound connections still open');
      return left;
    };
    return { outbound: outboundAddress, inbound: inboundAddress, listeners, admin: `${adminAddress.address}:${adminAddress.port}`, identity, routing, drain, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
