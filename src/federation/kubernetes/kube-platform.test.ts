import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { isIsthmusError } from '../../core/errors.js';
import { silentLogger } from '../../core/log.js';
import { FakeKubeApiServer, type KubeObject } from '../../../test/helpers/fake-kube-api-server.js';
import { waitFor } from '../../../test/helpers/cli.js';
import { testKubePlatform } from '../../../test/helpers/kube-platform.js';
import { createMetrics } from '../../telemetry/metrics.js';
import { parseClusterConfig } from '../config.js';
import { KubernetesPlatform } from './kube-platform.js';

// The adapter against FakeKubeApiServer over real HTTPS on 127.0.161.3 (no etcd: the mesh's
// side is a catalog handed to meshChanged, as the federation hands it).
let fake: FakeKubeApiServer;

beforeAll(async () => {
  fake = await FakeKubeApiServer.start({ host: '127.0.161.3' });
  for (const name of ['bulk', 'demo', 'other', 'shop', 'team-a', 'team-b']) fake.apply('namespaces', { metadata: { name } });
});

afterAll(async () => {
  await fake?.stop();
});


const svc = (namespace: string, name: string, port = 80): KubeObject => ({ metadata: { namespace, name }, spec: { type: 'ClusterIP', clusterIP: '10.96.0.10', ports: [{ name: 'http', port, protocol: 'TCP', targetPort: 8080 }] } });

