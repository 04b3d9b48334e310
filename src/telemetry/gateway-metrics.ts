import { Counter, Gauge, type Registry } from './prom.js';
import { channels } from '../core/channels.js';
import type { Listen } from './shared.js';

export interface GatewaySources {
  /** Connections spliced now; read on scrape. */
  activeConnections?: () => number;
}

/** An east-west gateway's metrics: what it routed, what it refused and why. No client address is a label. */
export function gatewayMetrics(registry: Registry, cluster: string, sources: GatewaySources, listen: Listen): void {
  const registers = [registry];
  const connections = new Counter({
    name: 'isthmus_gateway_connections_total',
    help: 'Connections this gateway routed to a local endpoint, by the exported service the SNI named.',
    labelNames: ['cluster', 'destination_service'], registers,
  });
  listen(channels.gatewayRouted, (m) => connections.inc({ cluster, destination_service: m.service }));

  const refusals = new Counter({
    name: 'isthmus_gateway_refusals_total',
    help: 'Connections this gateway closed without routing, by reason (not-client-hello, sni-not-mesh, service-not-exported, unknown-subset, ...).',
    labelNames: ['cluster', 'reason'], registers,
  });
  listen(channels.gatewayRefused, (m) => refusals.inc({ cluster, reason: m.reason }));

  const { activeConnections } = sources;
  if (activeConnections) {
    new Gauge({
      name: 'isthmus_gateway_active_connections',
      help: 'Connections this gateway is splicing now.',
      labelNames: ['cluster'], registers,
      collect() {
        this.set({ cluster }, activeConnections());
      },
    });
  }
}
