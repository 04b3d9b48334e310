import { describe, expect, test } from 'vitest';
import type { Catalog } from '../model/catalog.js';
import { explainRoute, formatExplanation } from './explain.js';
import { calledWindowMs, failoverChannel, RoutingTable } from './routing.js';

const catalog: Catalog = {
  revision: 1,
  invalidKeys: [],
  clusters: [
    { name: 'east', region: 'us', zones: ['a'], trustDomain: 'td', federation: 'x:1', joinedAt: '', alive: true, gateways: [] },
    { name: 'west', region: 'us', zones: ['a'], trustDomain: 'td', federation: 'y:1', joinedAt: '', alive: true, gateways: [{ id: 'gw-1', address: '127.0.2.1', port: 15443, zone: 'a' }] },
  ],
  services: [{
    namespace: 'd', name: 'a',
    clusters: [{ cluster: 'west', region: 'us', zones: [{ zone: 'a', healthy: 1, total: 1 }], gateways: [{ id: 'gw-1', address: '127.0.2.1', port: 15443, zone: 'a' }], identities: ['spiffe://td/ns/d/sa/a'], ports: [] }],
  }],
};
const endpoints = {
  version: 1,
  cluster: 'east',
  services: [
    { namespace: 'd', name: 'a', identities: ['spiffe://td/ns/d/sa/a'], endpoints: [{ address: '127.0.1.1:1', zone: 'a', healthy: true }, { address: '127.0.1.1:2', zone: 'a', healthy: true }] },
    { namespace: 'd', name: 'b', identities: ['spiffe://td/ns/d/sa/b'], endpoints: [{ address: '127.0.1.1:3', zone: 'a', healthy: true }] },
  ],
};

function table(now = { t: 0 }) {
  const routing = new RoutingTable({ cluster: 'east', zone: 'a' }, () => true, () => now.t);
  routing.setCatalog(catalog);
  routing.setEndpoints(endpoints);
  return routing;
}

