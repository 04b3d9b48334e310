import { afterAll, beforeAll, expect, test } from 'vitest';
import { serviceProtocol } from '../../sidecar/tcp-protocol.js';
import { FakeKubeApiServer, type KubeObject } from '../../../test/helpers/fake-kube-api-server.js';
import { waitFor } from '../../../test/helpers/cli.js';
import { testKubePlatform } from '../../../test/helpers/kube-platform.js';
import { desiredRecords } from '../desired-records.js';
import { KubernetesPlatform } from './kube-platform.js';

// Every port of a Service, from FakeKubeApiServer over real HTTPS on 127.0.166.2, into the
// export record the federation publishes, the ServiceImport the adapter writes, and the
// protocol a sidecar's listener takes from the catalog.
let fake: FakeKubeApiServer;

beforeAll(async () => {
  fake = await FakeKubeApiServer.start({ host: '127.0.166.2' });
  fake.apply('namespaces', { metadata: { name: 'shop' } });
});

afterAll(async () => {
  await fake?.stop();
});


const cart = (ports: unknown[]): KubeObject => ({ metadata: { namespace: 'shop', name: 'cart' }, spec: { type: 'ClusterIP', clusterIP: '10.96.0.7', ports } });

test('a Service with HTTP, gRPC and Redis ports (and a UDP one) is exported with all three TCP ports, imported with each port\'s appProtocol, and its protocol changes follow', async () => {
  fake.apply('services', cart([
    { name: 'http', port: 80, protocol: 'TCP', targetPort: 8080, appProtocol: 'http' },
    { name: 'grpc-api', port: 9000, protocol: 'TCP', targetPort: 9000 },
    { name: 'cache', port: 6379, protocol: 'TCP', appProtocol: 'redis' },
    { name: 'dns', port: 53, protocol: 'UDP' },
  ]));
  fake.apply('endpointslices', {
    metadata: { namespace: 'shop', name: 'cart-x1', labels: { 'kubernetes.io/service-name': 'cart' } }, addressType: 'IPv4',
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }, { name: 'grpc-api', port: 9000, protocol: 'TCP' }, { name: 'cache', port: 6379, protocol: 'TCP' }],
    endpoints: [{ addresses: ['10.1.0.5'], conditions: { ready: true }, zone: 'a', targetRef: { kind: 'Pod', namespace: 'shop', name: 'cart-1' } }],
  });
  // The pod runs the sidecar: its endpoint is an instance (at the sidecar's inbound).
  fake.apply('pods', { metadata: { namespace: 'shop', name: 'cart-1' }, spec: { initContainers: [{ name: 'isthmus-sidecar', ports: [{ name: 'isthmus-in', containerPort: 15006 }] }], containers: [{ name: 'cart' }] } });
  fake.apply('serviceexports', { metadata: { namespace: 'shop', name: 'cart' } });
  const p = testKubePlatform(fake, '  namespaces: [shop]\n');
  await p.start(() => undefined);
  try {
    const exported = () => desiredRecords({ cluster: 'east', trustDomain: 'mesh.test', zones: ['a'], services: p.services(), exported: new Set(p.exports().keys()), isHealthy: () => true, gateways: [] }).get('/isthmus/v1/exports/east/shop/cart') as { ports: unknown[]; zones: unknown };
    expect(exported().ports).toEqual([
      { name: 'http', port: 80, protocol: 'http' },
      { name: 'grpc-api', port: 9000, protocol: 'h2c' },
      { name: 'cache', port: 6379, protocol: 'tcp' },
    ]);
    expect(exported().zones).toEqual({ a: { healthy: 1, total: 1 } });

    // What a sidecar's listener without a protocol of its own decides from the catalog: HTTP while any port is.
    const entryOf = (ports: { port: number; protocol: string; name?: string }[]) => ({ namespace: 'shop', name: 'cart', clusters: [{ cluster: 'east', region: 'us', zones: [], gateways: [], identities: [], ports }] });
    expect(serviceProtocol(entryOf(exported().ports as never))).toBe('http');

    p.meshChanged({ catalog: { revision: 1, clusters: [], invalidKeys: [], services: [] }, exportedAt: new Map() });
    await waitFor(async () => fake.get('serviceimports', 'shop', 'cart')?.status !== undefined, 5000, 'the ServiceImport');
    expect((fake.get('serviceimports', 'shop', 'cart') as KubeObject).spec).toEqual({
      type: 'ClusterSetIP', ips: [],
      ports: [
        { name: 'http', port: 80, protocol: 'TCP', appProtocol: 'http' },
        { name: 'grpc-api', port: 9000, protocol: 'TCP', appProtocol: 'kubernetes.io/h2c' },
        { name: 'cache', port: 6379, protocol: 'TCP' },
      ],
    });

    // The HTTP and gRPC ports removed: a TCP-only service, in the record, the import and the sidecar's choice.
    fake.apply('services', cart([{ name: 'cache', port: 6379, protocol: 'TCP', appProtocol: 'redis' }]));
    await waitFor(async () => exported().ports.length === 1, 5000, 'the export to carry one port');
    expect(serviceProtocol(entryOf(exported().ports as never))).toBe('tcp');
    p.meshChanged({ catalog: { revision: 2, clusters: [], invalidKeys: [], services: [] }, exportedAt: new Map() });
    await waitFor(async () => ((fake.get('serviceimports', 'shop', 'cart')?.spec as { ports: unknown[] }).ports.length === 1), 5000, 'the import to carry one port');
    expect((fake.get('serviceimports', 'shop', 'cart')?.spec as { ports: unknown[] }).ports).toEqual([{ name: 'cache', port: 6379, protocol: 'TCP' }]);
  } finally {
    await p.stop();
  }
});
