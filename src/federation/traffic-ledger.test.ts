import { describe, expect, test } from 'vitest';
import { keys } from '../core/keys.js';
import { EventsRecordSchema, isRecord, TrafficRecordSchema, type EventsRecord, type TrafficRecord } from '../model/records.js';
import { failoverEvent, ejectionEvent } from '../model/traffic-report.js';
import { recentEvents } from '../dashboard/recent-events.js';
import { TrafficLedger } from './traffic-ledger.js';

const caller = { identity: 'spiffe://t/ns/demo/sa/client', namespace: 'demo', serviceAccount: 'client' };
const route = (service: string, to: string, requests: number, errors = 0) => ({ namespace: 'demo', service, to, requests, errors, buckets: [0, requests] });

describe('TrafficLedger: the federation side of sidecar reports', () => {
  test('reports add up into counters that only grow, published as a valid /traffic/<cluster> record', () => {
    const ledger = new TrafficLedger('east');
    expect(ledger.records().size).toBe(0);
    ledger.accept({ version: 1, routes: [route('ledger', 'west', 3, 1)], events: [] }, caller);
    ledger.accept({ version: 1, routes: [route('ledger', 'west', 2), route('hello', 'east', 5)], events: [] }, caller);
    const traffic = ledger.records().get(keys.trafficOf('east')) as TrafficRecord;
    expect(isRecord(TrafficRecordSchema, traffic)).toBe(true);
    expect(traffic.epoch).toBe(ledger.epoch);
    expect(traffic.routes.map((r) => [r.service, r.to, r.requests, r.errors, r.buckets])).toEqual([
      ['hello', 'east', 5, 0, [0, 5]],
      ['ledger', 'west', 5, 1, [0, 5]],
    ]);
  });

  test('split counts add up per split and backend, and ride in the same record', () => {
    const ledger = new TrafficLedger('east');
    const split = (backend: string, requests: number) => ({ namespace: 'demo', service: 'hello', backend, requests });
    ledger.accept({ version: 1, routes: [], splits: [split('demo/hello-v1', 9), split('demo/hello-v2', 1)], events: [] }, caller);
    ledger.accept({ version: 1, routes: [], splits: [split('demo/hello-v1', 3), split('demo/hello-v2', 0)], events: [] }, caller);
    const traffic = ledger.records().get(keys.trafficOf('east')) as TrafficRecord;
    expect(isRecord(TrafficRecordSchema, traffic)).toBe(true);
    expect(traffic.splits).toEqual([split('demo/hello-v1', 12), split('demo/hello-v2', 1)]);
  });

  test('TCP connection counts add up per service and destination cluster, in the same record; rows that say nothing are left out', () => {
    const ledger = new TrafficLedger('east');
    const tcp = (to: string, connections: number, failed: number, closed: number, sentBytes: number, receivedBytes: number) => ({ namespace: 'demo', service: 'redis', to, connections, failed, closed, sentBytes, receivedBytes });
    ledger.accept({ version: 1, routes: [], tcp: [tcp('west', 3, 0, 1, 140, 70), tcp('', 1, 1, 0, 0, 0)], events: [] }, caller);
    // An open connection's bytes with no connection event; and an empty row.
    ledger.accept({ version: 1, routes: [], tcp: [tcp('west', 0, 0, 0, 14, 7), tcp('north', 0, 0, 0, 0, 0)], events: [] }, caller);
    const traffic = ledger.records().get(keys.trafficOf('east')) as TrafficRecord;
    expect(isRecord(TrafficRecordSchema, traffic)).toBe(true);
    expect(traffic.routes).toEqual([]);
    expect(traffic.tcp).toEqual([tcp('', 1, 1, 0, 0, 0), tcp('west', 3, 0, 1, 154, 77)]);
  });

  test('the same failover from fifty sidecars is one event with a count; others stay separate', () => {
    const ledger = new TrafficLedger('east');
    const moved = failoverEvent({ namespace: 'demo', service: 'hello', from: 1, to: 2, fromClusters: ['east'], toClusters: ['west'], at: Date.parse('2026-01-01T00:00:00Z') });
    for (let i = 0; i < 50; i += 1) ledger.accept({ version: 1, routes: [], events: [moved] }, caller, Date.parse('2026-01-01T00:00:01Z'));
    ledger.addEvent(ejectionEvent({ address: '127.0.2.1:15443', reason: 'connect-error', service: 'demo/ledger', cluster: 'west', at: Date.parse('2026-01-01T00:00:02Z') }, 'east'));
    const events = ledger.records().get(keys.eventsOf('east')) as EventsRecord;
    expect(isRecord(EventsRecordSchema, events)).toBe(true);
    expect(events.events.map((e) => [e.kind, e.count ?? 1])).toEqual([['failover', 50], ['ejection', 1]]);
    expect(events.events[0]?.summary).toBe('demo/hello: traffic moved from east (P1, same cluster) to west (P2, same region)');
    expect(events.events[1]?.summary).toBe("ejected west's gateway 127.0.2.1:15443 for demo/ledger after connections refused or timed out");
  });

  test('keeps the 50 most recent events', () => {
    const ledger = new TrafficLedger('east');
    for (let i = 0; i < 60; i += 1) ledger.addEvent({ at: new Date(Date.UTC(2026, 0, 1, 0, i)).toISOString(), kind: 'cluster-down', summary: `cluster c${i} stopped` });
    const events = (ledger.records().get(keys.eventsOf('east')) as EventsRecord).events;
    expect(events).toHaveLength(50);
    expect(events[0]?.summary).toBe('cluster c10 stopped');
  });

  test('lists the sidecars that reported in the last 30 s, newest first, by admin address', () => {
    const ledger = new TrafficLedger('east');
    ledger.accept({ version: 1, admin: '127.0.0.1:15020', routes: [], events: [] }, caller, 1000);
    ledger.accept({ version: 1, admin: '127.0.0.1:19280', routes: [], events: [] }, { identity: 'spiffe://t/ns/demo/sa/hello', namespace: 'demo', serviceAccount: 'hello' }, 20_000);
    expect(ledger.reportingSidecars(25_000).map((s) => s.admin)).toEqual(['127.0.0.1:19280', '127.0.0.1:15020']);
    expect(ledger.reportingSidecars(40_000).map((s) => s.admin)).toEqual(['127.0.0.1:19280']);
  });
});

