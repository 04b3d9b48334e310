import { describe, expect, test } from 'vitest';
import { stringify } from 'yaml';
import { authorizationApplies, authorize, compileAuthorization, namespaceSettings, type CallerFacts, type RequestFacts } from './authorization.js';
import { policyRecordFromDocument } from './policy-kinds.js';
import type { PolicyRecord } from './policy-records.js';

const td = 'spiffe://mesh.test';
const client = `${td}/ns/demo/sa/client`;
const admin = `${td}/ns/ops/sa/admin`;
const now = new Date('2026-01-01T00:00:00Z');

function doc(kind: string, name: string, spec: unknown, namespace = 'demo'): PolicyRecord {
  const apiVersion = { TrafficTarget: 'access.smi-spec.io/v1alpha3', HTTPRouteGroup: 'specs.smi-spec.io/v1alpha4' }[kind] ?? 'isthmus.dev/v1alpha1';
  const metadata = kind === 'MeshNamespace' ? { name } : { name, namespace };
  return policyRecordFromDocument({ apiVersion, kind, metadata, spec } as Record<string, unknown>, `${name}.yaml`, now) as PolicyRecord;
}
const authz = (name: string, spec: object, namespace = 'demo') => doc('AuthorizationPolicy', name, { service: 'ledger', ...spec }, namespace);
const request = (method: string, path: string, headers: Record<string, string> = {}): RequestFacts => ({ method, path, header: (n) => headers[n] });
/** null: the cluster is not known. */
const caller = (identity: string | undefined, cluster: string | null = 'west'): CallerFacts => ({ ...(identity ? { identity } : {}), ...(cluster ? { cluster } : {}) });

function decide(records: PolicyRecord[], who: CallerFacts, req: RequestFacts | undefined, service = 'ledger') {
  return authorize(compileAuthorization(records), 'demo', service, who, req);
}

describe('authorize: defaults', () => {
  test('no policy: allowed, and nothing is checked', () => {
    const table = compileAuthorization([]);
    expect(authorizationApplies(table, 'demo', 'ledger')).toBe(false);
    expect(authorize(table, 'demo', 'ledger', caller(client), request('GET', '/'))).toEqual({ allowed: true, reason: 'allowed: no authorization policy applies to demo/ledger' });
    expect(namespaceSettings(table, 'demo')).toEqual({ defaultAction: 'allow', mtls: 'strict' });
  });

  test('a policy of another service changes nothing for this one', () => {
    expect(decide([authz('other', { allow: [] })], caller(client), request('GET', '/'), 'hello').allowed).toBe(true);
  });

  test('deny-only policy: what no deny rule matches stays allowed', () => {
    const records = [authz('no-admin', { deny: [{ to: { paths: [{ prefix: '/admin' }] } }] })];
    expect(decide(records, caller(client), request('GET', '/balance'))).toEqual({ allowed: true, reason: 'allowed: no deny rule matches and demo/ledger has no allow list' });
    expect(decide(records, caller(client), request('GET', '/admin/x'))).toEqual({ allowed: false, rule: 'AuthorizationPolicy demo/no-admin deny rule 0', reason: 'denied by AuthorizationPolicy demo/no-admin deny rule 0' });
  });

  test('an empty allow list denies every request', () => {
    expect(decide([authz('closed', { allow: [] })], caller(client), request('GET', '/'))).toEqual({ allowed: false, reason: 'no rule allows it (demo/ledger has an allow list: AuthorizationPolicy demo/closed)' });
  });

  test('a namespace that denies by default: services without an allow list deny; one with an allow rule allows what it matches', () => {
    const ns = doc('MeshNamespace', 'demo', { authorization: { default: 'deny' } });
    const table = compileAuthorization([ns]);
    expect(authorizationApplies(table, 'demo', 'hello')).toBe(true);
    expect(authorizationApplies(table, 'other', 'hello')).toBe(false);
    expect(decide([ns], caller(client), request('GET', '/'), 'hello')).toEqual({ allowed: false, reason: 'no rule allows it (namespace demo denies by default: MeshNamespace demo)' });
    const records = [ns, authz('readers', { allow: [{ name: 'clients', from: { identities: [client] } }] })];
    expect(decide(records, caller(client), request('GET', '/'))).toMatchObject({ allowed: true, rule: 'AuthorizationPolicy demo/readers allow rule 0 (clients)' });
    expect(decide(records, caller(admin), request('GET', '/')).allowed).toBe(false);
  });

  test('MeshNamespace mtls mode', () => {
    expect(namespaceSettings(compileAuthorization([doc('MeshNamespace', 'demo', { mtls: { mode: 'permissive' } })]), 'demo')).toEqual({ defaultAction: 'allow', mtls: 'permissive', policy: 'MeshNamespace demo' });
  });
});