describe('RoutingTable', () => {
  test('local endpoints first (P0); the remote gateway only as a lower priority', () => {
    const route = table().route('d', 'a')!;
    expect(route.primary).toBe(0);
    expect(route.load.loads).toEqual([100, 0, 0, 0]);
    expect(route.localities.localities.map((l) => [l.priority, l.cluster])).toEqual([[0, 'east'], [2, 'west']]);
  });

  test('an ejection survives routing another service, and moves traffic to the rest', () => {
    const routing = table();
    for (let i = 0; i < 3; i += 1) routing.record('127.0.1.1:1', { ok: false, kind: 'connect-error' });
    routing.route('d', 'b');
    expect(routing.ejected()).toEqual(new Set(['127.0.1.1:1']));
    const route = routing.route('d', 'a')!;
    expect(route.localities.localities[0]!.endpoints.find((e) => e.address === '127.0.1.1:1')!.healthy).toBe(false);
    // One of two local endpoints healthy: P0 health 70% (1/2 × 1.4), the rest spills to the gateway (Envoy's arithmetic).
    expect(route.load.loads).toEqual([70, 0, 30, 0]);
    for (let i = 0; i < 50; i += 1) expect(routing.pick(route)!.address).not.toBe('127.0.1.1:1');
  });

  test('all local endpoints down: everything fails over to the gateway, and a failover event says so', () => {
    const events: unknown[] = [];
    const listener = (message: unknown) => events.push(message);
    failoverChannel.subscribe(listener);
    const routing = table();
    expect(routing.route('d', 'a')!.primary).toBe(0);
    for (const address of ['127.0.1.1:1', '127.0.1.1:2']) for (let i = 0; i < 3; i += 1) routing.record(address, { ok: false, kind: 'connect-error' });
    const route = routing.route('d', 'a')!;
    expect(route.load.loads).toEqual([0, 0, 100, 0]);
    expect(routing.pick(route)!.sni).toBe('a.d.svc.west.isthmus');
    failoverChannel.unsubscribe(listener);
    expect(events).toMatchObject([{ namespace: 'd', service: 'a', from: 0, to: 2 }]);
  });

  test('the first healthy decision for a service is start-up, not a failover; losing every endpoint and getting one back later are', () => {
    const events: { from?: number; to?: number }[] = [];
    const listener = (message: unknown) => events.push(message as { from?: number; to?: number });
    failoverChannel.subscribe(listener);
    const routing = new RoutingTable({ cluster: 'east', zone: 'a' }, () => true, () => 0);
    const onlyB = (healthy: boolean) => ({ ...endpoints, services: [{ ...endpoints.services[1]!, endpoints: [{ ...endpoints.services[1]!.endpoints[0]!, healthy }] }] });
    routing.setCatalog({ ...catalog, services: [] });
    routing.setEndpoints(onlyB(false));
    expect(routing.route('d', 'b')!.primary).toBeUndefined(); // starting: nothing healthy yet
    routing.setEndpoints(onlyB(true));
    expect(routing.route('d', 'b')!.primary).toBe(0);
    expect(events).toEqual([]);
    routing.setEndpoints(onlyB(false));
    expect(routing.route('d', 'b')!.primary).toBeUndefined();
    routing.setEndpoints(onlyB(true));
    expect(routing.route('d', 'b')!.primary).toBe(0);
    failoverChannel.unsubscribe(listener);
    expect(events).toMatchObject([{ service: 'b', from: 0, to: undefined }, { service: 'b', from: undefined, to: 0 }]);
  });

  test('local instances that pass their first check after remote ones were in use come into service without a failback; a later loss and return are events', () => {
    const events: { from?: number; to?: number }[] = [];
    const listener = (message: unknown) => events.push(message as { from?: number; to?: number });
    failoverChannel.subscribe(listener);
    const routing = new RoutingTable({ cluster: 'east', zone: 'a' }, () => true, () => 0);
    const onlyA = (healthy: boolean) => ({ ...endpoints, services: [{ ...endpoints.services[0]!, endpoints: endpoints.services[0]!.endpoints.map((e) => ({ ...e, healthy })) }] });
    routing.setCatalog(catalog);
    routing.setEndpoints(onlyA(false));
    expect(routing.route('d', 'a')!.primary).toBe(2); // starting: only west's gateway has passed a check
    routing.setEndpoints(onlyA(true));
    expect(routing.route('d', 'a')!.primary).toBe(0);
    expect(events).toEqual([]);
    routing.setEndpoints(onlyA(false));
    expect(routing.route('d', 'a')!.primary).toBe(2);
    routing.setEndpoints(onlyA(true));
    expect(routing.route('d', 'a')!.primary).toBe(0);
    failoverChannel.unsubscribe(listener);
    expect(events).toMatchObject([{ service: 'a', from: 0, to: 2 }, { service: 'a', from: 2, to: 0 }]);
  });

  test('a host ejected for refusing connections returns when an active check reaches it', () => {
    const routing = table();
    for (let i = 0; i < 3; i += 1) routing.record('127.0.1.1:1', { ok: false, kind: 'connect-error' });
    routing.unejectReachable((address) => address === '127.0.1.1:1');
    expect(routing.ejected().size).toBe(0);
  });

  // A TCP or TLS check says nothing about 5xx: an app that answers 500 still accepts
  // connections, so a passing check must not end its ejection (docs/sidecar.md).
  test('a host ejected for 5xx answers stays out its ejection time (30 s) although its check passes', () => {
    const now = { t: 1_000 };
    const routing = table(now);
    for (let i = 0; i < 5; i += 1) routing.record('127.0.1.1:1', { ok: false, kind: '5xx' });
    expect([...routing.ejected()]).toEqual(['127.0.1.1:1']);
    for (const t of [3_000, 10_000, 30_999]) {
      now.t = t;
      routing.unejectReachable(() => true);
      expect([...routing.ejected()], `at ${t} ms`).toEqual(['127.0.1.1:1']);
    }
    now.t = 31_000;
    expect(routing.ejected().size).toBe(0);
  });

  test('each endpoint of a route has its SNI and allowed identities worked out once', () => {
    const route = table().route('d', 'a')!;
    expect(route.upstreams.get('127.0.1.1:1')).toMatchObject({ sni: 'a.d.svc.east.isthmus', identities: ['spiffe://td/ns/d/sa/a'] });
    expect(route.upstreams.get('127.0.2.1:15443')).toMatchObject({ sni: 'a.d.svc.west.isthmus', identities: ['spiffe://td/ns/d/sa/a'] });
  });

  test('checks itself only the local instances of services the app called, and every remote gateway; a reader of routes calls nothing', () => {
    const routing = table();
    expect(routing.checkedAddresses()).toEqual(['127.0.2.1:15443']);
    routing.peek('d', 'a');
    routing.route('d', 'nope');
    expect(routing.checkedAddresses()).toEqual(['127.0.2.1:15443']);
    routing.route('d', 'a');
    expect(routing.checkedAddresses()).toEqual(['127.0.1.1:1', '127.0.1.1:2', '127.0.2.1:15443']);
    routing.route('d', 'b');
    expect(routing.checkedAddresses()).toEqual(['127.0.1.1:1', '127.0.1.1:2', '127.0.1.1:3', '127.0.2.1:15443']);
    // An instance that leaves the endpoints is no longer checked.
    routing.setEndpoints({ ...endpoints, services: [endpoints.services[1]!] });
    expect(routing.checkedAddresses()).toEqual(['127.0.1.1:3', '127.0.2.1:15443']);
  });

  test('a service the app stopped calling leaves the checks after one to two windows; one it keeps calling stays', () => {
    const now = { t: 0 };
    const routing = table(now);
    const checked = (t: number) => { now.t = t; return routing.checkedAddresses().filter((a) => a.startsWith('127.0.1.1')); };
    expect(checked(0)).toEqual([]);
    routing.route('d', 'a');
    routing.route('d', 'b');
    expect(checked(1000)).toEqual(['127.0.1.1:1', '127.0.1.1:2', '127.0.1.1:3']);
    // A new window: both still count (called in the one before); only b is called again.
    expect(checked(calledWindowMs)).toEqual(['127.0.1.1:1', '127.0.1.1:2', '127.0.1.1:3']);
    routing.route('d', 'b');
    expect(checked(calledWindowMs + 1000)).toEqual(['127.0.1.1:1', '127.0.1.1:2', '127.0.1.1:3']);
    // The window after: a was last called two windows ago and leaves; b stays.
    expect(checked(2 * calledWindowMs)).toEqual(['127.0.1.1:3']);
    // Calling a again brings its instances back from the next round.
    routing.route('d', 'a');
    expect(checked(2 * calledWindowMs + 2000)).toEqual(['127.0.1.1:3', '127.0.1.1:1', '127.0.1.1:2']);
  });

  test('an unknown service has no route', () => {
    expect(table().route('d', 'nope')).toBeUndefined();
  });
});

