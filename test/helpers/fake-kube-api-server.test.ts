import { readFileSync } from 'node:fs';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { summarizePod, summarizeSlice } from '../../src/federation/kubernetes/kube-objects.js';
import { FakeKubeApiServer } from './fake-kube-api-server.js';

// The fake is only worth what its answers are: each is compared with a shape recorded from the
// Kubernetes API reference (test/fixtures/kubernetes/README.md says where each comes from).
const fixture = (name: string) => JSON.parse(readFileSync(new URL(`../fixtures/kubernetes/${name}`, import.meta.url), 'utf8'));

/** Every key of `recorded` is in `actual` with the same JSON type, recursively (arrays: their first element). */
function shapeProblems(recorded: unknown, actual: unknown, path = '$'): string[] {
  const type = (v: unknown) => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);
  if (type(recorded) !== type(actual)) return [`${path}: recorded ${type(recorded)}, fake ${type(actual)}`];
  if (Array.isArray(recorded)) return recorded.length > 0 && (actual as unknown[]).length > 0 ? shapeProblems(recorded[0], (actual as unknown[])[0], `${path}[0]`) : [];
  if (type(recorded) !== 'object') return [];
  return Object.entries(recorded as Record<string, unknown>).flatMap(([key, value]) => (
    key in (actual as Record<string, unknown>) ? shapeProblems(value, (actual as Record<string, unknown>)[key], `${path}.${key}`) : [`${path}.${key}: missing in the fake's answer`]
  ));
}

let fake: FakeKubeApiServer;
let agent: Agent;

