import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, test } from 'vitest';
import { ByteMeter } from '../core/byte-meter.js';
import { channels } from '../core/channels.js';
import { createMetrics, type Metrics } from './metrics.js';
import { callerLabels, ChildrenByKeys } from './sidecar-metrics.js';
import { lagSampleMs } from './event-loop-lag.js';

const sample = async (metrics: Metrics, name: string): Promise<string[]> =>
  (await metrics.exposition()).body.split('\n').filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `));

describe('createMetrics', () => {
  test('a sidecar counts only the events of the components it observes', async () => {
    const mine = {};
    const other = {};
    const metrics = createMetrics('sidecar', { cluster: 'east' }, { origins: [mine] });
    channels.outboundRequest.publish({ origin: mine, service: 'demo/ledger', cluster: 'west', code: 200, seconds: 0.02, grpc: false });
    channels.outboundRequest.publish({ origin: other, service: 'demo/ledger', cluster: 'west', code: 200, seconds: 0.02, grpc: false });
    channels.outboundRequest.publish({ origin: mine, service: undefined, cluster: undefined, code: 503, seconds: 0, grpc: false });
    channels.outboundRequest.publish({ origin: mine, service: 'demo/ledger', cluster: 'west', code: 'connect_error', seconds: 1, grpc: false });
    expect(await sample(metrics, 'isthmus_requests_total')).toEqual([
      'isthmus_requests_total{source_cluster="east",destination_cluster="west",destination_service="demo/ledger",code="200"} 1',
      'isthmus_requests_total{source_cluster="east",destination_cluster="none",destination_service="unknown",code="503"} 1',
      'isthmus_requests_total{source_cluster="east",destination_cluster="west",destination_service="demo/ledger",code="connect_error"} 1',
    ]);
    metrics.close();
    channels.outboundRequest.publish({ origin: mine, service: 'demo/ledger', cluster: 'west', code: 200, seconds: 0.02, grpc: false });
    expect((await sample(metrics, 'isthmus_requests_total'))[0]).toMatch(/ 1$/);
  });

  test('a sidecar counts gRPC calls when they end, by the grpc-status they ended with, both ways', async () => {
    const mine = {};
    const metrics = createMetrics('sidecar', { cluster: 'west' }, { origins: [mine], service: 'demo/grpc-echo' });
    const ended = (grpcStatus: number | undefined) => channels.grpcOutboundEnded.publish({ origin: mine, service: 'demo/ledger', cluster: 'east', code: 200, seconds: 0.01, grpcStatus });
    ended(0);
    ended(0);
    ended(14);
    ended(undefined);
    channels.grpcOutboundEnded.publish({ origin: {}, service: 'demo/ledger', cluster: 'east', code: 200, seconds: 0.01, grpcStatus: 13 });
    expect(await sample(metrics, 'isthmus_grpc_requests_total')).toEqual([
      'isthmus_grpc_requests_total{source_cluster="west",destination_cluster="east",destination_service="demo/ledger",grpc_status="0"} 2',
      'isthmus_grpc_requests_total{source_cluster="west",destination_cluster="east",destination_service="demo/ledger",grpc_status="14"} 1',
      'isthmus_grpc_requests_total{source_cluster="west",destination_cluster="east",destination_service="demo/ledger",grpc_status="none"} 1',
    ]);
    channels.grpcInboundEnded.publish({ origin: mine, peer: 'spiffe://t.test/ns/demo/sa/client', grpcStatus: 12 });
    channels.grpcInboundEnded.publish({ origin: mine, peer: undefined, grpcStatus: 0 });
    expect(await sample(metrics, 'isthmus_inbound_grpc_requests_total')).toEqual([
      'isthmus_inbound_grpc_requests_total{destination_cluster="west",destination_service="demo/grpc-echo",source_namespace="demo",source_service_account="client",grpc_status="12"} 1',
      'isthmus_inbound_grpc_requests_total{destination_cluster="west",destination_service="demo/grpc-echo",source_namespace="unauthenticated",source_service_account="unauthenticated",grpc_status="0"} 1',
    ]);
    metrics.close();
  });

  test('the gateway counts refusals by reason and reads active connections on scrape', async () => {
    const gateway = {};
    let active = 3;
    const metrics = createMetrics('gateway', { cluster: 'west' }, { origins: [gateway], activeConnections: () => active });
    channels.gatewayRefused.publish({ origin: gateway, reason: 'sni-not-mesh', detail: 'x', remote: '10.0.0.1' });
    channels.gatewayRouted.publish({ origin: gateway, service: 'demo/ledger', endpoint: '10.0.0.2:80', remote: '10.0.0.1' });
    active = 2;
    expect(await sample(metrics, 'isthmus_gateway_refusals_total')).toEqual(['isthmus_gateway_refusals_total{cluster="west",reason="sni-not-mesh"} 1']);
    expect(await sample(metrics, 'isthmus_gateway_connections_total')).toEqual(['isthmus_gateway_connections_total{cluster="west",destination_service="demo/ledger"} 1']);
    expect(await sample(metrics, 'isthmus_gateway_active_connections')).toEqual(['isthmus_gateway_active_connections{cluster="west"} 2']);
    // A routed connection still open: its bytes so far are counted at the scrape, as the gateway's meter reports them.
    const sofar = { fromA: 1200, fromB: 5000 };
    const meter = new ByteMeter(() => sofar, (fromCaller, fromEndpoint) => channels.gatewayBytes.publish({ origin: gateway, service: 'demo/ledger', fromCaller, fromEndpoint }));
    const bytes = (caller: number, endpoint: number) => [
      `isthmus_gateway_bytes_total{cluster="west",destination_service="demo/ledger",direction="from_caller"} ${caller}`,
      `isthmus_gateway_bytes_total{cluster="west",destination_service="demo/ledger",direction="from_endpoint"} ${endpoint}`,
    ];
    expect(await sample(metrics, 'isthmus_gateway_bytes_total')).toEqual(bytes(1200, 5000));
    sofar.fromB = 5100;
    expect(await sample(metrics, 'isthmus_gateway_bytes_total')).toEqual(bytes(1200, 5100));
    meter.close({ fromA: 1250, fromB: 5100 });
    channels.gatewayClosed.publish({ origin: gateway, service: 'demo/ledger', end: 'closed', fromCaller: 1250, fromEndpoint: 5100 });
    channels.gatewayBytes.publish({ origin: gateway, service: 'demo/ledger', fromCaller: 300, fromEndpoint: 0 });
    channels.gatewayClosed.publish({ origin: gateway, service: 'demo/ledger', end: 'idle', fromCaller: 300, fromEndpoint: 0 });
    channels.gatewayBytes.publish({ origin: {}, service: 'demo/ledger', fromCaller: 1, fromEndpoint: 1 });
    channels.gatewayClosed.publish({ origin: {}, service: 'demo/ledger', end: 'error', fromCaller: 1, fromEndpoint: 1 });
    expect(await sample(metrics, 'isthmus_gateway_closed_connections_total')).toEqual([
      'isthmus_gateway_closed_connections_total{cluster="west",destination_service="demo/ledger",end="closed"} 1',
      'isthmus_gateway_closed_connections_total{cluster="west",destination_service="demo/ledger",end="idle"} 1',
    ]);
    // Each byte once: what was counted while open is not counted again at the end; another gateway's not at all.
    expect(await sample(metrics, 'isthmus_gateway_bytes_total')).toEqual(bytes(1550, 5100));
    metrics.close();
  });

  test('federation sync lag: other clusters of the catalog only, in seconds on the local clock', async () => {
    const metrics = createMetrics('federation', { cluster: 'east' }, {
      now: () => 10_000,
      clusterSyncs: () => [{ cluster: 'east', seenAt: 0 }, { cluster: 'gone', seenAt: 0 }, { cluster: 'west', seenAt: 7_500 }],
      catalog: () => ({ services: [{}, {}], clusters: [{ name: 'east', alive: true }, { name: 'west', alive: false }] }),
    });
    expect(await sample(metrics, 'isthmus_federation_sync_lag_seconds')).toEqual(['isthmus_federation_sync_lag_seconds{cluster="east",remote_cluster="west"} 2.5']);
    expect(await sample(metrics, 'isthmus_catalog_clusters_alive')).toEqual(['isthmus_catalog_clusters_alive{cluster="east"} 1']);
    expect(await sample(metrics, 'isthmus_catalog_services')).toEqual(['isthmus_catalog_services{cluster="east"} 2']);
  });

  test('a sidecar\'s TCP metrics: connections by result, open connections, bytes each way and durations by end, both sides', async () => {
    const routing = {};
    const tcpInbound = {};
    const metrics = createMetrics('sidecar', { cluster: 'east' }, { origins: [routing, tcpInbound], service: 'demo/redis' });
    const client = 'spiffe://dev.test/ns/demo/sa/client';
    channels.tcpOutbound.publish({ origin: routing, service: 'demo/redis', cluster: 'west', result: 'connected' });
    channels.tcpOutbound.publish({ origin: routing, service: 'demo/redis', cluster: 'west', result: 'connected' });
    channels.tcpOutbound.publish({ origin: routing, service: 'demo/redis', cluster: 'west', result: 'unreachable', code: 'ISTHMUS_ERR_TCP_UPSTREAM_UNREACHABLE' });
    channels.tcpOutboundBytes.publish({ origin: routing, service: 'demo/redis', cluster: 'west', sentBytes: 40, receivedBytes: 5 });
    channels.tcpOutboundBytes.publish({ origin: routing, service: 'demo/redis', cluster: 'west', sentBytes: 9, receivedBytes: 0 });
    channels.tcpOutboundClosed.publish({ origin: routing, service: 'demo/redis', cluster: 'west', end: 'closed', sentBytes: 49, receivedBytes: 5, seconds: 0.02 });
    channels.tcpInbound.publish({ origin: tcpInbound, peer: client, result: 'accepted' });
    channels.tcpInbound.publish({ origin: tcpInbound, peer: undefined, result: 'refused', code: 'ISTHMUS_ERR_TCP_CALLER_REFUSED' });
    channels.tcpInboundBytes.publish({ origin: tcpInbound, peer: client, sentBytes: 22, receivedBytes: 27 });
    channels.tcpInboundClosed.publish({ origin: tcpInbound, peer: client, end: 'idle', sentBytes: 22, receivedBytes: 27, seconds: 3600 });
    const route = 'source_cluster="east",destination_cluster="west",destination_service="demo/redis"';
    expect(await sample(metrics, 'isthmus_tcp_connections_total')).toEqual([
      `isthmus_tcp_connections_total{${route},result="connected"} 2`,
      `isthmus_tcp_connections_total{${route},result="unreachable"} 1`,
    ]);
    expect(await sample(metrics, 'isthmus_tcp_open_connections')).toEqual([`isthmus_tcp_open_connections{${route}} 1`]);
    expect(await sample(metrics, 'isthmus_tcp_bytes_total')).toEqual([
      `isthmus_tcp_bytes_total{${route},direction="sent"} 49`,
      `isthmus_tcp_bytes_total{${route},direction="received"} 5`,
    ]);
    expect(await sample(metrics, 'isthmus_tcp_connection_duration_seconds_count')).toEqual([`isthmus_tcp_connection_duration_seconds_count{${route},end="closed"} 1`]);
    const caller = 'destination_cluster="east",destination_service="demo/redis",source_namespace="demo",source_service_account="client"';
    expect(await sample(metrics, 'isthmus_inbound_tcp_connections_total')).toEqual([
      `isthmus_inbound_tcp_connections_total{${caller},result="accepted"} 1`,
      'isthmus_inbound_tcp_connections_total{destination_cluster="east",destination_service="demo/redis",source_namespace="unauthenticated",source_service_account="unauthenticated",result="refused"} 1',
    ]);
    expect(await sample(metrics, 'isthmus_inbound_tcp_open_connections')).toEqual([`isthmus_inbound_tcp_open_connections{${caller}} 0`]);
    expect(await sample(metrics, 'isthmus_inbound_tcp_bytes_total')).toEqual([
      `isthmus_inbound_tcp_bytes_total{${caller},direction="received"} 27`,
      `isthmus_inbound_tcp_bytes_total{${caller},direction="sent"} 22`,
    ]);
    expect(await sample(metrics, 'isthmus_inbound_tcp_connection_duration_seconds_count')).toEqual([
      'isthmus_inbound_tcp_connection_duration_seconds_count{destination_cluster="east",destination_service="demo/redis",end="idle"} 1',
    ]);
    metrics.close();
  });

  test('every garbage collection is observed, not only the first of each batch the observer gets', async () => {
    const metrics = createMetrics('federation', { cluster: 'gc' });
    const majors = async () => Number((await sample(metrics, 'isthmus_nodejs_gc_duration_seconds_count')).find((l) => l.includes('kind="major"'))?.split(' ').pop() ?? 0);
    const before = await majors();
    setFlagsFromString('--expose-gc');
    const collect = runInNewContext('gc') as () => void;
    // Five full collections in one go: the performance observer hands them over in one batch.
    for (let i = 0; i < 5; i += 1) collect();
    // Delivered after this tick; a busy machine may take a while.
    for (let waited = 0; waited < 5000 && await majors() - before < 5; waited += 50) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await majors() - before).toBeGreaterThanOrEqual(5);
    metrics.close();
  });

  test('every registry has the process metrics, prefixed', async () => {
    const a = createMetrics('federation', { cluster: 'a' });
    const b = createMetrics('federation', { cluster: 'b' });
    expect(await sample(a, 'isthmus_process_cpu_seconds_total')).toHaveLength(1);
    expect(await sample(b, 'isthmus_process_cpu_seconds_total')).toHaveLength(1);
  });

  test('the event loop lag is how late a sample came, not the time between samples', async () => {
    const metrics = createMetrics('sidecar', { cluster: 'east' });
    const lag = async (figure: string) => Number((await sample(metrics, `isthmus_nodejs_eventloop_lag_${figure}_seconds`))[0]?.split(' ').pop());
    // Two samples of an idle loop: about a millisecond each (monitorEventLoopDelay read 1.00 s).
    await new Promise((resolve) => setTimeout(resolve, 2 * lagSampleMs + 300));
    const idle = await lag('p50');
    expect(idle).toBeGreaterThan(0);
    expect(idle).toBeLessThan(0.5);
    // A scrape with no sample since the last one keeps the figures (prom-client read 9.2e9 s).
    expect(await lag('min')).toBeLessThan(0.5);
    // A stall longer than the interval holds up the sample due inside it by at least 300 ms.
    const until = performance.now() + lagSampleMs + 300;
    while (performance.now() < until) { /* the stall */ }
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await lag('max')).toBeGreaterThanOrEqual(0.3);
    expect(await sample(metrics, 'isthmus_nodejs_eventloop_lag_seconds')).toHaveLength(1);
    metrics.close();
  });
});

test('inbound callers are labelled by SPIFFE namespace and service account, never the raw ID', () => {
  expect(callerLabels('spiffe://dev.test/ns/demo/sa/client')).toEqual({ source_namespace: 'demo', source_service_account: 'client' });
  expect(callerLabels('spiffe://dev.test/cluster/east/gateway')).toEqual({ source_namespace: 'other', source_service_account: 'other' });
  expect(callerLabels('not an id')).toEqual({ source_namespace: 'other', source_service_account: 'other' });
  expect(callerLabels(undefined)).toEqual({ source_namespace: 'unauthenticated', source_service_account: 'unauthenticated' });
});

test('metric children by three keys: found by the same keys, kept apart by any one of them, and all dropped past the cap', () => {
  const kept = new ChildrenByKeys<string>();
  expect(kept.set('west', 'demo/ledger', 200, 'a')).toBe('a');
  kept.set('west', 'demo/ledger', 503, 'b');
  kept.set('east', 'demo/ledger', 200, 'c');
  kept.set('west', 'demo/hello', '200', 'd');
  expect([kept.get('west', 'demo/ledger', 200), kept.get('west', 'demo/ledger', 503), kept.get('east', 'demo/ledger', 200), kept.get('west', 'demo/hello', '200')]).toEqual(['a', 'b', 'c', 'd']);
  expect(kept.get('west', 'demo/hello', 200)).toBeUndefined();
  for (let i = 0; i < 10_000; i += 1) kept.set('x', String(i), 0, 'filler');
  expect(kept.get('west', 'demo/ledger', 200)).toBeUndefined();
  expect(kept.get('x', '9999', 0)).toBe('filler');
});
