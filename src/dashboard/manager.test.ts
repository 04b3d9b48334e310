import { describe, expect, test } from 'vitest';
import { parse } from 'yaml';
import { checkPolicyDocuments } from '../cli/policy-documents.js';
import { canaryRoute } from '../dev/canary-files.js';
import { policyRecordFromDocument } from '../model/policy-kinds.js';
import type { PolicyRecord } from '../model/policy-records.js';
import { editRequest, FaultEditSchema, serviceDetail, WeightsEditSchema, withFault, withWeights, type FaultEdit, type WeightsEdit } from './manager.js';

const now = new Date('2026-01-01T00:00:00Z');
const fromYaml = (text: string): PolicyRecord => policyRecordFromDocument(parse(text) as Record<string, unknown>, 'test', now);
const canary = fromYaml(canaryRoute(90, 10));
const chaos = fromYaml(`apiVersion: isthmus.dev/v1alpha1
kind: FaultInjection
metadata: { name: hello-chaos, namespace: demo }
spec: { service: hello, delay: { fixed: 2s, percent: 10 }, abort: { status: 503, percent: 5 }, headers: [{ name: x-chaos, value: "on" }] }
`);
const split = fromYaml(`apiVersion: split.smi-spec.io/v1alpha4
kind: TrafficSplit
metadata: { name: ledger-split, namespace: demo }
spec: { service: ledger, backends: [{ service: ledger-v1, weight: 3 }, { service: ledger-v2, weight: 1 }] }
`);
const retries = fromYaml(`apiVersion: isthmus.dev/v1alpha1
kind: RetryPolicy
metadata: { name: hello-retries, namespace: demo }
spec: { service: hello, attempts: 3, retryOn: [connect-failure], budget: { percent: 20, minRetriesPerSecond: 5 } }
`);
const records = [canary, chaos, split, retries];

describe('serviceDetail: what the service page shows', () => {
  test('demo/hello: both canary rules as splits, the live split of the weighted one, the fault with its percents, retries, no rollout', () => {
    const d = serviceDetail(records, 'demo', 'hello', (b) => ({ 'demo/hello-v1': 30, 'demo/hello-v2': 10 })[b] ?? 0);
    expect(d.splits).toEqual([
      { kind: 'HTTPRoute', policy: 'hello-canary', rule: 0, match: 'header x-user-group: beta', backends: [{ backend: 'demo/hello-v2', weight: 1 }] },
      { kind: 'HTTPRoute', policy: 'hello-canary', rule: 1, match: 'every request', backends: [{ backend: 'demo/hello-v1', weight: 90 }, { backend: 'demo/hello-v2', weight: 10 }] },
    ]);
    expect(d.live).toEqual([{ backend: 'demo/hello-v1', share: 0.75 }, { backend: 'demo/hello-v2', share: 0.25 }]);
    expect(d.faults).toEqual([{ policy: 'hello-chaos', delayPercent: 10, abortPercent: 5, on: true, settings: 'delay 2s for 10%, abort with status 503 for 5%, only requests with x-chaos: on' }]);
    expect(d.resilience.map((r) => r.kind)).toEqual(['RetryPolicy', 'FaultInjection']);
    expect(d.routes.map((r) => r.match)).toEqual(['header x-user-group: beta', 'every request']);
    expect(d.authorization).toBeNull();
    expect(d.rollout).toBeNull();
  });

  test('demo/ledger: a TrafficSplit is one split, rule 0; nothing of hello leaks in; no traffic, no live split', () => {
    const d = serviceDetail(records, 'demo', 'ledger', () => 0);
    expect(d.splits).toEqual([{ kind: 'TrafficSplit', policy: 'ledger-split', rule: 0, match: 'every request', backends: [{ backend: 'demo/ledger-v1', weight: 3 }, { backend: 'demo/ledger-v2', weight: 1 }] }]);
    expect(d.faults).toEqual([]);
    expect(d.live).toBeNull();
  });
});

