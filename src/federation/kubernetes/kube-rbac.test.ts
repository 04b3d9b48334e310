import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Catalog } from '../../model/catalog.js';
import { FakeKubeApiServer, type KubeObject, type RbacRule } from '../../../test/helpers/fake-kube-api-server.js';
import { waitFor } from '../../../test/helpers/cli.js';
import { testKubePlatform } from '../../../test/helpers/kube-platform.js';
import { isObj, loadManifests, root, type Obj } from '../../../test/helpers/manifests.js';

// Least privilege, checked: the adapter runs against FakeKubeApiServer (real HTTPS on
// 127.0.34.1) with exactly the rights deploy/multi-cluster/base/federation.yaml gives the
// federation's ServiceAccount, through the whole flow it has in a cluster. A verb the adapter
// needs and the manifest lacks is refused (403) and the flow stops; a verb the manifest grants
// and the adapter never used is reported.

const account = { namespace: 'isthmus-system', name: 'isthmus-federation' };

/** The rules bound to the federation's ServiceAccount: ClusterRoles through ClusterRoleBindings, Roles (or ClusterRoles) through RoleBindings. */
function federationRules(): RbacRule[] {
  const docs = loadManifests([join(root, 'deploy/multi-cluster/base/federation.yaml')]).manifests.map((m) => m.doc);
  const named = (kind: string, name: unknown, namespace?: string) => docs.find((d) => d.kind === kind && isObj(d.metadata) && d.metadata.name === name && (namespace === undefined || d.metadata.namespace === namespace));
  const rules: RbacRule[] = [];
  for (const binding of docs.filter((d) => d.kind === 'ClusterRoleBinding' || d.kind === 'RoleBinding')) {
    const subjects = (binding.subjects ?? []) as Obj[];
    if (!subjects.some((s) => s.kind === 'ServiceAccount' && s.name === account.name && s.namespace === account.namespace)) continue;
    const ref = binding.roleRef as Obj;
    const bindingNamespace = isObj(binding.metadata) ? String(binding.metadata.namespace) : '';
    const role = named(String(ref.kind), ref.name, ref.kind === 'Role' ? bindingNamespace : undefined);
    expect(role, `${String(binding.kind)} ${String(ref.kind)}/${String(ref.name)}`).toBeDefined();
    for (const rule of (role?.rules ?? []) as Obj[]) {
      rules.push({
        verbs: rule.verbs as string[], resources: rule.resources as string[], apiGroups: rule.apiGroups as string[],
        ...(rule.resourceNames ? { resourceNames: rule.resourceNames as string[] } : {}),
        ...(binding.kind === 'RoleBinding' ? { namespaces: [bindingNamespace] } : {}),
      });
    }
  }
  return rules;
}

/** Every (verb, resource) the rules grant, as the fake records what was used: `<verb> <group>/<resource>`. */
function grantedPairs(rules: RbacRule[]): string[] {
  return rules.flatMap((r) => (r.apiGroups ?? ['']).flatMap((g) => r.resources.flatMap((res) => r.verbs.map((v) => `${v} ${g}/${res}`)))).sort();
}

const cluster = (name: string, port: number) => ({ cluster: name, region: 'us', zones: [], gateways: [], identities: [], ports: [{ name: 'http', port, protocol: 'http' as const }] });
const catalog = (revision: number, services: Catalog['services']): Catalog => ({ revision, clusters: [], invalidKeys: [], services });

let fake: FakeKubeApiServer;
const rules = federationRules();

beforeAll(async () => {
  fake = await FakeKubeApiServer.start({ host: '127.0.34.1' });
  fake.grant(rules);
  fake.apply('namespaces', { metadata: { name: 'shop' } });
  fake.apply('nodes', { metadata: { name: 'node-1', labels: { 'topology.kubernetes.io/zone': 'a', 'topology.kubernetes.io/region': 'us' } } });
  fake.apply('services', { metadata: { namespace: 'shop', name: 'cart' }, spec: { type: 'ClusterIP', clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }] } });
  fake.apply('pods', {
    metadata: { namespace: 'shop', name: 'cart-1' },
    spec: { nodeName: 'node-1', initContainers: [{ name: 'isthmus-sidecar', restartPolicy: 'Always', ports: [{ name: 'isthmus-in', containerPort: 15006, protocol: 'TCP' }] }], containers: [{ name: 'app', ports: [{ containerPort: 8080 }] }] },
  });
  fake.apply('endpointslices', {
    metadata: { namespace: 'shop', name: 'cart-abc', labels: { 'kubernetes.io/service-name': 'cart' } },
    addressType: 'IPv4', ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    endpoints: [{ addresses: ['10.1.0.5'], conditions: { ready: true, serving: true, terminating: false }, nodeName: 'node-1', targetRef: { kind: 'Pod', namespace: 'shop', name: 'cart-1' } }],
  });
  fake.apply('serviceexports', { metadata: { namespace: 'shop', name: 'cart' } });
});

