import { describe, expect, test } from 'vitest';
import type { PolicyRecord } from './policy-records.js';
import { compileResiliencePolicies, defaultMinRetriesPerSecond } from './resilience-policy.js';

const record = (kind: string, name: string, spec: Record<string, unknown>, createdAt = '2025-01-01T00:00:00Z'): PolicyRecord => ({
  version: 1, apiVersion: 'isthmus.dev/v1alpha1', kind, namespace: 'demo', name, services: [String(spec.service)], backends: [], createdAt, spec,
});

describe('compileResiliencePolicies', () => {
  test('each kind becomes the settings the request path reads', () => {
    const compiled = compileResiliencePolicies([
      record('RetryPolicy', 'r', { service: 'hello', attempts: 4, perTryTimeout: '250ms', retryOn: ['5xx', 'unavailable'], budget: { percent: 20 } }),
      record('CircuitBreaker', 'b', { service: 'hello', maxPendingRequests: 1, maxRequests: 2 }),
      record('OutlierDetection', 'o', { service: 'hello', consecutive5xx: 7, baseEjectionTime: '10m', interval: '5s', maxEjectionPercent: 33.5 }),
      record('LocalRateLimit', 'l', { service: 'hello', requestsPerSecond: 2.5 }),
      record('FaultInjection', 'f', { service: 'hello', delay: { fixed: '1s', percent: 10 }, headers: [{ name: 'X-Chaos', value: 'on' }] }),
      record('FailoverPolicy', 'p', { service: 'hello', order: ['west'] }),
    ]).get('demo/hello');
    expect(compiled?.retry).toEqual({ policy: 'RetryPolicy demo/r', maxAttempts: 4, conditions: new Set(['5xx', 'unavailable']), perTryTimeoutMs: 250, budget: { percent: 20, minRetriesPerSecond: defaultMinRetriesPerSecond } });
    expect(compiled?.breaker).toEqual({ policy: 'CircuitBreaker demo/b', maxPendingRequests: 1, maxRequests: 2 });
    expect(compiled?.outlier).toMatchObject({ consecutive5xx: 7, consecutiveConnectErrors: 3, baseEjectionMs: 600_000, maxEjectionMs: 600_000, decayIntervalMs: 5000, maxEjectionPercent: 33 });
    expect(compiled?.rateLimit).toEqual({ policy: 'LocalRateLimit demo/l', requestsPerSecond: 2.5, burst: 3, per: 'service' });
    expect(compiled?.fault).toEqual({ policy: 'FaultInjection demo/f', delay: { ms: 1000, percent: 10 }, headers: [['x-chaos', 'on']] });
    expect(compiled?.failover).toEqual({ policy: 'FailoverPolicy demo/p', scope: 'mesh', order: ['west'] });
  });

  test('of two documents of one kind for a service the older wins, then the first by name; a broken record is skipped', () => {
    const compiled = compileResiliencePolicies([
      record('CircuitBreaker', 'newer', { service: 'hello', maxRequests: 9 }, '2025-02-01T00:00:00Z'),
      record('CircuitBreaker', 'older', { service: 'hello', maxRequests: 1 }, '2025-01-01T00:00:00Z'),
      record('LocalRateLimit', 'b', { service: 'hello', requestsPerSecond: 9 }),
      record('LocalRateLimit', 'a', { service: 'hello', requestsPerSecond: 1 }),
      record('RetryPolicy', 'broken', { service: 'hello', attempts: 'three' }),
    ]).get('demo/hello');
    expect(compiled?.breaker?.policy).toBe('CircuitBreaker demo/older');
    expect(compiled?.rateLimit?.policy).toBe('LocalRateLimit demo/a');
    expect(compiled?.retry).toBeUndefined();
  });
});
