import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { channels } from '../core/channels.js';
import type { Listen } from './shared.js';

/** A TCP connection lives from milliseconds (a health check, one redis-cli command) to hours (a pool). */
export const connectionBuckets = [0.01, 0.1, 1, 10, 60, 300, 1800, 3600, 14_400];

type CallerLabels = (peer: string | undefined) => { source_namespace: string; source_service_account: string };

/**
 * A sidecar's TCP service metrics (docs/metrics.md): connections, open connections, bytes each
 * way and connection durations, for the app's connections through fixed TCP listeners
 * (`isthmus_tcp_*`) and for callers through the TCP inbound (`isthmus_inbound_tcp_*`). Failures
 * are the `result` label, one value per error code (no_endpoint: ISTHMUS_ERR_TCP_NO_ENDPOINT,
 * unreachable: _UPSTREAM_UNREACHABLE, refused: _CALLER_REFUSED, app_unreachable: _APP_UNREACHABLE).
 * `direction` is from the local workload's side: `sent` by it, `received` by it.
 */
export function tcpMetrics(registry: Registry, cluster: string, destination: { destination_cluster: string; destination_service: string }, callerLabels: CallerLabels, listen: Listen): void {
  const registers = [registry];
  const route = ['source_cluster', 'destination_cluster', 'destination_service'] as const;
  const connections = new Counter({
    name: 'isthmus_tcp_connections_total',
    help: 'Connections the app opened to a TCP fixed listener, by where they were spliced and the result (connected, no_endpoint, unreachable).',
    labelNames: [...route, 'result'], registers,
  });
  const open = new Gauge({
    name: 'isthmus_tcp_open_connections',
    help: 'Connections from the app through a TCP fixed listener that are spliced now.',
    labelNames: route, registers,
  });
  const bytes = new Counter({
    name: 'isthmus_tcp_bytes_total',
    help: 'Bytes carried through TCP fixed listeners: sent by the app to the service, or received by the app from it (counted when a connection closes).',
    labelNames: [...route, 'direction'], registers,
  });
  const duration = new Histogram({
    name: 'isthmus_tcp_connection_duration_seconds',
    help: 'How long connections through TCP fixed listeners stayed spliced, by how they ended (closed, idle, error).',
    labelNames: [...route, 'end'], buckets: connectionBuckets, registers,
  });
  listen(channels.tcpOutbound, (m) => {
    const labels = { source_cluster: cluster, destination_cluster: m.cluster ?? 'none', destination_service: m.service };
    connections.inc({ ...labels, result: m.result });
    if (m.result === 'connected') open.inc(labels);
  });
  listen(channels.tcpOutboundClosed, (m) => {
    const labels = { source_cluster: cluster, destination_cluster: m.cluster, destination_service: m.service };
    open.dec(labels);
    bytes.inc({ ...labels, direction: 'sent' }, m.sentBytes);
    bytes.inc({ ...labels, direction: 'received' }, m.receivedBytes);
    duration.observe({ ...labels, end: m.end }, m.seconds);
  });

  const caller = ['destination_cluster', 'destination_service', 'source_namespace', 'source_service_account'] as const;
  const inbound = new Counter({
    name: 'isthmus_inbound_tcp_connections_total',
    help: 'Connections to this workload\'s TCP inbound listener, by the caller\'s SPIFFE namespace and service account and the result (accepted, refused, app_unreachable).',
    labelNames: [...caller, 'result'], registers,
  });
  const inboundOpen = new Gauge({
    name: 'isthmus_inbound_tcp_open_connections',
    help: 'Callers spliced to this workload\'s app through its TCP inbound now.',
    labelNames: caller, registers,
  });
  const inboundBytes = new Counter({
    name: 'isthmus_inbound_tcp_bytes_total',
    help: 'Bytes carried through this workload\'s TCP inbound: received by the app from the caller, or sent by the app to it (counted when a connection closes).',
    labelNames: [...caller, 'direction'], registers,
  });
  const inboundDuration = new Histogram({
    name: 'isthmus_inbound_tcp_connection_duration_seconds',
    help: 'How long callers stayed spliced to this workload\'s app through its TCP inbound, by how they ended (closed, idle, error).',
    labelNames: ['destination_cluster', 'destination_service', 'end'], buckets: connectionBuckets, registers,
  });
  listen(channels.tcpInbound, (m) => {
    const labels = { ...destination, ...callerLabels(m.peer) };
    inbound.inc({ ...labels, result: m.result });
    if (m.result === 'accepted') inboundOpen.inc(labels);
  });
  listen(channels.tcpInboundClosed, (m) => {
    const labels = { ...destination, ...callerLabels(m.peer) };
    inboundOpen.dec(labels);
    inboundBytes.inc({ ...labels, direction: 'received' }, m.receivedBytes);
    inboundBytes.inc({ ...labels, direction: 'sent' }, m.sentBytes);
    inboundDuration.observe({ ...destination, end: m.end }, m.seconds);
  });
}