afterAll(async () => {
  await fake?.stop();
});

describe('the federation\'s ClusterRole in deploy/ grants exactly what the adapter uses', () => {
  test.each([
    ['the whole cluster', ''],
    ['listed namespaces', '  namespaces: [shop]'],
  ])('watching %s: Services, EndpointSlices, Pods, Nodes, Namespaces, ServiceExports → ServiceImports, status conditions, TokenReview, nothing refused', async (_, scope) => {
    const p = testKubePlatform(fake, scope);
    await p.start(() => undefined);
    try {
      expect(p.services().map((s) => [s.name, s.instances.map((i) => i.address)])).toEqual([['cart', ['10.1.0.5:15006']]]);
      // west exported shop/cart first: the ServiceImport is created, its status written, and
      // this cluster's export is told about the conflict (its status subresource).
      p.meshChanged({ catalog: catalog(1, [{ namespace: 'shop', name: 'cart', clusters: [cluster('east', 80), cluster('west', 8080)] }]), exportedAt: new Map([['west/shop/cart', '2026-01-01T00:00:00Z'], ['east/shop/cart', '2026-02-01T00:00:00Z']]) });
      await waitFor(async () => (fake.get('serviceexports', 'shop', 'cart')?.status as { conditions?: { reason: string }[] } | undefined)?.conditions?.some((c) => c.reason === 'PortConflict'), 5000, 'the Conflict condition');
      await waitFor(async () => fake.get('serviceimports', 'shop', 'cart')?.status !== undefined, 5000, 'the ServiceImport');
      // west changes its ports: the existing ServiceImport is patched.
      p.meshChanged({ catalog: catalog(2, [{ namespace: 'shop', name: 'cart', clusters: [cluster('east', 80), cluster('west', 9090)] }]), exportedAt: new Map([['west/shop/cart', '2026-01-01T00:00:00Z'], ['east/shop/cart', '2026-02-01T00:00:00Z']]) });
      await waitFor(async () => ((fake.get('serviceimports', 'shop', 'cart') as KubeObject | undefined)?.spec as { ports?: { port: number }[] } | undefined)?.ports?.[0]?.port === 9090, 5000, 'the patched ServiceImport');
      // Exported nowhere any more: the ServiceImport is deleted.
      p.meshChanged({ catalog: catalog(3, []), exportedAt: new Map() });
      fake.remove('serviceexports', 'shop', 'cart');
      await waitFor(async () => fake.get('serviceimports', 'shop', 'cart') === undefined, 5000, 'the ServiceImport to be deleted');
      const token = fake.issueToken({ namespace: 'shop', serviceAccount: 'cart', audiences: ['isthmus'] });
      expect(await p.reviewToken(token)).toEqual({ namespace: 'shop', serviceAccount: 'cart' });
    } finally {
      await p.stop();
      fake.apply('serviceexports', { metadata: { namespace: 'shop', name: 'cart' } });
    }
    expect(fake.forbidden, 'requests the manifest does not allow').toEqual([]);
  });

  test('every verb the manifest grants was used by the flows above', () => {
    const unused = grantedPairs(rules).filter((pair) => !fake.used.has(pair));
    expect(unused, 'granted in deploy/multi-cluster/base/federation.yaml but never used by the adapter').toEqual([]);
  });

  test('a verb taken from the role stops the flow with 403, in the real authorizer\'s words', async () => {
    fake.deny('patch', 'serviceexports/status');
    const p = testKubePlatform(fake, '  namespaces: [shop]');
    await p.start(() => undefined);
    try {
      p.meshChanged({ catalog: catalog(4, []), exportedAt: new Map() });
      await waitFor(async () => fake.forbidden.length > 0, 5000, 'a refusal');
      expect(fake.forbidden[0]).toBe('patch multicluster.x-k8s.io/serviceexports/status in shop');
      expect(fake.get('serviceexports', 'shop', 'cart')?.status).toBeUndefined();
    } finally {
      await p.stop();
      fake.allowAll();
      fake.grant(rules);
    }
  });
});
