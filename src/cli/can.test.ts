import { describe, expect, test } from 'vitest';
import { policyRecordFromDocument } from '../model/policy-kinds.js';
import type { PolicyRecord } from '../model/policy-records.js';
import { answerCan } from './can.js';

const records = [policyRecordFromDocument({
  apiVersion: 'isthmus.dev/v1alpha1', kind: 'AuthorizationPolicy', metadata: { name: 'ledger-access', namespace: 'demo' },
  spec: { service: 'ledger', allow: [{ name: 'readers', from: { identities: ['spiffe://mesh.test/ns/demo/sa/client'] }, to: { methods: ['GET'], headers: [{ name: 'x-team', value: 'ledger' }] } }] },
}, 'p.yaml', new Date()) as PolicyRecord];
const input = { source: 'demo/client', service: 'ledger', namespace: 'demo', method: 'get', path: '/a/../b', headers: { 'X-Team': 'ledger' } };

describe('isthmus can', () => {
  test('<ns>/<sa> is a workload ID in the mesh\'s one trust domain; method upper-cased, path normalised, headers by any case', () => {
    expect(answerCan(records, ['mesh.test', 'mesh.test'], input)).toEqual({
      allowed: true, source: 'spiffe://mesh.test/ns/demo/sa/client', sourceCluster: null, service: 'demo/ledger', method: 'GET', path: '/b',
      rule: 'AuthorizationPolicy demo/ledger-access allow rule 0 (readers)', reason: 'allowed by AuthorizationPolicy demo/ledger-access allow rule 0 (readers)', code: null, mtls: 'strict',
    });
  });

  test('a refusal names its code and reason', () => {
    expect(answerCan(records, ['mesh.test'], { ...input, headers: {} })).toMatchObject({ allowed: false, rule: null, code: 'ISTHMUS_ERR_AUTHZ_DENIED', reason: expect.stringMatching(/^no rule allows it/) });
    expect(answerCan(records, ['mesh.test'], { ...input, path: '/a%2Fb' })).toMatchObject({ allowed: false, path: null, code: 'ISTHMUS_ERR_AUTHZ_PATH_REFUSED' });
  });

  test.each([
    [[], 'no cluster has joined'],
    [['a.test', 'b.test'], 'trust domains a.test, b.test'],
  ])('<ns>/<sa> with trust domains %j is refused: give a SPIFFE ID', (domains, message) => {
    expect(() => answerCan(records, domains, input)).toThrow(message);
  });

  test('a SPIFFE ID is taken as it is, and checked', () => {
    expect(answerCan(records, [], { ...input, source: 'spiffe://other.test/ns/demo/sa/client' }).source).toBe('spiffe://other.test/ns/demo/sa/client');
    expect(() => answerCan(records, [], { ...input, source: 'spiffe://Mesh.test/ns/demo/sa/client' })).toThrow(/not a lower-case/);
    expect(() => answerCan(records, ['mesh.test'], { ...input, source: 'client' })).toThrow(/neither a SPIFFE ID/);
  });
});
