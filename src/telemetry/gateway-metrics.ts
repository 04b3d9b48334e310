import { Counter, Gauge, type Registry } from './prom.js';
import { reportOpenMeters } from '../core/byte-meter.js';
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

  const closed = new Counter({
    name: 'isthmus_gateway_closed_connections_total',
    help: 'Routed connections that ended, by service and how: closed (both sides finished), idle (no byte either way for the idle limit), error (a reset or error on either side, or the gateway stopping).',
    labelNames: ['cluster', 'destination_service', 'end'], registers,
  });
  listen(channels.gatewayClosed, (m) => closed.inc({ cluster, destination_service: m.service, end: m.end }));
  const bytes = new Counter({
    name: 'isthmus_gateway_bytes_total',
    help: 'Bytes carried by routed connections, by service and direction (from_caller, the ClientHello included; from_endpoint). Counted as they move: an open connection\'s bytes so far at each scrape.',
    labelNames: ['cluster', 'destination_service', 'direction'], registers,
    collect: reportOpenMeters,
  });
  listen(channels.gatewayBytes, (m) => {
    bytes.inc({ cluster, destination_service: m.service, direction: 'from_caller' }, m.fromCaller);
    bytes.inc({ cluster, destination_service: m.service, direction: 'from_endpoint' }, m.fromEndpoint);
  });

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
