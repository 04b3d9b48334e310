import { afterEach, describe, expect, test } from 'vitest';
import { ByteMeter } from '../core/byte-meter.js';
import { channels } from '../core/channels.js';
import { total } from '../model/latency-histogram.js';
import type { TrafficReport } from '../model/traffic-report.js';
import { TrafficReporter } from './traffic-reporter.js';

const origin = {};
const other = {};
let reporter: TrafficReporter | undefined;
afterEach(async () => { await reporter?.stop(); reporter = undefined; });

describe('TrafficReporter: a sidecar\'s requests and events, as deltas to its federation', () => {
  test('counts only its own origin\'s requests, per service and destination cluster, errors being 5xx or unanswered', async () => {
    const sent: TrafficReport[] = [];
    reporter = new TrafficReporter({ cluster: 'east', origins: [origin], admin: '127.0.0.1:15020', intervalMs: 60_000, send: async (r) => { sent.push(r); } });
    reporter.start();
    await reporter.flush(); // the report start() sends at once, empty
    sent.length = 0;
    const publish = (code: number | 'connect_error', cluster: string | undefined, from: object = origin, service: string | undefined = 'demo/ledger') =>
      channels.outboundRequest.publish({ origin: from, service, cluster, code, seconds: 0.004, grpc: false });
    publish(200, 'west');
    publish(503, 'west');
    publish('connect_error', undefined);
    publish(200, 'west', other);
    channels.outboundRequest.publish({ origin, service: undefined, cluster: undefined, code: 404, seconds: 0.001, grpc: false });
    await reporter.flush();
    expect(sent).toHaveLength(1);
    expect(sent[0]?.admin).toBe('127.0.0.1:15020');
    const routes = Object.fromEntries(sent[0]!.routes.map((r) => [`${r.service}@${r.to}`, [r.requests, r.errors, total(r.buckets)]]));
    expect(routes).toEqual({ 'ledger@west': [2, 1, 2], 'ledger@': [1, 1, 1] });
    // Nothing since: the first empty report is held back, the second goes.
    await reporter.flush();
    expect(sent).toHaveLength(1);
    await reporter.flush();
    expect(sent[1]?.routes).toEqual([]);
  });

  test('connections through fixed TCP listeners: opened, failed, closed, and bytes, an open connection\'s so far at each report', async () => {
    const sent: TrafficReport[] = [];
    reporter = new TrafficReporter({ cluster: 'east', origins: [origin], intervalMs: 60_000, send: async (r) => { sent.push(r); } });
    reporter.start();
    await reporter.flush();
    sent.length = 0;
    const service = 'demo/redis';
    channels.tcpOutbound.publish({ origin, service, cluster: 'west', result: 'connected' });
    channels.tcpOutbound.publish({ origin, service, cluster: undefined, result: 'no_endpoint', code: 'ISTHMUS_ERR_TCP_NO_ENDPOINT' });
    channels.tcpOutbound.publish({ origin: other, service, cluster: 'west', result: 'connected' });
    // The open connection's meter, as the listener keeps one: app → service is A, back is B.
    let moved = { fromA: 14, fromB: 7 };
    const meter = new ByteMeter(() => moved, (fromA, fromB) => channels.tcpOutboundBytes.publish({ origin, service, cluster: 'west', sentBytes: fromA, receivedBytes: fromB }));
    await reporter.flush();
    const rows = (r: TrafficReport | undefined) => Object.fromEntries((r?.tcp ?? []).map((t) => [`${t.service}@${t.to}`, [t.connections, t.failed, t.closed, t.sentBytes, t.receivedBytes]]));
    expect(rows(sent[0])).toEqual({ 'redis@west': [1, 0, 0, 14, 7], 'redis@': [1, 1, 0, 0, 0] });
    // Still open: the next report has only what moved since; then it closes.
    moved = { fromA: 28, fromB: 107 };
    await reporter.flush();
    expect(rows(sent[1])).toEqual({ 'redis@west': [0, 0, 0, 14, 100] });
    meter.close({ fromA: 30, fromB: 107 });
    channels.tcpOutboundClosed.publish({ origin, service, cluster: 'west', end: 'closed', seconds: 1, sentBytes: 30, receivedBytes: 107 });
    await reporter.flush();
    expect(rows(sent[2])).toEqual({ 'redis@west': [0, 0, 1, 2, 0] });
    // Nothing since: no TCP rows at all.
    await reporter.flush();
    await reporter.flush();
    expect(sent.slice(3).every((r) => r.tcp === undefined)).toBe(true);
  });

  test('a federation older than the tcp field refuses it: the rest of the report goes at once without it, TCP counts stay out for tcpRetryMs, then are tried again', async () => {
    const sent: TrafficReport[] = [];
    const errors: string[] = [];
    let federationKnowsTcp = false;
    let failOnce = false;
    reporter = new TrafficReporter({
      cluster: 'east', origins: [origin], intervalMs: 60_000, tcpRetryMs: 300, onError: (err) => errors.push(err.message),
      send: async (r) => {
        // What an older federation's POST /v1/reports answers (src/federation/api.ts, additionalProperties: false).
        if (failOnce) {
          failOnce = false;
          throw new Error('the federation answered 503 to POST /v1/reports: {}');
        }
        if (r.tcp && !federationKnowsTcp) throw new Error('the federation answered 400 to POST /v1/reports: {"error":{"code":"ISTHMUS_ERR_API_BAD_REQUEST","message":"a traffic report is {...}; /tcp: Unexpected property"}}');
        sent.push(r);
      },
    });
    reporter.start();
    await reporter.flush();
    sent.length = 0;
    const request = () => channels.outboundRequest.publish({ origin, service: 'demo/ledger', cluster: 'west', code: 200, seconds: 0.002, grpc: false });
    const connection = () => channels.tcpOutbound.publish({ origin, service: 'demo/redis', cluster: 'west', result: 'connected' });
    request();
    connection();
    await reporter.flush();
    expect(sent.map((r) => [r.routes.length, r.tcp?.length])).toEqual([[1, undefined]]);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/does not take TCP connection counts yet \(upgrade it/);
    // Within tcpRetryMs: TCP counts are dropped, not kept (no report is refused for them).
    connection();
    request();
    await reporter.flush();
    expect(sent.map((r) => [r.routes.length, r.tcp?.length])).toEqual([[1, undefined], [1, undefined]]);
    // The federation was upgraded meanwhile; after tcpRetryMs the field goes again.
    federationKnowsTcp = true;
    await new Promise((r) => setTimeout(r, 350));
    connection();
    await reporter.flush();
    expect(sent.at(-1)?.tcp?.map((t) => t.connections)).toEqual([1]);
    // Any other refusal keeps the whole report, TCP counts included, for the next try.
    failOnce = true;
    connection();
    await reporter.flush();
    connection();
    await reporter.flush();
    expect(sent.at(-1)?.tcp?.map((t) => t.connections)).toEqual([2]);
  });

  test('a gRPC call is counted when it ends: failed if its head was a 5xx or its grpc-status a server error (UNAVAILABLE, INTERNAL…), not for a client-side status', async () => {
    const sent: TrafficReport[] = [];
    reporter = new TrafficReporter({ cluster: 'east', origins: [origin], intervalMs: 60_000, send: async (r) => { sent.push(r); } });
    reporter.start();
    await reporter.flush();
    sent.length = 0;
    const call = (code: number | 'connect_error', grpcStatus: number | undefined) => {
      channels.outboundRequest.publish({ origin, service: 'demo/grpc-echo', cluster: 'west', code, seconds: 0.003, grpc: true });
      return () => channels.grpcOutboundEnded.publish({ origin, service: 'demo/grpc-echo', cluster: 'west', code, seconds: 0.003, grpcStatus });
    };
    // Three calls whose heads came, none ended yet: nothing is counted.
    const ends = [call(200, 0), call(200, 14), call(200, 5)];
    await reporter.flush();
    expect(sent.flatMap((r) => r.routes)).toEqual([]);
    for (const end of ends) end();
    call(503, 14)(); // the sidecar's own UNAVAILABLE, accounted as its 503
    call(200, undefined)(); // reset before a status: not counted as failed
    call(200, 13)();
    channels.grpcOutboundEnded.publish({ origin: other, service: 'demo/grpc-echo', cluster: 'west', code: 200, seconds: 0.003, grpcStatus: 14 });
    await reporter.flush();
    const route = sent.flatMap((r) => r.routes).find((r) => r.service === 'grpc-echo');
    expect([route?.requests, route?.errors, route ? total(route.buckets) : 0]).toEqual([6, 3, 6]);
  });

  test('start() sends the first report at once, however empty; then, while there is nothing to report, one goes only every `emptyEvery` intervals, and any with counts always', async () => {
    const sent: TrafficReport[] = [];
    reporter = new TrafficReporter({ cluster: 'east', origins: [origin], admin: '127.0.0.1:15020', intervalMs: 60_000, emptyEvery: 3, send: async (r) => { sent.push(r); } });
    reporter.start();
    // Not an interval (60 s) later: the federation lists the sidecar, with its admin address, from this report on.
    expect(sent).toEqual([{ version: 1, routes: [], events: [], admin: '127.0.0.1:15020' }]);
    await reporter.flush(); // that same send, until it settles
    const sentAfterFlushes = async (flushes: number, withRequest: boolean[] = []) => {
      const before = sent.length;
      for (let i = 0; i < flushes; i += 1) {
        if (withRequest[i]) channels.outboundRequest.publish({ origin, service: 'demo/hello', cluster: 'east', code: 200, seconds: 0.001, grpc: false });
        await reporter!.flush();
      }
      return sent.length - before;
    };
    expect(await sentAfterFlushes(6)).toBe(2);
    expect(await sentAfterFlushes(3, [true, true, true])).toBe(3);
    expect(await sentAfterFlushes(2)).toBe(0);
    expect(await sentAfterFlushes(1)).toBe(1);
  });

  test('a report the federation did not take goes out again with the next one', async () => {
    const sent: TrafficReport[] = [];
    let fail = true;
    reporter = new TrafficReporter({ cluster: 'east', origins: [origin], intervalMs: 60_000, send: async (r) => { if (fail) throw new Error('federation away'); sent.push(r); } });
    reporter.start();
    await reporter.flush(); // start()'s first report, not taken either
    channels.outboundRequest.publish({ origin, service: 'demo/hello', cluster: 'east', code: 200, seconds: 0.001, grpc: false });
    channels.balancerFailover.publish({ origin, namespace: 'demo', service: 'hello', from: 1, to: 2, fromClusters: ['east'], toClusters: ['west'], loads: [0, 0, 100, 0], at: 0 });
    await reporter.flush();
    channels.outboundRequest.publish({ origin, service: 'demo/hello', cluster: 'east', code: 200, seconds: 0.001, grpc: false });
    fail = false;
    await reporter.flush();
    expect(sent).toHaveLength(1);
    expect(sent[0]?.routes[0]?.requests).toBe(2);
    expect(sent[0]?.events.map((e) => e.kind)).toEqual(['failover']);
  });

  test('reports what the splits chose since the last report, by backend name, from the routing table\'s own counters', async () => {
    const sent: TrafficReport[] = [];
    // Stand-ins for one policy snapshot's objects: a service's routes and its two backends.
    let snapshot = { routes: { namespace: 'demo', service: 'hello' }, v1: { namespace: 'demo', service: 'hello-v1' }, v2: { namespace: 'demo', service: 'hello', subset: { name: 'v2' } } };
    const counts = new Map<object, number>([[snapshot.v1, 3], [snapshot.v2, 1]]);
    reporter = new TrafficReporter({
      cluster: 'east', origins: [origin], intervalMs: 60_000, send: async (r) => { sent.push(r); },
      splitCounts: (fn) => { for (const b of [snapshot.v1, snapshot.v2]) if (counts.has(b)) fn(snapshot.routes, b, counts.get(b)!); },
    });
    reporter.start();
    await reporter.flush();
    expect(sent[0]?.splits).toEqual([
      { namespace: 'demo', service: 'hello', backend: 'demo/hello-v1', requests: 3 },
      { namespace: 'demo', service: 'hello', backend: 'demo/hello (subset v2)', requests: 1 },
    ]);
    counts.set(snapshot.v1, 5);
    await reporter.flush();
    expect(sent[1]?.splits).toEqual([{ namespace: 'demo', service: 'hello', backend: 'demo/hello-v1', requests: 2 }]);
    // Nothing chosen since: no report (the first empty one is held back).
    await reporter.flush();
    expect(sent).toHaveLength(2);
    // A new policy snapshot: new objects, counters from zero.
    snapshot = { routes: { namespace: 'demo', service: 'hello' }, v1: { namespace: 'demo', service: 'hello-v1' }, v2: { namespace: 'demo', service: 'hello', subset: { name: 'v2' } } };
    counts.clear();
    counts.set(snapshot.v1, 1);
    await reporter.flush();
    expect(sent[2]?.splits).toEqual([{ namespace: 'demo', service: 'hello', backend: 'demo/hello-v1', requests: 1 }]);
  });
});