describe('authorize: each condition alone, in an allow rule and in a deny rule, for a fact that matches, differs or is not known', () => {
  // fact → [a caller and request for which the condition holds, one for which it does not, one for which it is not known]
  const cases: Record<string, { rule: object; yes: [CallerFacts, RequestFacts | undefined]; no: [CallerFacts, RequestFacts | undefined]; unknown: [CallerFacts, RequestFacts | undefined] }> = {
    identity: { rule: { from: { identities: [client] } }, yes: [caller(client), request('GET', '/')], no: [caller(admin), request('GET', '/')], unknown: [caller(undefined, null), request('GET', '/')] },
    'identity prefix': { rule: { from: { identities: [`${td}/ns/demo/*`] } }, yes: [caller(client), request('GET', '/')], no: [caller(admin), request('GET', '/')], unknown: [caller(undefined, null), request('GET', '/')] },
    'any identity': { rule: { from: { identities: ['*'] } }, yes: [caller(admin), request('GET', '/')], no: [caller(admin), request('GET', '/')], unknown: [caller(undefined, null), request('GET', '/')] },
    namespace: { rule: { from: { namespaces: ['demo'] } }, yes: [caller(client), request('GET', '/')], no: [caller(admin), request('GET', '/')], unknown: [caller(undefined, null), request('GET', '/')] },
    cluster: { rule: { from: { clusters: ['west'] } }, yes: [caller(client, 'west'), request('GET', '/')], no: [caller(client, 'east'), request('GET', '/')], unknown: [caller(client, null), request('GET', '/')] },
    method: { rule: { to: { methods: ['GET'] } }, yes: [caller(client), request('GET', '/')], no: [caller(client), request('POST', '/')], unknown: [caller(client), undefined] },
    'exact path': { rule: { to: { paths: [{ exact: '/balance' }] } }, yes: [caller(client), request('GET', '/balance')], no: [caller(client), request('GET', '/balance/x')], unknown: [caller(client), undefined] },
    'path prefix': { rule: { to: { paths: [{ prefix: '/public/' }] } }, yes: [caller(client), request('GET', '/public/a')], no: [caller(client), request('GET', '/publicity')], unknown: [caller(client), undefined] },
    'path suffix': { rule: { to: { paths: [{ suffix: '.json' }] } }, yes: [caller(client), request('GET', '/a.json')], no: [caller(client), request('GET', '/a.JSON')], unknown: [caller(client), undefined] },
    header: { rule: { to: { headers: [{ name: 'X-Team', value: 'ledger' }] } }, yes: [caller(client), request('GET', '/', { 'x-team': 'ledger' })], no: [caller(client), request('GET', '/', { 'x-team': 'Ledger' })], unknown: [caller(client), undefined] },
  };
  for (const [fact, c] of Object.entries(cases)) {
    // `*` matches every identity: there is no "no" for it.
    const states = (fact === 'any identity' ? ['yes', 'unknown'] : ['yes', 'no', 'unknown']) as ('yes' | 'no' | 'unknown')[];
    for (const state of states) {
      test(`${fact}: ${state} → allow rule ${state === 'yes' ? 'allows' : 'does not allow'}; deny rule ${state === 'no' ? 'does not deny' : 'denies'}`, () => {
        const [who, req] = c[state];
        expect(decide([authz('p', { allow: [c.rule] })], who, req).allowed).toBe(state === 'yes');
        expect(decide([authz('p', { deny: [c.rule] })], who, req).allowed).toBe(state === 'no');
      });
    }
  }
});

