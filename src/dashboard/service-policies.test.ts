import { describe, expect, test } from 'vitest';
import { keys } from '../core/keys.js';
import type { Catalog } from '../model/catalog.js';
import type { PolicyRecord } from '../model/policy-records.js';
import { buildOverview } from './overview.js';
import { liveShares, servicePolicies } from './service-policies.js';

const at = '2026-01-01T00:00:00.000Z';
const record = (apiVersion: string, kind: string, name: string, spec: object): PolicyRecord => ({
  version: 1, apiVersion, kind, namespace: 'demo', name, services: ['hello'], backends: [], createdAt: at, spec,
});
const canary = (v1: number, v2: number) => record('gateway.networking.k8s.io/v1', 'HTTPRoute', 'hello-canary', {
  parentRefs: [{ group: '', kind: 'Service', name: 'hello' }],
  rules: [
    { matches: [{ headers: [{ name: 'x-user-group', value: 'beta' }] }], backendRefs: [{ name: 'hello-v2' }] },
    { backendRefs: [{ name: 'hello-v1', weight: v1 }, { name: 'hello-v2', weight: v2 }] },
  ],
});
const fault = record('isthmus.dev/v1alpha1', 'FaultInjection', 'ledger-chaos', { service: 'ledger', abort: { status: 503, percent: 10 } });
const slo = record('isthmus.dev/v1alpha1', 'ServiceLevelObjective', 'hello-slo', { service: 'hello', objective: 99.9 });
const ledgerAccess = record('isthmus.dev/v1alpha1', 'AuthorizationPolicy', 'ledger-access', { service: 'ledger', allow: [{ from: { namespaces: ['demo'] } }], deny: [{ to: { paths: [{ prefix: '/admin' }] } }] });
const noAdmin = record('isthmus.dev/v1alpha1', 'AuthorizationPolicy', 'no-admin', { service: 'hello', deny: [{ to: { paths: [{ prefix: '/admin' }] } }] });

describe('servicePolicies: the badges of the services table', () => {
  test.each([
    ['no policy', [], {}],
    ['a 90/10 canary with a beta pin', [canary(90, 10)], { 'demo/hello': ['split split 90/10', 'other route → hello-v2'] }],
    ['blue-green 0/100', [canary(0, 100)], { 'demo/hello': ['split split 0/100', 'other route → hello-v2'] }],
    ['a fault on another service', [fault], { 'demo/ledger': ['fault fault'] }],
    ['an objective is not a traffic policy', [slo], {}],
    ['an allow list beside a fault', [fault, ledgerAccess], { 'demo/ledger': ['fault fault', 'other authz: allow list'] }],
    ['deny rules only, beside a canary', [canary(90, 10), noAdmin], { 'demo/hello': ['split split 90/10', 'other route → hello-v2', 'other authz: deny rules'] }],
  ] as [string, PolicyRecord[], Record<string, string[]>][])('%s', (_name, records, expected) => {
    const shown = Object.fromEntries([...servicePolicies(records)].map(([service, p]) => [service, p.badges.map((b) => `${b.tone} ${b.label}`).sort()]));
    expect(shown).toEqual(Object.fromEntries(Object.entries(expected).map(([k, v]) => [k, [...v].sort()])));
  });

  test('a badge\'s title says the whole setting', () => {
    expect(servicePolicies([fault]).get('demo/ledger')?.badges[0]?.title).toBe('FaultInjection demo/ledger-chaos: abort with status 503 for 10%');
    expect(servicePolicies([ledgerAccess]).get('demo/ledger')?.badges[0]?.title).toBe('deny AuthorizationPolicy demo/ledger-access deny rule 0: from anyone to path /admin*\nallow AuthorizationPolicy demo/ledger-access allow rule 0: from namespace demo');
  });
});

describe('liveShares', () => {
  test.each([
    [{ 'demo/hello-v1': 0, 'demo/hello-v2': 0 }, null],
    [{ 'demo/hello-v1': 90, 'demo/hello-v2': 10 }, [0.9, 0.1]],
    [{ 'demo/hello-v1': 2, 'demo/hello-v2': 1 }, [0.667, 0.333]],
  ] as [Record<string, number>, number[] | null][])('%j → %j', (counts, shares) => {
    expect(liveShares(Object.keys(counts), (b) => counts[b] ?? 0)?.map((s) => s.share) ?? null).toEqual(shares);
  });
  test('subsets of one service are told apart: the split reports each choice by backend name', () => {
    const counts: Record<string, number> = { 'demo/hello (subset v1)': 3, 'demo/hello (subset v2)': 1 };
    expect(liveShares(Object.keys(counts), (b) => counts[b] ?? 0)).toEqual([{ backend: 'demo/hello (subset v1)', share: 0.75 }, { backend: 'demo/hello (subset v2)', share: 0.25 }]);
  });
});

