import { describe, expect, test } from 'vitest';
import type { PolicyRecord } from './policy-records.js';
import { applyHeaderChanges, compileTrafficPolicies, matchRequest, pickBackend, type RequestFacts, type ServiceRoutes } from './traffic-policy.js';

const route = (name: string, rules: unknown[], createdAt = '2026-01-01T00:00:00.000Z', parents = ['hello']): PolicyRecord => ({
  version: 1, apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', namespace: 'demo', name, services: parents, backends: [], createdAt,
  spec: { parentRefs: parents.map((p) => ({ group: '', kind: 'Service', name: p })), rules },
});
const split = (name: string, backends: { service: string; weight: number }[], createdAt = '2026-01-01T00:00:00.000Z'): PolicyRecord => ({
  version: 1, apiVersion: 'split.smi-spec.io/v1alpha4', kind: 'TrafficSplit', namespace: 'demo', name, services: ['hello'], backends: [], createdAt,
  spec: { service: 'hello', backends },
});
const to = (service: string, extra: object = {}) => ({ matches: [], backendRefs: [{ name: service }], ...extra });
const req = (path: string, headers: Record<string, string> = {}, method = 'GET'): RequestFacts => ({ method, path, headers });

function table(records: PolicyRecord[]): ServiceRoutes {
  const routes = compileTrafficPolicies(records).get('demo/hello');
  if (!routes) throw new Error('no routes for demo/hello');
  return routes;
}
const winner = (routes: ServiceRoutes, r: RequestFacts) => matchRequest(routes, r)?.action.backends.map((b) => b.service).join(',');

describe('match precedence (Gateway API v1, HTTPRouteRule matches)', () => {
  const precedence = table([route('r', [
    { matches: [{ path: { type: 'PathPrefix', value: '/' } }], backendRefs: [{ name: 'root' }] },
    { matches: [{ path: { type: 'PathPrefix', value: '/api' } }], backendRefs: [{ name: 'api' }] },
    { matches: [{ path: { type: 'PathPrefix', value: '/api/v2/' } }], backendRefs: [{ name: 'api-v2' }] },
    { matches: [{ path: { type: 'Exact', value: '/api/v2/login' } }], backendRefs: [{ name: 'login' }] },
    { matches: [{ path: { type: 'PathPrefix', value: '/api' }, method: 'POST' }], backendRefs: [{ name: 'api-post' }] },
    { matches: [{ path: { type: 'PathPrefix', value: '/api' }, headers: [{ name: 'X-User-Group', value: 'beta' }] }], backendRefs: [{ name: 'api-beta' }] },
    { matches: [{ path: { type: 'PathPrefix', value: '/api' }, headers: [{ name: 'x-user-group', value: 'beta' }, { name: 'x-region', value: 'eu' }] }], backendRefs: [{ name: 'api-beta-eu' }] },
    { matches: [{ path: { type: 'PathPrefix', value: '/api' }, method: 'POST', queryParams: [{ name: 'dry', value: '1' }] }], backendRefs: [{ name: 'api-post-dry' }] },
  ])]);
  test.each([
    ['exact path beats every prefix', req('/api/v2/login'), 'login'],
    ['exact path ignores the query string', req('/api/v2/login?x=1'), 'login'],
    ['exact path does not match a longer path', req('/api/v2/login/more'), 'api-v2'],
    ['longest prefix wins', req('/api/v2/users'), 'api-v2'],
    ['a trailing / in a prefix is ignored', req('/api/v2'), 'api-v2'],
    ['prefixes match whole path elements', req('/apis'), 'root'],
    ['prefix /api matches /api itself', req('/api'), 'api'],
    ['method match beats header matches at the same prefix', req('/api/x', { 'x-user-group': 'beta' }, 'POST'), 'api-post'],
    ['method and query beat method alone', req('/api/x?dry=1', {}, 'POST'), 'api-post-dry'],
    ['more header matches win', req('/api/x', { 'x-user-group': 'beta', 'x-region': 'eu' }), 'api-beta-eu'],
    ['header names are case-insensitive', req('/api/x', { 'x-user-group': 'beta' }), 'api-beta'],
    ['header values are exact', req('/api/x', { 'x-user-group': 'Beta' }), 'api'],
    ['everything else: the / prefix', req('/'), 'root'],
  ])('%s', (_why, request, expected) => {
    expect(winner(precedence, request)).toBe(expected);
  });

  test('ties go to the older route, then to <ns>/<name>, then to the first rule', () => {
    const older = route('zzz', [to('older')], '2026-01-01T00:00:00.000Z');
    const newer = route('aaa', [to('newer')], '2026-02-01T00:00:00.000Z');
    expect(winner(table([newer, older]), req('/x'))).toBe('older');
    const sameAge = [route('b', [to('b')]), route('a', [to('a1'), to('a2')])];
    expect(winner(table(sameAge), req('/x'))).toBe('a1');
  });

  test('a route with matches that all miss: nothing matches (the sidecar answers 404)', () => {
    const routes = table([route('r', [{ matches: [{ path: { type: 'Exact', value: '/only' } }], backendRefs: [{ name: 'v2' }] }])]);
    expect(routes.routeAttached).toBe(true);
    expect(matchRequest(routes, req('/other'))).toBeUndefined();
  });

  test('HTTPRoute entries come before a TrafficSplit of the same service; of two splits the older wins', () => {
    const routes = table([
      split('late', [{ service: 'late', weight: 1 }], '2026-03-01T00:00:00.000Z'),
      split('early', [{ service: 'early', weight: 1 }], '2026-01-01T00:00:00.000Z'),
      route('beta', [{ matches: [{ headers: [{ name: 'x-user-group', value: 'beta' }] }], backendRefs: [{ name: 'hello-v2' }] }]),
    ]);
    expect(routes.routeAttached).toBe(true);
    expect(winner(routes, req('/', { 'x-user-group': 'beta' }))).toBe('hello-v2');
    expect(winner(routes, req('/'))).toBe('early');
  });

  test('a TrafficSplit alone matches every request and attaches no route', () => {
    const routes = table([split('s', [{ service: 'hello-v1', weight: 9 }, { service: 'hello-v2', weight: 1 }])]);
    expect(routes.routeAttached).toBe(false);
    expect(matchRequest(routes, req('/anything?x=1', {}, 'DELETE'))?.action.totalWeight).toBe(10);
  });

  test('records whose spec does not check out are skipped, not thrown on', () => {
    const broken = { ...route('bad', [to('x')]), spec: { parentRefs: 'nope' } };
    expect(compileTrafficPolicies([broken]).size).toBe(0);
  });
});