async function call(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<{ status: number; text: string }> {
  const res = await request(`${fake.url}${path}`, {
    method: method as 'GET', dispatcher: agent,
    headers: { authorization: `Bearer ${fake.adminToken}`, ...(body === undefined ? {} : { 'content-type': contentType }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.statusCode, text: await res.body.text() };
}

/** Opens a watch and returns its first `count` event lines. */
async function watchLines(path: string, count: number): Promise<unknown[]> {
  const res = await request(`${fake.url}${path}`, { dispatcher: agent, headers: { authorization: `Bearer ${fake.adminToken}` } });
  const lines: unknown[] = [];
  let buffer = '';
  for await (const chunk of res.body) {
    buffer += chunk.toString();
    let newline = buffer.indexOf('\n');
    while (newline >= 0) {
      lines.push(JSON.parse(buffer.slice(0, newline)));
      buffer = buffer.slice(newline + 1);
      newline = buffer.indexOf('\n');
    }
    if (lines.length >= count) break;
  }
  res.body.destroy();
  return lines.slice(0, count);
}

beforeAll(async () => {
  fake = await FakeKubeApiServer.start({ host: '127.0.161.2', bookmarkIntervalMs: 100 });
  agent = new Agent({ connect: { ca: fake.caPem } });
});

afterAll(async () => {
  await agent?.close();
  await fake?.stop();
});

describe('FakeKubeApiServer answers in the shapes the Kubernetes API reference records', () => {
  test('a list: <Kind>List with metadata.resourceVersion; items carry no kind or apiVersion', async () => {
    const recorded = fixture('list.json');
    fake.apply('services', recorded.items[0]);
    const list = JSON.parse((await call('GET', '/api/v1/namespaces/default/services')).text);
    expect(shapeProblems(recorded, list)).toEqual([]);
    expect(list.kind).toBe('ServiceList');
    expect(list.items[0].kind).toBeUndefined();
    expect(list.items[0].apiVersion).toBeUndefined();
  });

  test('watch events: ADDED and MODIFIED with the whole object, BOOKMARK with only its resourceVersion', async () => {
    fake.remove('services', 'default', 'example');
    const from = fake.resourceVersion;
    fake.apply('services', fixture('watch-added.json').object);
    fake.apply('services', fixture('watch-modified.json').object);
    const [added, modified, bookmark] = await watchLines(`/api/v1/namespaces/default/services?watch=1&resourceVersion=${from}&allowWatchBookmarks=true`, 3) as Record<string, any>[];
    expect(shapeProblems(fixture('watch-added.json'), added)).toEqual([]);
    expect(shapeProblems(fixture('watch-modified.json'), modified)).toEqual([]);
    expect(added?.type).toBe('ADDED');
    expect(modified?.type).toBe('MODIFIED');
    expect(bookmark?.type).toBe('BOOKMARK');
    expect(shapeProblems(fixture('watch-bookmark.json'), bookmark)).toEqual([]);
    expect(Object.keys(bookmark?.object.metadata)).toEqual(['resourceVersion']);
  });

  test('a watch from a resourceVersion older than the history: an ERROR event with Status 410 Expired, then the stream ends', async () => {
    const old = fake.resourceVersion;
    fake.apply('services', { metadata: { namespace: 'default', name: 'later' }, spec: {} });
    fake.compact();
    const lines = await watchLines(`/api/v1/namespaces/default/services?watch=true&resourceVersion=${old}`, 1);
    expect(shapeProblems(fixture('watch-gone.json'), lines[0])).toEqual([]);
    expect(lines[0]).toMatchObject({ type: 'ERROR', object: { kind: 'Status', code: 410, reason: 'Expired' } });
  });

  test('an EndpointSlice as the reference shows it is stored and served back, and the adapter reads it', async () => {
    const recorded = fixture('endpointslice.json');
    const created = await call('POST', '/apis/discovery.k8s.io/v1/namespaces/default/endpointslices', recorded);
    expect(created.status).toBe(201);
    const served = JSON.parse((await call('GET', '/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/example-abc')).text);
    expect(shapeProblems(recorded, served)).toEqual([]);
    expect(summarizeSlice(recorded)).toEqual({
      namespace: 'default', name: 'example-abc', service: 'example', ports: [{ name: 'http', port: 80 }],
      endpoints: [{ addresses: ['10.1.2.3'], ready: true, serving: true, terminating: false, zone: 'us-west2-a', nodeName: 'node-1' }],
    });
  });

  test('Pods as the reference shows them: a PodList and a watch event, and the adapter reads the sidecar\'s inbound port', async () => {
    const recorded = fixture('pod-list.json');
    const from = fake.resourceVersion;
    const pod = recorded.items[0];
    expect((await call('POST', '/api/v1/namespaces/default/pods', { ...pod, metadata: { ...pod.metadata, namespace: 'default' } })).status).toBe(201);
    const list = JSON.parse((await call('GET', '/api/v1/namespaces/default/pods')).text);
    expect(shapeProblems(recorded, list)).toEqual([]);
    expect(list.kind).toBe('PodList');
    expect(list.items[0].kind).toBeUndefined();
    const [added] = await watchLines(`/api/v1/namespaces/default/pods?watch=1&resourceVersion=${from}`, 1) as Record<string, any>[];
    expect(shapeProblems(fixture('watch-pod-added.json'), added)).toEqual([]);
    expect(added).toMatchObject({ type: 'ADDED', object: { kind: 'Pod', apiVersion: 'v1' } });
    expect(summarizePod(fixture('watch-pod-added.json').object)).toEqual({ namespace: 'demo', name: 'ledger-7d9f8b6c5-x2k4q', inboundPort: 15006 });
    expect(summarizePod(added?.object)).toEqual({ namespace: 'default', name: 'ledger-7d9f8b6c5-x2k4q', inboundPort: 15006 });
  });

  test('a TokenReview of a ServiceAccount token, and a 404 Status', async () => {
    const token = fake.issueToken({ namespace: 'default', serviceAccount: 'example', audiences: ['isthmus'] });
    const review = await call('POST', '/apis/authentication.k8s.io/v1/tokenreviews', { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: ['isthmus'] } });
    expect(review.status).toBe(201);
    expect(shapeProblems(fixture('tokenreview.json'), JSON.parse(review.text))).toEqual([]);
    const missing = await call('GET', '/api/v1/namespaces/default/services/missing');
    expect(missing.status).toBe(404);
    expect(shapeProblems(fixture('status-not-found.json'), JSON.parse(missing.text))).toEqual([]);
  });

  test('the status subresource writes status only, and the main resource never writes status', async () => {
    fake.apply('serviceexports', { metadata: { namespace: 'default', name: 'example' } });
    const base = '/apis/multicluster.x-k8s.io/v1alpha1/namespaces/default/serviceexports/example';
    await call('PATCH', `${base}/status`, [{ op: 'add', path: '/status', value: { conditions: [{ type: 'Valid', status: 'True' }] } }], 'application/json-patch+json');
    await call('PATCH', base, { status: { conditions: [] }, metadata: { labels: { a: 'b' } } }, 'application/merge-patch+json');
    const stored = fake.get('serviceexports', 'default', 'example');
    expect(stored?.status).toEqual({ conditions: [{ type: 'Valid', status: 'True' }] });
    expect(stored?.metadata.labels).toEqual({ a: 'b' });
  });

  test('Secrets and ConfigMaps as `isthmus join` creates and reads them, a created Namespace, and an RBAC denial', async () => {
    expect((await call('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'isthmus-system' } })).status).toBe(201);
    expect(shapeProblems(fixture('namespace.json'), JSON.parse((await call('GET', '/api/v1/namespaces/isthmus-system')).text))).toEqual([]);
    for (const [plural, name] of [['secrets', 'secret.json'], ['configmaps', 'configmap.json']] as const) {
      const recorded = fixture(name);
      const created = await call('POST', `/api/v1/namespaces/isthmus-system/${plural}`, { ...recorded, metadata: { name: recorded.metadata.name, labels: recorded.metadata.labels } });
      expect(created.status).toBe(201);
      const served = JSON.parse((await call('GET', `/api/v1/namespaces/isthmus-system/${plural}/${recorded.metadata.name}`)).text);
      expect(shapeProblems(recorded, served)).toEqual([]);
    }
    fake.deny('get', 'secrets');
    const denied = await call('GET', '/api/v1/namespaces/isthmus-system/secrets/isthmus-cluster-ca');
    fake.allowAll();
    expect(denied.status).toBe(403);
    const status = JSON.parse(denied.text);
    expect(shapeProblems(fixture('status-forbidden.json'), status)).toEqual([]);
    expect(status.message).toBe(fixture('status-forbidden.json').message.replace('"jane"', `"${fake.adminUser}"`));
  });

  test('a SelfSubjectAccessReview: allowed with the authorizer\'s reason, or not allowed, as the rules granted say; and requests follow the same rules', async () => {
    const ask = async (verb: string, resource: string, namespace?: string) => JSON.parse((await call('POST', '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews', {
      apiVersion: 'authorization.k8s.io/v1', kind: 'SelfSubjectAccessReview', spec: { resourceAttributes: { verb, resource, group: '', ...(namespace ? { namespace } : {}) } },
    })).text);
    const allowed = await ask('create', 'secrets', 'isthmus-system');
    expect(shapeProblems(fixture('selfsubjectaccessreview.json'), allowed)).toEqual([]);
    expect(allowed.status.allowed).toBe(true);
    // A Role in isthmus-system that reads Secrets: nothing else, nowhere else.
    fake.grant([{ verbs: ['get'], resources: ['secrets'], namespaces: ['isthmus-system'] }]);
    try {
      expect((await ask('get', 'secrets', 'isthmus-system')).status.allowed).toBe(true);
      expect((await ask('create', 'secrets', 'isthmus-system')).status).toEqual({ allowed: false });
      expect((await ask('get', 'secrets', 'default')).status).toEqual({ allowed: false });
      expect((await ask('create', 'namespaces')).status).toEqual({ allowed: false });
      expect((await call('POST', '/api/v1/namespaces/isthmus-system/configmaps', { metadata: { name: 'refused' } })).status).toBe(403);
      expect((await call('GET', '/api/v1/namespaces/isthmus-system/secrets/isthmus-cluster-ca')).status).not.toBe(403);
    } finally {
      fake.allowAll();
    }
  });

  test('a subresource is its own resource to RBAC: a rule for serviceexports does not grant serviceexports/status; the refusal as the real server words it', async () => {
    fake.apply('serviceexports', { metadata: { namespace: 'default', name: 'cart' } });
    const group = 'multicluster.x-k8s.io';
    fake.grant([{ verbs: ['list', 'watch', 'patch'], resources: ['serviceexports'], apiGroups: [group] }]);
    try {
      const base = '/apis/multicluster.x-k8s.io/v1alpha1/namespaces/default/serviceexports/cart';
      const denied = await call('PATCH', `${base}/status`, [{ op: 'add', path: '/status', value: { conditions: [] } }], 'application/json-patch+json');
      expect(denied.status).toBe(403);
      const status = JSON.parse(denied.text);
      const recorded = fixture('status-forbidden-subresource.json');
      expect(shapeProblems(recorded, status)).toEqual([]);
      expect(status).toEqual({ ...recorded, message: recorded.message.replace('"jane"', `"${fake.adminUser}"`) });
      expect(fake.forbidden).toContain(`patch ${group}/serviceexports/status in default`);
      expect((await call('PATCH', base, { metadata: { labels: { a: 'b' } } }, 'application/merge-patch+json')).status).toBe(200);
      expect(fake.used).toContain(`patch ${group}/serviceexports`);
    } finally {
      fake.allowAll();
    }
  });

  test('a create in a namespace that does not exist: 404 naming the namespace, as the real server answers; apply() refuses it too', async () => {
    const refused = await call('POST', '/api/v1/namespaces/nowhere/configmaps', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c' }, data: {} });
    expect(refused.status).toBe(404);
    const status = JSON.parse(refused.text);
    expect(shapeProblems(fixture('status-namespace-not-found.json'), status)).toEqual([]);
    expect(status).toMatchObject({ message: 'namespaces "nowhere" not found', details: { name: 'nowhere', kind: 'namespaces' } });
    expect(fake.get('namespaces', undefined, 'nowhere')).toBeUndefined();
    expect(() => fake.apply('services', { metadata: { namespace: 'nowhere', name: 's' } })).toThrow('namespaces "nowhere" not found');
    // A terminating namespace takes nothing new (the NamespaceLifecycle admission plugin).
    fake.apply('namespaces', { metadata: { name: 'leaving' }, status: { phase: 'Terminating' } });
    const closing = await call('POST', '/api/v1/namespaces/leaving/configmaps', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c' }, data: {} });
    expect(closing.status).toBe(403);
    expect(JSON.parse(closing.text).message).toBe('configmaps "c" is forbidden: unable to create new content in namespace leaving because it is being terminated');
    // Reading an object there is a plain 404 of the object; listing is an empty list.
    expect((await call('GET', '/api/v1/namespaces/nowhere/configmaps/c')).status).toBe(404);
    expect(JSON.parse((await call('GET', '/api/v1/namespaces/nowhere/configmaps')).text).items).toEqual([]);
  });

  test('a request without the bearer token is refused', async () => {
    const res = await request(`${fake.url}/api/v1/services`, { dispatcher: agent });
    expect(res.statusCode).toBe(401);
    await res.body.text();
  });
});
