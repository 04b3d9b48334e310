import { describe, expect, test } from 'vitest';
import type { PolicyRecord } from './policy-records.js';
import { hasLabels, labelSets, subsetCounts, subsetsByService } from './labels.js';

describe('hasLabels', () => {
  test.each([
    [{ version: 'v2' }, { version: 'v2' }, true],
    [{ version: 'v2', track: 'canary' }, { version: 'v2' }, true],
    [{ version: 'v2' }, { version: 'v2', track: 'canary' }, false],
    [{ version: 'v1' }, { version: 'v2' }, false],
    [undefined, { version: 'v2' }, false],
  ] as [Record<string, string> | undefined, Record<string, string>, boolean][])('%o in %o → %s', (held, wanted, expected) => {
    expect(hasLabels(held, wanted)).toBe(expected);
  });
});

describe('labelSets and subsetCounts', () => {
  const sets = labelSets([
    { labels: { version: 'v1' }, healthy: true },
    { labels: { version: 'v2', track: 'canary' }, healthy: true },
    { labels: { track: 'canary', version: 'v2' }, healthy: false },
    { labels: { version: 'v1' }, healthy: false },
    { healthy: true },
    { labels: {}, healthy: true },
  ]);

  test('one entry per distinct label set (label order does not matter), counts only, unlabelled instances left out', () => {
    expect(sets).toEqual([
      { labels: { track: 'canary', version: 'v2' }, healthy: 1, total: 2 },
      { labels: { version: 'v1' }, healthy: 1, total: 2 },
    ]);
  });

  test.each([
    [{ version: 'v1' }, { healthy: 1, total: 2 }],
    [{ version: 'v2' }, { healthy: 1, total: 2 }],
    [{ track: 'canary' }, { healthy: 1, total: 2 }],
    [{ version: 'v3' }, { healthy: 0, total: 0 }],
  ] as [Record<string, string>, { healthy: number; total: number }][])('subset %o counts %o', (wanted, expected) => {
    expect(subsetCounts(sets, wanted)).toEqual(expected);
  });

  test('an export without label sets (an older federation) has no instance of any subset', () => {
    expect(subsetCounts(undefined, { version: 'v1' })).toEqual({ healthy: 0, total: 0 });
  });
});

test('subsetsByService: the ServiceSubsets of each service by name, invalid ones skipped', () => {
  const record = (name: string, spec: unknown): PolicyRecord => ({ version: 1, apiVersion: 'isthmus.dev/v1alpha1', kind: 'ServiceSubset', namespace: 'demo', name, services: [], backends: [], createdAt: '2026-01-01T00:00:00Z', spec } as unknown as PolicyRecord);
  const subsets = subsetsByService([record('v1', { service: 'hello', labels: { version: 'v1' } }), record('v2', { service: 'hello', labels: { version: 'v2' } }), record('bad', { service: 'hello' })]);
  expect(Object.fromEntries(subsets)).toEqual({ 'demo/hello': { v1: { version: 'v1' }, v2: { version: 'v2' } } });
});