describe('authorize: combining', () => {
  const records = [authz('ledger-access', {
    allow: [
      { name: 'west-readers', from: { namespaces: ['demo'], clusters: ['west'] }, to: { methods: ['GET', 'HEAD'], paths: [{ prefix: '/public/' }, { exact: '/balance' }] } },
      { name: 'ops', from: { identities: [admin] } },
    ],
    deny: [{ name: 'no-admin-from-outside-ops', from: { namespaces: ['demo'] }, to: { paths: [{ prefix: '/admin' }] } }],
  })];

  test.each([
    ['west client reads a public page', caller(client, 'west'), request('GET', '/public/a'), true, 'west-readers'],
    ['west client reads the balance', caller(client, 'west'), request('HEAD', '/balance'), true, 'west-readers'],
    ['east client reads the balance (cluster not allowed)', caller(client, 'east'), request('GET', '/balance'), false, undefined],
    ['west client posts the balance (method not allowed)', caller(client, 'west'), request('POST', '/balance'), false, undefined],
    ['west client reads another path', caller(client, 'west'), request('GET', '/balances'), false, undefined],
    ['ops admin does anything', caller(admin, 'east'), request('DELETE', '/admin/x'), true, 'ops'],
    ['demo caller on /admin: the deny rule wins', caller(client, 'west'), request('GET', '/admin'), false, 'no-admin-from-outside-ops'],
    ['a plain-text caller: no identity, so no allow rule that names callers matches', caller(undefined, null), request('GET', '/public/a'), false, undefined],
    ['a plain-text caller on /admin: the deny rule\'s namespace is not known, so it denies', caller(undefined, null), request('GET', '/admin'), false, 'no-admin-from-outside-ops'],
    ['a TCP connection from the west client: path not known', caller(client, 'west'), undefined, false, 'no-admin-from-outside-ops'],
    ['a TCP connection from ops: its allow rule has only "from"', caller(admin, 'west'), undefined, true, 'ops'],
  ])('%s', (_what, who, req, allowed, ruleName) => {
    const d = decide(records, who, req);
    expect(d.allowed).toBe(allowed);
    if (ruleName) expect(d.rule).toContain(`(${ruleName})`);
    // Whatever the answer, a reason names it.
    expect(d.reason).toMatch(allowed ? /^allowed by/ : /^(denied by|no rule allows it)/);
  });

  test('deny wins over allow across documents, whatever their names\' order', () => {
    const allowAll = authz('a-allow', { allow: [{}] });
    const denyClient = authz('z-deny', { deny: [{ from: { identities: [client] } }] });
    expect(decide([allowAll, denyClient], caller(client), request('GET', '/'))).toMatchObject({ allowed: false, rule: 'AuthorizationPolicy demo/z-deny deny rule 0' });
    expect(decide([denyClient, allowAll], caller(admin), request('GET', '/'))).toMatchObject({ allowed: true, rule: 'AuthorizationPolicy demo/a-allow allow rule 0' });
  });

  test('methods are compared upper-cased', () => {
    expect(decide([authz('p', { allow: [{ to: { methods: ['GET'] } }] })], caller(client), request('get', '/')).allowed).toBe(true);
  });
});

describe('SMI TrafficTarget with HTTPRouteGroup', () => {
  const group = doc('HTTPRouteGroup', 'ledger-routes', {
    matches: [
      { name: 'read', pathRegex: '/balance(/.*)?', methods: ['GET'] },
      { name: 'everything', methods: ['*'] },
      { name: 'debug', pathRegex: '/debug', headers: { 'X-Debug': '1' } },
    ],
  });
  const target = (matches?: string[], rulesName = 'ledger-routes') => doc('TrafficTarget', 'clients-read', {
    destination: { kind: 'ServiceAccount', name: 'ledger', namespace: 'demo' },
    sources: [{ kind: 'ServiceAccount', name: 'client', namespace: 'demo' }],
    rules: [{ kind: 'HTTPRouteGroup', name: rulesName, ...(matches ? { matches } : {}) }],
  });

  test.each([
    [['read'], client, 'GET', '/balance', true],
    [['read'], client, 'GET', '/balance/today', true],
    [['read'], client, 'GET', '/balances', false],
    [['read'], client, 'GET', '/x/balance', false],
    [['read'], client, 'POST', '/balance', false],
    [['read'], admin, 'GET', '/balance', false],
    [['read'], `spiffe://other.td/ns/demo/sa/client`, 'GET', '/balance', true],
    [['everything'], client, 'DELETE', '/anything', true],
    [['everything'], admin, 'DELETE', '/anything', false],
    [['debug'], client, 'PUT', '/debug', false],
  ])('matches %j: %s %s %s → %s', (matches, identity, method, path, allowed) => {
    expect(decide([group, target(matches)], caller(identity), request(method, path)).allowed).toBe(allowed);
  });

  test('a header of the group must be present with its value', () => {
    expect(decide([group, target(['debug'])], caller(client), request('PUT', '/debug', { 'x-debug': '1' }))).toMatchObject({ allowed: true, rule: 'TrafficTarget demo/clients-read route ledger-routes/debug' });
  });

  test('all the group\'s matches when the rule lists none', () => {
    expect(decide([group, target()], caller(client), request('PATCH', '/x')).allowed).toBe(true);
  });

  test('a group that is not applied, or a match it lacks, allows nothing and says so', () => {
    const missing = compileAuthorization([target(undefined, 'gone')]).services.get('demo/ledger');
    expect(missing?.problems).toEqual(['TrafficTarget demo/clients-read names HTTPRouteGroup demo/gone, which is not applied: that rule allows nothing']);
    expect(decide([target(undefined, 'gone')], caller(client), request('GET', '/')).allowed).toBe(false);
    expect(compileAuthorization([group, target(['nope'])]).services.get('demo/ledger')?.problems[0]).toMatch(/has none of that name/);
  });
});