describe('pickBackend', () => {
  const action = table([route('r', [{ backendRefs: [{ name: 'v1', weight: 90 }, { name: 'v2', weight: 10 }, { name: 'off', weight: 0 }] }])]).entries[0]!.action;
  test.each([[0, 'v1'], [0.8999, 'v1'], [0.9, 'v2'], [0.99999, 'v2']])('90/10/0 at u=%d → %s', (u, expected) => {
    expect(pickBackend(action, u)?.service).toBe(expected);
  });

  test('0/100 sends everything to the second; all-zero picks nothing', () => {
    const blueGreen = table([route('r', [{ backendRefs: [{ name: 'blue', weight: 0 }, { name: 'green', weight: 100 }] }])]).entries[0]!.action;
    for (const u of [0, 0.3, 0.999]) expect(pickBackend(blueGreen, u)?.service).toBe('green');
    const none = table([route('r', [{ backendRefs: [{ name: 'blue', weight: 0 }] }])]).entries[0]!.action;
    expect(pickBackend(none, 0.5)).toBeUndefined();
  });

  test('a weight left out counts 1 (Gateway API default)', () => {
    const even = table([route('r', [{ backendRefs: [{ name: 'a' }, { name: 'b' }] }])]).entries[0]!.action;
    expect([pickBackend(even, 0.49)?.service, pickBackend(even, 0.5)?.service]).toEqual(['a', 'b']);
  });
});

describe('rule actions', () => {
  test('ServiceSubset backends carry the subset\'s labels; an unknown subset gets nothing', () => {
    const subset: PolicyRecord = { version: 1, apiVersion: 'isthmus.dev/v1alpha1', kind: 'ServiceSubset', namespace: 'demo', name: 'hello-canary', services: ['hello'], backends: [], createdAt: '2026-01-01T00:00:00.000Z', spec: { service: 'hello', labels: { version: 'v2' } } };
    const routes = table([subset, route('r', [{ backendRefs: [
      { group: 'isthmus.dev', kind: 'ServiceSubset', name: 'hello-canary', weight: 1 },
      { group: 'isthmus.dev', kind: 'ServiceSubset', name: 'missing', weight: 5 },
    ] }])]);
    const action = routes.entries[0]!.action;
    expect(action.backends).toEqual([{ namespace: 'demo', service: 'hello', subset: { name: 'hello-canary', labels: { version: 'v2' } }, weight: 1 }]);
    expect(action.totalWeight).toBe(1);
  });

  test('timeouts.request becomes milliseconds; 0s means none', () => {
    const routes = table([route('r', [to('a', { timeouts: { request: '1m30s' } }), to('b', { timeouts: { request: '0s' } })])]);
    expect(routes.entries.map((e) => e.action.timeoutMs)).toEqual([90_000, undefined]);
  });

  test('RequestHeaderModifier sets, adds and removes, in that order', () => {
    const routes = table([route('r', [to('a', { filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: {
      set: [{ name: 'X-Canary', value: 'yes' }], add: [{ name: 'x-tag', value: 'b' }], remove: ['X-Drop'],
    } }] })])]);
    const headers: Record<string, string | string[] | undefined> = { 'x-canary': 'no', 'x-tag': 'a', 'x-drop': '1', keep: 'k' };
    applyHeaderChanges(headers, routes.entries[0]!.action.headers!);
    expect(headers).toEqual({ 'x-canary': 'yes', 'x-tag': ['a', 'b'], keep: 'k' });
  });
});