describe('recentEvents: every cluster\'s events, merged for the page', () => {
  test('newest first; a change several federations noticed shows once with its observers', () => {
    const at = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s)).toISOString();
    const down = { kind: 'cluster-down' as const, summary: 'cluster west stopped heartbeating' };
    const entries: [string, unknown][] = [
      [keys.eventsOf('east'), { version: 1, cluster: 'east', events: [{ id: 'a-1', at: at(1), ...down }, { id: 'a-2', at: at(30), kind: 'failover', service: 'demo/hello', summary: 'moved' }] }],
      [keys.eventsOf('north'), { version: 1, cluster: 'north', events: [{ id: 'b-1', at: at(3), ...down }] }],
      [keys.eventsOf('bad'), { version: 1, cluster: 'bad', events: 'not a list' }],
    ];
    const shown = recentEvents(entries);
    expect(shown.map((e) => [e.kind, e.cluster, e.count ?? 1])).toEqual([['failover', 'east', 1], ['cluster-down', 'east, north', 2]]);
  });
});

describe('TrafficLedger bounds', () => {
  test('stops adding rows at maxRoutes (existing rows still count), and says how many it refused', async () => {
    const { maxRoutes } = await import('./traffic-ledger.js');
    const ledger = new TrafficLedger('east');
    const many = Array.from({ length: maxRoutes + 10 }, (_, i) => route(`svc-${i}`, 'west', 1));
    ledger.accept({ version: 1, routes: many.slice(0, 2000), events: [] }, caller);
    ledger.accept({ version: 1, routes: many.slice(2000, 4000), events: [] }, caller);
    ledger.accept({ version: 1, routes: many.slice(4000), events: [] }, caller);
    ledger.accept({ version: 1, routes: [route('svc-0', 'west', 4)], events: [] }, caller);
    const traffic = ledger.records().get(keys.trafficOf('east')) as TrafficRecord;
    expect(traffic.routes).toHaveLength(maxRoutes);
    expect(traffic.routes.find((r) => r.service === 'svc-0')?.requests).toBe(5);
    expect(ledger.droppedRoutes).toBe(10);
  });
});
