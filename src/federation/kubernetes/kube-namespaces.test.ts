import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { FakeKubeApiServer, type KubeObject } from '../../../test/helpers/fake-kube-api-server.js';
import { waitFor } from '../../../test/helpers/cli.js';
import { testKubePlatform } from '../../../test/helpers/kube-platform.js';
import { inMesh } from './kube-namespaces.js';
import { summarizeNamespace, type NamespaceSummary } from './kube-objects.js';
import { KubernetesPlatform } from './kube-platform.js';

const ns = (name: string, mesh?: 'enabled' | 'disabled', terminating = false): [string, NamespaceSummary] => [name, { name, ...(mesh ? { mesh } : {}), terminating }];
const namespaces = new Map([ns('plain'), ns('on', 'enabled'), ns('off', 'disabled'), ns('going', 'enabled', true)]);

describe('which namespaces are in the mesh', () => {
  test.each([
    ['plain', [], false, true],
    ['plain', [], true, false],
    ['on', [], true, true],
    ['off', [], false, false],
    ['off', ['off'], false, false],
    ['going', [], false, false],
    ['absent', [], false, false],
    ['plain', ['on'], false, false],
    ['on', ['on'], true, true],
  ])('%s (listed %j, requireMeshLabel %s): %s', (name, listed, requireMeshLabel, expected) => {
    expect(inMesh(name, { namespaces, listed, requireMeshLabel })).toBe(expected);
  });

  test('a Namespace object: the label, and Terminating by phase or deletionTimestamp', () => {
    expect(summarizeNamespace({ metadata: { name: 'a', labels: { 'isthmus.dev/mesh': 'enabled' } }, status: { phase: 'Active' } })).toEqual({ name: 'a', mesh: 'enabled', terminating: false });
    expect(summarizeNamespace({ metadata: { name: 'b', labels: { 'isthmus.dev/mesh': 'yes' } }, status: { phase: 'Terminating' } })).toEqual({ name: 'b', terminating: true });
    expect(summarizeNamespace({ metadata: { name: 'c', deletionTimestamp: '2026-01-01T00:00:00Z' } })).toEqual({ name: 'c', terminating: true });
  });
});

// The adapter against FakeKubeApiServer over real HTTPS on 127.0.167.2.
let fake: FakeKubeApiServer;

beforeAll(async () => {
  fake = await FakeKubeApiServer.start({ host: '127.0.167.2' });
});

afterAll(async () => {
  await fake?.stop();
});


const svc = (namespace: string, name: string): KubeObject => ({ metadata: { namespace, name }, spec: { type: 'ClusterIP', clusterIP: '10.96.0.9', ports: [{ name: 'http', port: 80, protocol: 'TCP' }] } });
const namespace = (name: string, labels: Record<string, string> = {}, phase = 'Active'): KubeObject => ({ metadata: { name, labels }, status: { phase } });
const names = (p: KubernetesPlatform) => p.services().map((s) => `${s.namespace}/${s.name}`);
/** The west cluster exports one service of each namespace: which get a ServiceImport here? */
const westExports = (...spaces: string[]) => ({
  catalog: { revision: 1, clusters: [], invalidKeys: [], services: spaces.map((n) => ({ namespace: n, name: 'remote', clusters: [{ cluster: 'west', region: 'us', zones: [], gateways: [], identities: [], ports: [{ name: 'http', port: 80, protocol: 'http' }] }] })) },
  exportedAt: new Map(spaces.map((n) => [`west/${n}/remote`, '2026-01-01T00:00:00Z'])),
});

describe('the adapter watches Namespaces', () => {
  test('a namespace labelled isthmus.dev/mesh: disabled is out (no services, exports or imports) until its label changes; deleting a namespace unexports its services at once', async () => {
    fake.apply('namespaces', namespace('shop'));
    fake.apply('namespaces', namespace('legacy', { 'isthmus.dev/mesh': 'disabled' }));
    for (const space of ['shop', 'legacy']) {
      fake.apply('services', svc(space, 'cart'));
      fake.apply('serviceexports', { metadata: { namespace: space, name: 'cart' } });
    }
    const p = testKubePlatform(fake);
    await p.start(() => undefined);
    try {
      expect(names(p)).toEqual(['shop/cart']);
      expect([...p.exports().keys()]).toEqual(['shop/cart']);
      p.meshChanged(westExports('shop', 'legacy'));
      await waitFor(async () => fake.get('serviceimports', 'shop', 'remote') !== undefined, 5000, 'shop\'s ServiceImport');
      expect(fake.get('serviceimports', 'legacy', 'remote')).toBeUndefined();

      fake.apply('namespaces', namespace('legacy', { 'isthmus.dev/mesh': 'enabled' }));
      await waitFor(async () => names(p).includes('legacy/cart'), 5000, 'legacy in the mesh once enabled');
      expect([...p.exports().keys()].sort()).toEqual(['legacy/cart', 'shop/cart']);
      await waitFor(async () => fake.get('serviceimports', 'legacy', 'remote') !== undefined, 5000, 'legacy\'s ServiceImport');

      // Deleting a namespace: first it terminates, then it is gone; its Service and ServiceExport
      // objects are still listed (the namespace controller has not removed them yet).
      fake.apply('namespaces', namespace('shop', {}, 'Terminating'));
      await waitFor(async () => !names(p).includes('shop/cart'), 5000, 'shop\'s services out while it terminates');
      expect([...p.exports().keys()]).toEqual(['legacy/cart']);
      fake.remove('namespaces', undefined, 'shop');
      fake.apply('namespaces', namespace('legacy', { 'isthmus.dev/mesh': 'enabled' }));
      await waitFor(async () => fake.get('serviceimports', 'legacy', 'remote') !== undefined, 5000, 'legacy still imported');
      expect(names(p)).toEqual(['legacy/cart']);
      expect(fake.get('services', 'shop', 'cart')).toBeDefined();
    } finally {
      await p.stop();
    }
  });

  test('with requireMeshLabel only namespaces labelled enabled are in', async () => {
    fake.apply('namespaces', namespace('optin', { 'isthmus.dev/mesh': 'enabled' }));
    fake.apply('services', svc('optin', 'api'));
    fake.apply('namespaces', namespace('unlabelled'));
    fake.apply('services', svc('unlabelled', 'api'));
    const p = testKubePlatform(fake, '  requireMeshLabel: true');
    await p.start(() => undefined);
    try {
      expect(names(p)).toEqual(['legacy/cart', 'optin/api']);
    } finally {
      await p.stop();
    }
  });
});
