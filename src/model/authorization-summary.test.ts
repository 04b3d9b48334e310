import { expect, test } from 'vitest';
import { compileAuthorization } from './authorization.js';
import { formatAuthorizationSummary, summariseAuthorization } from './authorization-summary.js';
import { policyRecordFromDocument } from './policy-kinds.js';
import type { PolicyRecord } from './policy-records.js';

const record = (kind: string, metadata: object, spec: object, apiVersion = 'isthmus.dev/v1alpha1') =>
  policyRecordFromDocument({ apiVersion, kind, metadata, spec }, 'p.yaml', new Date()) as PolicyRecord;

test('no policy: the defaults, and nothing enforced', () => {
  const summary = summariseAuthorization(compileAuthorization([]), 'demo', 'ledger');
  expect(summary).toEqual({ mtls: 'strict', defaultAction: 'allow', enforced: false, allowList: false, policies: [], deny: [], allow: [], problems: [] });
  expect(formatAuthorizationSummary(summary)).toEqual(['', '  authorization (at the service\'s inbound): mTLS strict, default allow (no MeshNamespace)', '    no policy: every caller with a mesh certificate is allowed']);
});

test('rules in the order they are tried, the namespace settings and problems', () => {
  const table = compileAuthorization([
    record('MeshNamespace', { name: 'demo' }, { mtls: { mode: 'permissive' }, authorization: { default: 'deny' } }),
    record('AuthorizationPolicy', { name: 'p', namespace: 'demo' }, {
      service: 'ledger',
      allow: [{ from: { identities: ['spiffe://mesh.test/ns/web/*'], clusters: ['east'] }, to: { methods: ['GET'], paths: [{ exact: '/a' }, { suffix: '.json' }], headers: [{ name: 'X-A', value: '1' }] } }],
      deny: [{ name: 'x', from: { namespaces: ['evil'] } }],
    }),
    record('TrafficTarget', { name: 't', namespace: 'demo' }, {
      destination: { kind: 'ServiceAccount', name: 'ledger' }, sources: [{ kind: 'ServiceAccount', name: 'client' }], rules: [{ kind: 'HTTPRouteGroup', name: 'gone' }],
    }, 'access.smi-spec.io/v1alpha3'),
  ]);
  expect(formatAuthorizationSummary(summariseAuthorization(table, 'demo', 'ledger'))).toEqual([
    '',
    '  authorization (at the service\'s inbound): mTLS permissive, default deny (MeshNamespace demo)',
    '    deny   AuthorizationPolicy demo/p deny rule 0 (x): from namespace evil',
    '    allow  AuthorizationPolicy demo/p allow rule 0: from identity spiffe://mesh.test/ns/web/*, cluster east to method GET, path = /a or *.json, header x-a: 1',
    '    otherwise denied (an allow list is in force)',
    '    problem: TrafficTarget demo/t names HTTPRouteGroup demo/gone, which is not applied: that rule allows nothing',
  ]);
  expect(formatAuthorizationSummary(summariseAuthorization(table, 'demo', 'hello')).slice(2)).toEqual(['    otherwise denied (the namespace denies by default)']);
});