describe('edits: the applied document with one field changed, judged by policy apply\'s checks', () => {
  const weights = (body: unknown) => withWeights(canary, editRequest<WeightsEdit>(WeightsEditSchema, body));
  test('new weights pass the checks and land on the rule\'s backendRefs; the creation time is not part of the document', async () => {
    const doc = weights({ kind: 'HTTPRoute', policy: 'hello-canary', rule: 1, weights: [20, 80] });
    expect((doc.metadata as Record<string, unknown>).creationTimestamp).toBeUndefined();
    const [parsed] = await checkPolicyDocuments([{ value: doc, source: 'edit' }], 'edit');
    expect((parsed!.record as PolicyRecord).spec).toMatchObject({ rules: [{ backendRefs: [{ name: 'hello-v2' }] }, { backendRefs: [{ name: 'hello-v1', weight: 20 }, { name: 'hello-v2', weight: 80 }] }] });
    expect(canary.spec).toMatchObject({ rules: [{}, { backendRefs: [{ weight: 90 }, { weight: 10 }] }] });
  });

  test.each([
    ['a negative weight', [-5, 10], '/spec/rules/1/backendRefs/0/weight'],
    ['a weight that is not a number', [90, 'ten'], '/spec/rules/1/backendRefs/1/weight'],
    ['a fraction', [0.5, 10], '/spec/rules/1/backendRefs/0/weight'],
  ])('%s is refused with the field\'s path', async (_name, values, path) => {
    const doc = weights({ kind: 'HTTPRoute', policy: 'hello-canary', rule: 1, weights: values });
    const err = await checkPolicyDocuments([{ value: doc, source: 'edit' }], 'edit').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ISTHMUS_ERR_POLICY_INVALID', details: expect.arrayContaining([expect.objectContaining({ path })]) });
  });

  test.each([
    ['a rule the route does not have', { kind: 'HTTPRoute', policy: 'hello-canary', rule: 5, weights: [1] }, /has no rule 5/],
    ['fewer weights than backends', { kind: 'HTTPRoute', policy: 'hello-canary', rule: 1, weights: [1] }, /has 2 backends; 1 weights were sent/],
    ['an unknown field', { kind: 'HTTPRoute', policy: 'hello-canary', rule: 1, weights: [1, 1], extra: true }, /request body is not valid/],
    ['no weights', { kind: 'HTTPRoute', policy: 'hello-canary', rule: 1, weights: [] }, /request body is not valid/],
  ])('%s: ISTHMUS_ERR_API_BAD_REQUEST', (_name, body, message) => {
    expect(() => weights(body)).toThrow(message);
  });

  test('a TrafficSplit\'s weights', async () => {
    const doc = withWeights(split, { kind: 'TrafficSplit', policy: 'ledger-split', rule: 0, weights: [1, 1] });
    const [parsed] = await checkPolicyDocuments([{ value: doc, source: 'edit' }], 'edit');
    expect((parsed!.record as PolicyRecord).spec).toMatchObject({ backends: [{ service: 'ledger-v1', weight: 1 }, { service: 'ledger-v2', weight: 1 }] });
  });

  test('a fault on sets delay and abort to the percent, off sets both to 0; a bad percent is refused with its path', async () => {
    const fault = (body: unknown) => withFault(chaos, editRequest<FaultEdit>(FaultEditSchema, body));
    const spec = async (body: unknown) => ((await checkPolicyDocuments([{ value: fault(body), source: 'edit' }], 'edit'))[0]!.record as PolicyRecord).spec;
    expect(await spec({ policy: 'hello-chaos', on: true, percent: 100 })).toMatchObject({ delay: { percent: 100 }, abort: { percent: 100 }, headers: [{ name: 'x-chaos' }] });
    expect(await spec({ policy: 'hello-chaos', on: false })).toMatchObject({ delay: { percent: 0 }, abort: { percent: 0 } });
    expect(() => fault({ policy: 'hello-chaos', on: true })).toThrow(/needs its percent/);
    const err = await spec({ policy: 'hello-chaos', on: true, percent: 150 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ISTHMUS_ERR_POLICY_INVALID', details: expect.arrayContaining([expect.objectContaining({ path: '/spec/delay/percent' })]) });
  });
});