describe('policy apply refuses what cannot be honoured', () => {
  const refused = (kind: string, spec: object, metadata: object = { name: 'p', namespace: 'demo' }) => {
    const apiVersion = { TrafficTarget: 'access.smi-spec.io/v1alpha3', HTTPRouteGroup: 'specs.smi-spec.io/v1alpha4' }[kind] ?? 'isthmus.dev/v1alpha1';
    try {
      policyRecordFromDocument({ apiVersion, kind, metadata, spec }, 'p.yaml', now);
    } catch (err) {
      return (err as Error).message;
    }
    throw new Error(`${stringify(spec)} was accepted`);
  };

  test.each([
    ['TrafficTarget', { destination: { kind: 'ServiceAccount', name: 'ledger' }, sources: [{ kind: 'ServiceAccount', name: 'client' }], rules: [{ kind: 'TCPRoute', name: 'r' }] }, /\/spec\/rules\/0\/kind: Isthmus carries out TrafficTarget rules of kind HTTPRouteGroup only/],
    ['TrafficTarget', { destination: { kind: 'ServiceAccount', name: 'ledger', namespace: 'other' }, sources: [{ kind: 'ServiceAccount', name: 'client' }], rules: [{ kind: 'HTTPRouteGroup', name: 'r' }] }, /\/spec\/destination\/namespace/],
    ['TrafficTarget', { destination: { kind: 'ServiceAccount', name: 'ledger' }, sources: [{ kind: 'ServiceAccount', name: 'client' }], rules: [] }, /\/spec\/rules/],
    ['HTTPRouteGroup', { matches: [{ name: 'a', pathRegex: '/(unclosed' }] }, /\/spec\/matches\/0\/pathRegex: not a regular expression/],
    ['HTTPRouteGroup', { matches: [{ name: 'a' }, { name: 'a' }] }, /used twice/],
    ['AuthorizationPolicy', { service: 'ledger' }, /give spec.allow, spec.deny, or both/],
    ['AuthorizationPolicy', { service: 'ledger', allow: [{ from: { identities: ['spiffe://mesh.test/*/sa/x'] } }] }, /\/spec\/allow\/0\/from\/identities\/0/],
    ['AuthorizationPolicy', { service: 'ledger', allow: [{ to: { methods: ['get'] } }] }, /\/spec\/allow\/0\/to\/methods\/0/],
    ['AuthorizationPolicy', { service: 'ledger', allow: [{ to: { paths: [{ regex: '.*' }] } }] }, /\/spec\/allow\/0\/to\/paths\/0/],
    ['AuthorizationPolicy', { service: 'ledger', allow: [{ when: {} }] }, /\/spec\/allow\/0/],
    ['MeshNamespace', { mtls: { mode: 'disabled' } }, /\/spec\/mtls\/mode/],
  ])('%s %j', (kind, spec, message) => {
    expect(refused(kind, spec)).toMatch(message);
  });

  test('a MeshNamespace is named after its namespace', () => {
    expect(refused('MeshNamespace', { mtls: { mode: 'permissive' } }, { name: 'demo', namespace: 'other' })).toMatch(/\/metadata\/namespace: a MeshNamespace is named after the namespace/);
    const record = policyRecordFromDocument({ apiVersion: 'isthmus.dev/v1alpha1', kind: 'MeshNamespace', metadata: { name: 'demo' }, spec: {} }, 'ns.yaml', now) as PolicyRecord;
    expect({ namespace: record.namespace, services: record.services }).toEqual({ namespace: 'demo', services: [] });
  });
});