describe('outlier detection at another cluster\'s gateway, and when every endpoint is ejected', () => {
  const gw = '127.0.2.1:15443';
  const gateway = { id: 'gw-1', address: '127.0.2.1', port: 15443, zone: 'a' };
  // d/c is served in west only: from east its one endpoint is west's gateway, which d/a's P2 is too.
  const withC: Catalog = {
    ...catalog,
    services: [...catalog.services, { namespace: 'd', name: 'c', clusters: [{ cluster: 'west', region: 'us', zones: [{ zone: 'a', healthy: 1, total: 1 }], gateways: [gateway], identities: ['spiffe://td/ns/d/sa/c'], ports: [] }] }],
  };
  const tableWithC = () => {
    const routing = new RoutingTable({ cluster: 'east', zone: 'a' }, () => true, () => 0);
    routing.setCatalog(withC);
    routing.setEndpoints(endpoints);
    return routing;
  };
  const gatewayOf = (routing: RoutingTable, service: string) => routing.route('d', service)!.localities.localities.flatMap((l) => l.endpoints).find((e) => e.address === gw)!;

  test('five 5xx answers of one service through a gateway take the gateway out for that service only', () => {
    const routing = tableWithC();
    for (let i = 0; i < 5; i += 1) routing.record(gw, { ok: false, kind: '5xx' }, { service: 'd/a', cluster: 'west' });
    expect(gatewayOf(routing, 'a').healthy).toBe(false);
    expect(gatewayOf(routing, 'c').healthy).toBe(true);
    expect(routing.ejected().has(gw)).toBe(false);
    // A catalog change keeps that verdict (the gateway is still there).
    routing.setEndpoints({ ...endpoints, version: 2 });
    expect(gatewayOf(routing, 'a').healthy).toBe(false);
  });

  test('the gateway\'s own connect errors take it out for every service (for d/c, whose only endpoint it is, routed to anyway)', () => {
    const routing = tableWithC();
    for (let i = 0; i < 3; i += 1) routing.record(gw, { ok: false, kind: 'connect-error' }, { service: 'd/c', cluster: 'west' });
    expect(routing.ejected().has(gw)).toBe(true);
    expect(gatewayOf(routing, 'a').healthy).toBe(false);
    // Nothing else serves d/c: ejection alone does not leave it without an endpoint.
    expect(gatewayOf(routing, 'c').healthy).toBe(true);
    expect(routing.route('d', 'c')!.primary).toBe(2);
  });

  test('a service whose only instance is ejected for 5xx is still routed to it, and its route says the endpoint is ejected', () => {
    const routing = tableWithC();
    for (let i = 0; i < 5; i += 1) routing.record('127.0.1.1:3', { ok: false, kind: '5xx' }, { service: 'd/b', cluster: 'east' });
    expect(routing.ejected().has('127.0.1.1:3')).toBe(true);
    const b = routing.route('d', 'b')!;
    expect(b.primary).toBe(0);
    expect(b.localities.localities[0]!.endpoints[0]!.healthy).toBe(true);
    expect(formatExplanation(explainRoute(b, { cluster: 'east', zone: 'a' }, routing.ejected()))).toMatch(/127\.0\.1\.1:3 {2}EJECTED, still used \(every endpoint is\)/);
    // d/a has instances left in service: its ejected ones stay out.
    for (let i = 0; i < 5; i += 1) routing.record('127.0.1.1:1', { ok: false, kind: '5xx' }, { service: 'd/a', cluster: 'east' });
    expect(routing.route('d', 'a')!.localities.localities[0]!.endpoints.find((e) => e.address === '127.0.1.1:1')!.healthy).toBe(false);
  });

  test('a gateway taken out for one service\'s answers shows so in that service\'s explanation only', () => {
    const routing = tableWithC();
    for (let i = 0; i < 5; i += 1) routing.record(gw, { ok: false, kind: '5xx' }, { service: 'd/a', cluster: 'west' });
    const explained = (service: string) => formatExplanation(explainRoute(routing.route('d', service)!, { cluster: 'east', zone: 'a' }, routing.ejected()));
    expect(explained('a')).toMatch(/127\.0\.2\.1:15443 {2}EJECTED \(outlier detection\)/);
    expect(explained('c')).toMatch(/127\.0\.2\.1:15443 {2}healthy/);
  });
});
