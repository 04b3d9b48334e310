import { describe, expect, test } from 'vitest';
import { formatPolicySummary, liveSplit, summarisePolicies } from './policy-summary.js';
import type { PolicyRecord } from './policy-records.js';
import { compileResiliencePolicies } from './resilience-policy.js';
import { compileTrafficPolicies } from './traffic-policy.js';

const at = '2026-01-01T00:00:00.000Z';
const record = (apiVersion: string, kind: string, name: string, spec: object): PolicyRecord => ({
  version: 1, apiVersion, kind, namespace: 'demo', name, services: ['hello'], backends: [], createdAt: at, spec,
});
const isthmus = (kind: string, name: string, spec: object) => record('isthmus.dev/v1alpha1', kind, name, { service: 'hello', ...spec });
const canary = record('gateway.networking.k8s.io/v1', 'HTTPRoute', 'hello-canary', {
  parentRefs: [{ group: '', kind: 'Service', name: 'hello' }],
  rules: [
    { matches: [{ headers: [{ name: 'x-user-group', value: 'beta' }] }], backendRefs: [{ name: 'hello-v2' }] },
    { backendRefs: [{ name: 'hello-v1', weight: 90 }, { name: 'hello-v2', weight: 10 }], timeouts: { request: '2s' } },
    { matches: [{ path: { type: 'Exact', value: '/login' }, method: 'POST' }], backendRefs: [{ name: 'hello-v1' }], filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-a', value: '1' }], remove: ['x-b'] } }] },
  ],
});
const split = record('split.smi-spec.io/v1alpha4', 'TrafficSplit', 'hello-split', { service: 'hello', backends: [{ service: 'hello-v1', weight: 1 }, { service: 'hello-v2', weight: 3 }] });

const summary = (records: PolicyRecord[]) => summarisePolicies(compileTrafficPolicies(records).get('demo/hello'), compileResiliencePolicies(records).get('demo/hello'));

describe('summarisePolicies', () => {
  test('no policy: nothing to show', () => {
    expect(summary([])).toBeUndefined();
  });

  test.each([
    ['an HTTPRoute: rules in the order they are tried, weights as percents', [canary], [
      'HTTPRoute demo/hello-canary rule 2: path = /login, method POST → demo/hello-v1 100% (set x-a: 1, remove x-b)',
      'HTTPRoute demo/hello-canary rule 0: header x-user-group: beta → demo/hello-v2 100%',
      'HTTPRoute demo/hello-canary rule 1: every request → demo/hello-v1 90% / demo/hello-v2 10% (timeout 2000 ms)',
    ]],
    ['a TrafficSplit', [split], ['TrafficSplit demo/hello-split: every request → demo/hello-v1 25% / demo/hello-v2 75%']],
  ] as [string, PolicyRecord[], string[]][])('%s', (_name, records, lines) => {
    const rules = summary(records)?.rules ?? [];
    expect(rules.map((r) => `${r.policy}: ${r.match} → ${r.backends.map((b) => `${b.backend} ${b.percent}%`).join(' / ')}${r.timeoutMs ? ` (timeout ${r.timeoutMs} ms)` : ''}${r.headerChanges ? ` (${r.headerChanges})` : ''}`)).toEqual(lines);
  });

  test.each([
    ['RetryPolicy', { attempts: 3, retryOn: ['5xx', 'reset'], perTryTimeout: '500ms', budget: { percent: 20 } }, '3 attempts on 5xx, reset, 500 ms per try; budget 20% of requests, at least 10/s'],
    ['CircuitBreaker', { maxConnections: 4, maxRequests: 10 }, 'maxConnections 4, maxRequests 10 per upstream'],
    ['LocalRateLimit', { requestsPerSecond: 5, burst: 10 }, '5 requests/s, burst 10, per instance; 429 with retry-after beyond, at the destination\'s inbound'],
    ['FaultInjection', { abort: { status: 503, percent: 10 }, headers: [{ name: 'X-Chaos', value: 'on' }] }, 'abort with status 503 for 10% of requests with x-chaos: on'],
    ['FaultInjection', { delay: { fixed: '2s', percent: 50 }, abort: { grpcStatus: 14, percent: 5 } }, 'delay 2000 ms for 50%, abort with grpc-status 14 for 5%'],
    ['FailoverPolicy', { scope: 'region', order: ['west', 'north'] }, 'scope region, clusters in order west, north'],
    ['OutlierDetection', { consecutive5xx: 3, consecutiveConnectErrors: 2, baseEjectionTime: '10s', maxEjectionPercent: 50 }, 'eject after 3 5xx or 2 connect errors in a row, for 10000 ms at first, at most 50% of endpoints'],
  ] as [string, object, string][])('%s %j', (kind, spec, settings) => {
    expect(summary([isthmus(kind, 'p', spec)])?.resilience).toEqual([{ kind, policy: kind === 'OutlierDetection' ? kind : `${kind} demo/p`, settings }]);
  });
});

describe('the live split and the lines explain prints', () => {
  test.each([
    [[], []],
    [[['demo/hello-v1', 9], ['demo/hello-v2', 1]], [90, 10]],
    [[['demo/hello-v1', 2], ['demo/hello-v2', 1]], [66.7, 33.3]],
    [[['demo/hello-v1', 0], ['demo/hello-v2', 1000]], [0, 100]],
    [[['demo/hello-v2', 1], ['demo/hello-v1', 3]], [75, 25]],
  ] as [[string, number][], number[]][])('counts %j → percents %j', (counts, percents) => {
    expect(liveSplit(new Map(counts)).map((l) => l.percent)).toEqual(percents);
  });

  test('golden: an HTTPRoute 90/10 with a fault and a retry policy, after 200 requests', () => {
    const policies = summary([canary, isthmus('FaultInjection', 'chaos', { abort: { status: 503, percent: 1 } }), isthmus('RetryPolicy', 'retry', { attempts: 2, retryOn: ['connect-failure'], budget: { percent: 10, minRetriesPerSecond: 0 } })])!;
    expect(formatPolicySummary(policies, liveSplit(new Map([['demo/hello-v1', 181], ['demo/hello-v2', 19]])))).toEqual([
      '',
      'Policies in force:',
      '  1. HTTPRoute demo/hello-canary rule 2: path = /login, method POST → demo/hello-v1 100%, set x-a: 1, remove x-b',
      '  2. HTTPRoute demo/hello-canary rule 0: header x-user-group: beta → demo/hello-v2 100%',
      '  3. HTTPRoute demo/hello-canary rule 1: every request → demo/hello-v1 90% / demo/hello-v2 10%, timeout 2000 ms',
      '  RetryPolicy demo/retry: 2 attempts on connect-failure; budget 10% of requests, at least 0/s',
      '  FaultInjection demo/chaos: abort with status 503 for 1%',
      '  live split (200 requests since the policies arrived): demo/hello-v1 90.5% / demo/hello-v2 9.5%',
    ]);
    expect(formatPolicySummary({ rules: policies.rules, resilience: [] }, []).at(-1)).toBe('  live split: no request since the policies arrived');
  });
});