describe('the kubernetes platform', () => {
  test('a ServiceAccount token gets its own identity only; a token without our audience gets none', async () => {
    const p = testKubePlatform(fake);
    const a = fake.issueToken({ namespace: 'demo', serviceAccount: 'a', audiences: ['isthmus'] });
    expect(await p.reviewToken(a)).toEqual({ namespace: 'demo', serviceAccount: 'a' });
    const other = fake.issueToken({ namespace: 'demo', serviceAccount: 'b', audiences: ['https://kubernetes.default.svc'] });
    await expect(p.reviewToken(other)).rejects.toSatisfy((err) => isIsthmusError(err, 'ISTHMUS_ERR_TRUST_TOKEN_INVALID'));
    await expect(p.reviewToken('not-a-token')).rejects.toSatisfy((err) => isIsthmusError(err, 'ISTHMUS_ERR_TRUST_TOKEN_INVALID'));
  });

  test('services of the watched namespaces only; the mesh\'s imports become ServiceImports and a conflicting export says so', async () => {
    fake.apply('services', svc('shop', 'cart', 8080));
    fake.apply('services', svc('other', 'hidden'));
    fake.apply('serviceexports', { metadata: { namespace: 'shop', name: 'cart' } });
    const p = testKubePlatform(fake, '  namespaces: [shop]');
    let changes = 0;
    await p.start(() => { changes += 1; });
    try {
      expect(p.services().map((s) => `${s.namespace}/${s.name}`)).toEqual(['shop/cart']);
      expect([...p.exports().keys()]).toEqual(['shop/cart']);
      // west exported shop/cart first, on port 80; east's export (8080) is younger: a conflict.
      p.meshChanged({
        catalog: { revision: 1, clusters: [], invalidKeys: [], services: [{ namespace: 'shop', name: 'cart', clusters: [
          { cluster: 'east', region: 'us', zones: [], gateways: [], identities: [], ports: [{ name: 'http', port: 8080, protocol: 'http' }] },
          { cluster: 'west', region: 'us', zones: [], gateways: [], identities: [], ports: [{ name: 'http', port: 80, protocol: 'http' }] },
        ] }] },
        exportedAt: new Map([['west/shop/cart', '2026-01-01T00:00:00Z'], ['east/shop/cart', '2026-02-01T00:00:00Z']]),
      });
      await waitFor(async () => fake.get('serviceimports', 'shop', 'cart')?.status !== undefined, 5000, 'the ServiceImport');
      const imported = fake.get('serviceimports', 'shop', 'cart') as KubeObject;
      expect(imported.spec).toEqual({ type: 'ClusterSetIP', ports: [{ name: 'http', port: 80, protocol: 'TCP', appProtocol: 'http' }], ips: [] });
      expect(imported.status).toEqual({ clusters: [{ cluster: 'east' }, { cluster: 'west' }] });
      expect(imported.metadata.labels).toEqual({ 'app.kubernetes.io/managed-by': 'isthmus' });
      await waitFor(async () => (fake.get('serviceexports', 'shop', 'cart')?.status as any)?.conditions?.length === 2, 5000, 'export conditions');
      const conditions = (fake.get('serviceexports', 'shop', 'cart')?.status as any).conditions;
      expect(conditions.map((c: any) => [c.type, c.status, c.reason])).toEqual([['Valid', 'True', 'ServiceExported'], ['Conflict', 'True', 'PortConflict']]);
      // The ServiceExport deleted by the user, and west's export gone: the service is exported
      // nowhere, and its ServiceImport goes.
      fake.remove('serviceexports', 'shop', 'cart');
      await waitFor(async () => p.exports().size === 0 && changes > 0, 5000, 'the export to go');
      p.meshChanged({ catalog: { revision: 2, clusters: [], invalidKeys: [], services: [] }, exportedAt: new Map() });
      await waitFor(async () => fake.get('serviceimports', 'shop', 'cart') === undefined, 5000, 'the ServiceImport to be deleted');
    } finally {
      await p.stop();
    }
    // Every watch the platform opened is closed on the server too.
    await waitFor(async () => fake.openWatches === 0, 5000, 'no watch left open');
  });

  test('with no namespaces listed, it watches the whole cluster', async () => {
    fake.apply('services', svc('team-a', 'api'));
    fake.apply('services', svc('team-b', 'web'));
    fake.apply('serviceexports', { metadata: { namespace: 'team-b', name: 'web' } });
    const p = testKubePlatform(fake);
    await p.start(() => undefined);
    try {
      expect(p.services().map((s) => `${s.namespace}/${s.name}`)).toEqual(expect.arrayContaining(['team-a/api', 'team-b/web', 'other/hidden']));
      expect([...p.exports().keys()]).toEqual(['team-b/web']);
      expect(fake.requests).toContain('GET /apis/multicluster.x-k8s.io/v1alpha1/serviceexports');
    } finally {
      await p.stop();
    }
  });

  test('endpoints left out of the mesh are counted by reason, and the federation\'s isthmus_kubernetes_endpoints_skipped gauge says so', async () => {
    fake.apply('services', svc('shop', 'plain'));
    fake.apply('pods', { metadata: { namespace: 'shop', name: 'plain-1' }, spec: { containers: [{ name: 'app', ports: [{ containerPort: 8080 }] }] } });
    fake.apply('endpointslices', {
      metadata: { namespace: 'shop', name: 'plain-abc', labels: { 'kubernetes.io/service-name': 'plain' } }, addressType: 'IPv4', ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
      endpoints: [
        { addresses: ['10.1.0.7'], conditions: { ready: true }, targetRef: { kind: 'Pod', namespace: 'shop', name: 'plain-1' } },
        { addresses: ['192.0.2.10'], conditions: { ready: true } },
      ],
    });
    const p = testKubePlatform(fake, '  namespaces: [shop]');
    await p.start(() => undefined);
    try {
      expect(p.skippedEndpoints()).toEqual({ 'no-sidecar': 1, 'not-a-pod': 1 });
      const metrics = createMetrics('federation', { cluster: 'east' }, { skippedEndpoints: () => p.skippedEndpoints() });
      const lines = (await metrics.exposition()).body.split('\n').filter((l) => l.startsWith('isthmus_kubernetes_endpoints_skipped{'));
      expect(lines).toEqual(['isthmus_kubernetes_endpoints_skipped{cluster="east",reason="no-sidecar"} 1', 'isthmus_kubernetes_endpoints_skipped{cluster="east",reason="not-a-pod"} 1']);
    } finally {
      await p.stop();
      fake.remove('endpointslices', 'shop', 'plain-abc');
      fake.remove('pods', 'shop', 'plain-1');
      fake.remove('services', 'shop', 'plain');
    }
  });

  test('a kubeconfig that cannot be loaded stops the start with ISTHMUS_ERR_KUBERNETES_UNREACHABLE, naming the file', () => {
    const loaded = parseClusterConfig('cluster: east\nregion: us\nzones: [a]\ntrustDomain: mesh.test\netcd: { endpoints: ["http://127.0.0.1:1"] }\nplatform: kubernetes\nkubernetes: { kubeconfig: missing-kubeconfig }\n', '/tmp/east/cluster.yaml');
    expect(() => new KubernetesPlatform(loaded, silentLogger)).toThrow(/\/tmp\/east\/missing-kubeconfig/);
    try {
      new KubernetesPlatform(loaded, silentLogger);
    } catch (err) {
      expect(isIsthmusError(err, 'ISTHMUS_ERR_KUBERNETES_UNREACHABLE')).toBe(true);
    }
  });

  test('10,000 Services: the adapter\'s heap grows by its summaries, bounded (figure in docs/kubernetes.md)', async () => {
    for (let i = 0; i < 10_000; i += 1) {
      fake.apply('services', {
        metadata: {
          namespace: 'bulk', name: `svc-${i}`, labels: { app: `svc-${i}`, team: 'load' },
          annotations: { 'kubectl.kubernetes.io/last-applied-configuration': JSON.stringify(svc('bulk', `svc-${i}`)) },
        },
        spec: { type: 'ClusterIP', clusterIP: `10.96.${i >> 8}.${i & 255}`, selector: { app: `svc-${i}` }, ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }] },
      });
    }
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const p = testKubePlatform(fake, '  namespaces: [bulk]');
    gc();
    const before = process.memoryUsage().heapUsed;
    await p.start(() => undefined);
    try {
      expect(p.services()).toHaveLength(10_000);
      gc();
      const grown = process.memoryUsage().heapUsed - before;
      console.log(`heap growth with 10,000 Services synced: ${(grown / 1024 / 1024).toFixed(1)} MiB (${Math.round(grown / 10_000)} bytes per Service)`);
      // Summaries and the federation's view of each service, not the API's whole objects
      // (each of those is ~1 KiB here, and the typed list of them is garbage once summarized).
      expect(grown).toBeLessThan(10_000 * 1024);
    } finally {
      await p.stop();
    }
  }, 120_000);
});
