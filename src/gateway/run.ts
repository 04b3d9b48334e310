import type { Server } from 'node:http';
import { HeapTrim, largeTableServices } from '../core/heap-trim.js';
import { mallocTrimAtStart, mallocTrimWhenIdle } from '../core/malloc-trim.js';
import { YoungGeneration } from '../core/young-generation.js';
import type { Logger } from '../core/log.js';
import { createMetrics } from '../telemetry/metrics.js';
import { flushTracing, startTracing } from '../telemetry/tracing.js';
import { startAdmin } from './admin.js';
import type { GatewayConfig } from './config.js';
import { FederationClient } from './federation-client.js';
import { gatewayRoot } from './gateway-certificate.js';
import { Gateway } from './gateway.js';

export interface RunningGateway {
  gateway: Gateway;
  address: string;
  /** What other clusters dial: the advertised address, else `address`. */
  advertised: string;
  admin: string;
  /**
   * Withdraws the gateway's record and lets the connections it carries end, for the entry's
   * `drainTimeout` at most, while it keeps routing (docs/gateway.md, "Draining"). Resolves with
   * how many sockets were still open at the end; stop() then closes everything.
   */
  drain(): Promise<number>;
  stop(): Promise<void>;
}

/** Starts a gateway: its listener, admin port, routing-table watch and self-registration. */
export async function runGateway(config: GatewayConfig, logger: Logger, run: { ownProcess?: boolean } = {}): Promise<RunningGateway> {
  // Process-wide and idempotent: on only when an OTLP endpoint is set (docs/tracing.md).
  await startTracing('isthmus-gateway');
  const gateway = new Gateway(config, logger.child({ component: 'gateway' }));
  const client = new FederationClient(config, logger.child({ component: 'federation-client' }));
  const metrics = createMetrics('gateway', { cluster: config.cluster }, { origins: [gateway], activeConnections: () => gateway.stats.active });
  let admin: Server | undefined;
  // Gives back the heap that a large routing table grew (core/heap-trim.ts).
  const heapTrim = new HeapTrim({ logger });
  // Under load the young generation may grow (to a cap), and after a burst the memory it and the
  // Buffers took goes back through the heap trim (core/young-generation.ts), and once idle after
  // collections, the pages malloc keeps for what they freed (core/malloc-trim.ts).
  const youngGeneration = new YoungGeneration({ onQuiet: (reason) => heapTrim.request(reason, { always: true }), onIdle: mallocTrimWhenIdle(logger) });
  try {
    const listening = await gateway.listen();
    admin = await startAdmin(gateway, config.admin.host, config.admin.port, { rootsPem: [gatewayRoot(config)], trustDomain: config.trustDomain }, metrics, config.adminTls);
    const adminAddress = admin.address();
    client.onCertificate = (certificate) => gateway.setCertificate(certificate);
    await client.startCertificates();
    // What loading and the first handshakes freed goes back before it serves (core/malloc-trim.ts).
    mallocTrimAtStart(logger);
    void client.watchRoutes((routes) => {
      gateway.setRoutes(routes);
      if (routes.services.length >= largeTableServices) heapTrim.request('routes');
    });
    const address = `${listening.host}:${listening.port}`;
    const adminHostPort = config.adminAdvertise
      ? `${config.adminAdvertise.host}:${config.adminAdvertise.port}`
      : `${config.admin.host}:${typeof adminAddress === 'object' && adminAddress ? adminAddress.port : config.admin.port}`;
    // The advertised address (what other clusters dial: a load balancer, NAT or link in front of
    // this listener) and the admin address (where `isthmus trace` finds it) go into the
    // gateway's etcd record. A listen port 0 is advertised as the port bound.
    const advertised = config.advertise ? `${config.advertise.host}:${config.advertise.port}` : address;
    void client.startRegistering({ address: advertised, zone: config.zone, admin: adminHostPort });
    if (run.ownProcess) youngGeneration.serve();
    return {
      gateway,
      address,
      advertised,
      admin: adminHostPort,
      drain: async () => {
        const started = performance.now();
        const log = logger.child({ component: 'drain' });
        const answer = config.drainTimeoutMs > 0 ? await client.withdraw(Math.min(2000, config.drainTimeoutMs)) : undefined;
        if (answer && !answer.withdrawn) log.info({ replicasLeft: answer.replicasLeft }, 'draining: the record stays for the other replicas of this gateway, which keep reporting; the connections this one carries end when their callers close them, or at drainTimeout');
        else if (answer) log.info({}, 'draining: record withdrawn; other clusters\' sidecars close their connections here as they hear of it');
        const left = await gateway.drain(Math.max(0, config.drainTimeoutMs - (performance.now() - started)));
        const ms = Math.round(performance.now() - started);
        if (left === 0) log.info({ ms }, 'drained: every connection through the gateway ended');
        else log.warn({ ms, openSockets: left, drainTimeoutMs: config.drainTimeoutMs }, 'drain timeout: closing the connections still open');
        return left;
      },
      stop: async () => {
        youngGeneration.stop();
        heapTrim.stop();
        await client.close();
        await new Promise<void>((resolve) => admin?.close(() => resolve()));
        await gateway.close();
        metrics.close();
        await flushTracing().catch(() => undefined);
      },
    };
  } catch (err) {
    youngGeneration.stop();
    heapTrim.stop();
    metrics.close();
    await client.close();
    admin?.close();
    await gateway.close().catch(() => undefined);
    throw err;
  }
}