test('the overview marks the split service\'s row with its policies and the live split of the split\'s own choices, not the backends\' whole traffic', () => {
  const catalog = { revision: 1, clusters: [], services: ['hello', 'hello-v1', 'hello-v2'].map((name) => ({ namespace: 'demo', name, clusters: [] })), invalidKeys: [] } as unknown as Catalog;
  const entries = new Map<string, unknown>([[keys.policy('httproute', 'demo', 'hello-canary'), canary(90, 10)]]);
  // hello-v2 also had 40 requests called directly (not through hello's split): they are not the split's.
  const history = {
    window: () => ({
      coveredMs: 60_000,
      routes: [['hello-v1', 45], ['hello-v2', 45]].map(([service, requests]) => ({ namespace: 'demo', service, from: 'east', to: 'east', requests, errors: 0, buckets: [] })),
      splits: [['demo/hello-v1', 30], ['demo/hello-v2', 3], ['demo/hello-v1', 15], ['demo/hello-v2', 2]].map(([backend, requests]) => ({ namespace: 'demo', service: 'hello', backend, requests })),
      tcp: [],
    }),
  };
  const overview = buildOverview({ cluster: 'east', catalog, mirror: { entries: (prefix: string) => [...entries].filter(([k]) => k.startsWith(prefix)) } } as never, history as never);
  const hello = overview.services.find((s) => s.name === 'hello');
  expect(hello?.policies?.badges.map((b) => b.label).sort()).toEqual(['route → hello-v2', 'split 90/10']);
  expect(hello?.policies?.live).toEqual([{ backend: 'demo/hello-v1', share: 0.9 }, { backend: 'demo/hello-v2', share: 0.1 }]);
  expect(overview.services.find((s) => s.name === 'hello-v1')?.policies).toBeUndefined();
});

test('a TCP service\'s row: connections per second, the share established, those open, bytes each way, and where they went', () => {
  const catalog = {
    revision: 1, clusters: [], invalidKeys: [],
    services: [
      { namespace: 'demo', name: 'redis', clusters: [{ cluster: 'west', zones: [], ports: [{ port: 6379, protocol: 'tcp' }] }] },
      { namespace: 'demo', name: 'hello', clusters: [{ cluster: 'east', zones: [], ports: [{ port: 80, protocol: 'http' }, { port: 81, protocol: 'grpc' }] }] },
    ],
  } as unknown as Catalog;
  const tcp = (from: string, to: string, connections: number, failed: number, open: number, sentBytes: number, receivedBytes: number) =>
    ({ from, namespace: 'demo', service: 'redis', to, connections, failed, closed: connections - failed - open, sentBytes, receivedBytes, open });
  const history = {
    window: () => ({
      coveredMs: 60_000, routes: [], splits: [],
      tcp: [tcp('east', 'west', 12, 0, 2, 60_000, 120_000), tcp('north', 'west', 6, 0, 1, 0, 6_000), tcp('north', '', 2, 2, 0, 0, 0)],
    }),
  };
  const overview = buildOverview({ cluster: 'east', catalog, mirror: { entries: () => [] } } as never, history as never);
  const redis = overview.services.find((s) => s.name === 'redis');
  expect(redis?.protocols).toEqual(['tcp']);
  expect(redis?.traffic).toBeNull();
  expect(redis?.tcp).toEqual({
    connections: 20, connectionsPerSecond: 0.333, successPercent: 90, open: 3,
    sentBytesPerSecond: 1000, receivedBytesPerSecond: 2100, servedFrom: [{ cluster: 'west', share: 1 }],
  });
  const hello = overview.services.find((s) => s.name === 'hello');
  expect(hello?.protocols).toEqual(['grpc', 'http']);
  expect(hello?.tcp).toBeNull();
});

test('a TCP service with only a connection held open in the window: served from where that connection goes, no rate of new ones', () => {
  const catalog = { revision: 1, clusters: [], invalidKeys: [], services: [{ namespace: 'demo', name: 'redis', clusters: [] }] } as unknown as Catalog;
  const history = {
    window: () => ({
      coveredMs: 60_000, routes: [], splits: [],
      tcp: [{ from: 'east', namespace: 'demo', service: 'redis', to: 'west', connections: 0, failed: 0, closed: 0, sentBytes: 600, receivedBytes: 60, open: 1 }],
    }),
  };
  const redis = buildOverview({ cluster: 'east', catalog, mirror: { entries: () => [] } } as never, history as never).services[0];
  expect(redis?.tcp).toMatchObject({ connections: 0, connectionsPerSecond: 0, successPercent: null, open: 1, sentBytesPerSecond: 10, servedFrom: [{ cluster: 'west', share: 1 }] });
});
