import { Counter, Gauge, Histogram, type Registry } from './prom.js';
import { reportOpenMeters } from '../core/byte-meter.js';
import { channels } from '../core/channels.js';
import type { Listen } from './shared.js';

/** A TCP connection lives from milliseconds (a health check, one redis-cli command) to hours (a pool). */
export const connectionBuckets = [0.01, 0.1, 1, 10, 60, 300, 1800, 3600, 14_400];

type CallerLabels = (peer: string | undefined) => { source_namespace: string; source_service_account: string };

/** What each side says about its connections in its metrics' help. */
interface Side { prefix: string; connections: string; open: string; bytes: string; duration: string }

const listenerSide: Side = {
  prefix: 'isthmus_tcp',
  connections: 'Connections the app opened to a TCP fixed listener, by where they were spliced and the result (connected, no_endpoint, unreachable).',
  open: 'Connections from the app through a TCP fixed listener that are spliced now.',
  bytes: 'Bytes carried through TCP fixed listeners: sent by the app to the service, or received by the app from it (counted as they move: an open connection\'s bytes so far at each scrape).',
  duration: 'How long connections through TCP fixed listeners stayed spliced, by how they ended (closed, idle, error).',
};

const inboundSide: Side = {
  prefix: 'isthmus_inbound_tcp',
  connections: 'Connections to this workload\'s TCP inbound listener, by the caller\'s SPIFFE namespace and service account and the result (accepted, refused, app_unreachable).',
  open: 'Callers spliced to this workload\'s app through its TCP inbound now.',
  bytes: 'Bytes carried through this workload\'s TCP inbound: received by the app from the caller, or sent by the app to it (counted as they move: an open connection\'s bytes so far at each scrape).',
  duration: 'How long callers stayed spliced to this workload\'s app through its TCP inbound, by how they ended (closed, idle, error).',
};

/** The four metrics of one side: connections by result, open now, bytes by direction, durations by end. */
function family(registry: Registry, side: Side, labelNames: readonly string[], durationLabels: readonly string[]) {
  const registers = [registry];
  return {
    connections: new Counter({ name: `${side.prefix}_connections_total`, help: side.connections, labelNames: [...labelNames, 'result'], registers }),
    open: new Gauge({ name: `${side.prefix}_open_connections`, help: side.open, labelNames, registers }),
    // A scrape first has every open connection report its bytes so far (core/byte-meter.ts).
    bytes: new Counter({ name: `${side.prefix}_bytes_total`, help: side.bytes, labelNames: [...labelNames, 'direction'], registers, collect: reportOpenMeters }),
    duration: new Histogram({ name: `${side.prefix}_connection_duration_seconds`, help: side.duration, labelNames: [...durationLabels, 'end'], buckets: connectionBuckets, registers }),
  };
}

/**
 * A sidecar's TCP service metrics (docs/metrics.md): connections, open connections, bytes each
 * way and connection durations, for the app's connections through fixed TCP listeners
 * (`isthmus_tcp_*`) and for callers through the TCP inbound (`isthmus_inbound_tcp_*`), and the
 * bytes of WebSocket and CONNECT tunnels at both ends (`isthmus_tunnel_bytes_total`,
 * `isthmus_inbound_tunnel_bytes_total`). Failures
 * are the `result` label, one value per error code (no_endpoint: ISTHMUS_ERR_TCP_NO_ENDPOINT,
 * unreachable: _UPSTREAM_UNREACHABLE, refused: _CALLER_REFUSED, app_unreachable: _APP_UNREACHABLE).
 * `direction` is from the local workload's side: `sent` by it, `received` by it.
 */
export function tcpMetrics(registry: Registry, cluster: string, destination: { destination_cluster: string; destination_service: string }, callerLabels: CallerLabels, listen: Listen): void {
  const route = ['source_cluster', 'destination_cluster', 'destination_service'];
  const client = family(registry, listenerSide, route, route);
  listen(channels.tcpOutbound, (m) => {
    const labels = { source_cluster: cluster, destination_cluster: m.cluster ?? 'none', destination_service: m.service };
    client.connections.inc({ ...labels, result: m.result });
    if (m.result === 'connected') client.open.inc(labels);
  });
  listen(channels.tcpOutboundBytes, (m) => {
    const labels = { source_cluster: cluster, destination_cluster: m.cluster, destination_service: m.service };
    client.bytes.inc({ ...labels, direction: 'sent' }, m.sentBytes);
    client.bytes.inc({ ...labels, direction: 'received' }, m.receivedBytes);
  });
  listen(channels.tcpOutboundClosed, (m) => {
    const labels = { source_cluster: cluster, destination_cluster: m.cluster, destination_service: m.service };
    client.open.dec(labels);
    client.duration.observe({ ...labels, end: m.end }, m.seconds);
  });

  const inbound = family(registry, inboundSide, ['destination_cluster', 'destination_service', 'source_namespace', 'source_service_account'], ['destination_cluster', 'destination_service']);
  listen(channels.tcpInbound, (m) => {
    const labels = { ...destination, ...callerLabels(m.peer) };
    inbound.connections.inc({ ...labels, result: m.result });
    if (m.result === 'accepted') inbound.open.inc(labels);
  });
  listen(channels.tcpInboundBytes, (m) => {
    const labels = { ...destination, ...callerLabels(m.peer) };
    inbound.bytes.inc({ ...labels, direction: 'received' }, m.receivedBytes);
    inbound.bytes.inc({ ...labels, direction: 'sent' }, m.sentBytes);
  });
  listen(channels.tcpInboundClosed, (m) => {
    const labels = { ...destination, ...callerLabels(m.peer) };
    inbound.open.dec(labels);
    inbound.duration.observe({ ...destination, end: m.end }, m.seconds);
  });

  // WebSocket and CONNECT tunnels: their requests are counted with the others (the 101 or 200),
  // their bytes after the opening head here, both sides, as they move.
  const tunnel = new Counter({
    name: 'isthmus_tunnel_bytes_total',
    help: 'Bytes carried by WebSocket and CONNECT tunnels the app opened through this sidecar, after the opening request\'s head (the answer\'s head included): sent by the app, or received by it (counted as they move: an open tunnel\'s bytes so far at each scrape).',
    labelNames: [...route, 'direction'], registers: [registry], collect: reportOpenMeters,
  });
  listen(channels.tunnelOutboundBytes, (m) => {
    const labels = { source_cluster: cluster, destination_cluster: m.cluster ?? 'none', destination_service: m.service };
    tunnel.inc({ ...labels, direction: 'sent' }, m.sentBytes);
    tunnel.inc({ ...labels, direction: 'received' }, m.receivedBytes);
  });
  const inboundTunnel = new Counter({
    name: 'isthmus_inbound_tunnel_bytes_total',
    help: 'Bytes carried by WebSocket and CONNECT tunnels callers opened to this workload, after the opening request\'s head: received by the app from the caller, or sent by the app to it (counted as they move).',
    labelNames: ['destination_cluster', 'destination_service', 'source_namespace', 'source_service_account', 'direction'], registers: [registry], collect: reportOpenMeters,
  });
  listen(channels.tunnelInboundBytes, (m) => {
    const labels = { ...destination, ...callerLabels(m.peer) };
    inboundTunnel.inc({ ...labels, direction: 'received' }, m.receivedBytes);
    inboundTunnel.inc({ ...labels, direction: 'sent' }, m.sentBytes);
  });
}
