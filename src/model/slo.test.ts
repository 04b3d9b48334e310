import { describe, expect, test } from 'vitest';
import { record, type Buckets } from './latency-histogram.js';
import { evaluateSlo } from './slo.js';
import { describeObjective, sloPolicyFromSpec } from './slo-spec.js';

const fill = (n: number, ms: number, into: Buckets = []): Buckets => {
  for (let i = 0; i < n; i += 1) record(into, ms);
  return into;
};

describe('evaluateSlo: burn rate = bad share / allowed share', () => {
  const success = { successPercent: 99, minRequests: 10 };
  test.each([
    // requests, errors, expected burn, state
    [1000, 0, 0, 'ok'],
    [1000, 10, 1, 'ok'],
    [1000, 11, 1.1, 'violated'],
    [1000, 50, 5, 'violated'],
    [9, 9, null, 'no-data'],
  ])('99%% success, %i requests with %i errors → burn %s (%s)', (requests, errors, burn, state) => {
    const v = evaluateSlo(success, { requests, errors, buckets: fill(requests, 1) });
    expect(v.burnRate).toBe(burn);
    expect(v.state).toBe(state);
  });

  test('p99 < 250 ms: 2% of requests slower than 250 ms burns at 2 and reports the observed p99', () => {
    const buckets = fill(980, 20);
    fill(20, 800, buckets);
    const v = evaluateSlo({ latency: { percentile: 99, belowMs: 250 }, minRequests: 1 }, { requests: 1000, errors: 0, buckets });
    expect(v.burnRate).toBeCloseTo(2, 1);
    expect(v.state).toBe('violated');
    expect(v.observed.latencyMs).toBeGreaterThan(600);
    expect(v.observed.successPercent).toBe(100);
  });

  test('with both objectives the faster burn decides', () => {
    const buckets = fill(1000, 10);
    const v = evaluateSlo({ latency: { percentile: 99, belowMs: 250 }, successPercent: 99.9, minRequests: 1 }, { requests: 1000, errors: 3, buckets });
    expect(v.burnRate).toBeCloseTo(3, 5);
  });
});

const doc = (spec: Record<string, unknown>) => ({ apiVersion: 'isthmus.dev/v1alpha1', kind: 'ServiceLevelObjective', metadata: { name: 'ledger-fast', namespace: 'demo' }, spec });

describe('ServiceLevelObjective YAML → /policies/slo record', () => {
  test('units become numbers; defaults apply', () => {
    const p = sloPolicyFromSpec(doc({ service: 'ledger', latency: { percentile: 99, below: '1.5s' }, success: 99.9, webhook: { urlFrom: { env: 'SLO_WEBHOOK_URL' } } }), 'slo.yaml');
    expect(p).toEqual({
      version: 1, namespace: 'demo', name: 'ledger-fast', service: 'ledger',
      latency: { percentile: 99, belowMs: 1500 }, successPercent: 99.9, windowSeconds: 3600, minRequests: 20, webhook: { env: 'SLO_WEBHOOK_URL' },
    });
    expect(describeObjective(p)).toBe('p99 < 1500 ms and 99.9% success over 1h');
  });

  test.each([
    [{ service: 'ledger' }, /spec\.latency.*spec\.success/],
    [{ service: 'ledger', success: 100 }, /\/spec\/success/],
    [{ service: 'ledger', success: 99, window: '30s' }, /\/spec\/window/],
    [{ service: 'ledger', success: 99, window: '8d' }, /between 1m and 7d/],
    [{ service: 'ledger', latency: { percentile: 99, below: '250' } }, /\/spec\/latency\/below/],
    [{ service: 'ledger', success: 99, webhook: { url: 'https://hooks.example/T0/B0/secret' } }, /\/spec\/webhook\/url: a webhook URL usually carries a token, and policies are stored in etcd in clear/],
    [{ service: 'ledger', success: 99, webhook: { urlFrom: { env: 'SLO-URL' } } }, /\/spec\/webhook\/urlFrom/],
    [{ service: 'ledger', success: 99, webhook: { urlFrom: { file: 'relative/path' } } }, /\/spec\/webhook\/urlFrom/],
    [{ service: 'ledger', success: 99, webhook: { urlFrom: { env: 'A', file: '/x' } } }, /\/spec\/webhook\/urlFrom/],
    [{ service: 'ledger', success: 99, typo: 1 }, /\/spec\/typo: unknown field/],
  ])('refused with the field named: %j', (spec, message) => {
    expect(() => sloPolicyFromSpec(doc(spec), 'slo.yaml')).toThrow(message);
  });
});
