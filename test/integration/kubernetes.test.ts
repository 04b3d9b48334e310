import { appendFileSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { connect, createServer as createTcpServer, type AddressInfo, type Server as TcpServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { keys } from '../../src/core/keys.js';
import { silentLogger } from '../../src/core/log.js';
import { startDevSidecar, writeSidecarFiles, type DevSidecar, type DevSidecarSettings } from '../../src/dev/dev-sidecar.js';
import { defaultImage, podFacts, serviceFacts, sidecarContainer } from '../../src/inject/sidecar-spec.js';
import { MeshProcess } from '../../src/dev/mesh-process.js';
import { createCsr } from '../../src/trust/ca.js';
import { apiClient, isthmusOk, waitFor, type ApiClient } from '../helpers/cli.js';
import { FakeKubeApiServer, type KubeObject } from '../helpers/fake-kube-api-server.js';
import { TestMesh, freePort, type TestCluster, type TestOperator } from '../helpers/mesh.js';
import { viaProxy } from '../helpers/proxy.js';
import { etcdEnv, rawEtcd } from '../helpers/etcd.js';

// Two clusters on `platform: kubernetes`, each with its own FakeKubeApiServer (east on
// 127.0.24.x, west on 127.0.25.x), one real etcd, real federation and gateway processes and
// in-process sidecars whose certificates are bought with ServiceAccount tokens. Everything a
// user does is done to the API servers, as kubectl would: nothing is registered or exported
// through the isthmus CLI. ledger's EndpointSlice says what a real cluster's does, the app's
// port; its Pod says where its sidecar's inbound is (the container port `isthmus-in`).
let mesh: TestMesh;
let east: TestCluster;
let west: TestCluster;
let eastKube: FakeKubeApiServer;
let westKube: FakeKubeApiServer;
let etcd: Etcd3;
let eastApi: ApiClient;
let gateway: MeshProcess;
let ledgerSidecar: DevSidecar;
type DevSidecarListener = DevSidecarSettings['listeners'][number];
let clientSidecar: DevSidecar;
let app: Server;
let ledgerInbound: number;
let appPort: number;
let operator: TestOperator;
let logDir: string;
// cart: one pod with three app ports (two HTTP, one TCP) behind one sidecar, run as a process
// with the arguments `isthmus inject` gives it.
let cartApps: { web: Server; admin: Server; cache: TcpServer };
const cartPorts = { web: 0, admin: 0, cache: 0 };
let cartSidecar: MeshProcess | undefined;
let cartInbound: number;
/** west's client's TCP listener for cart's cache port. */
let cartListen: string;

const service = (name: string, port: number): KubeObject => ({
  metadata: { namespace: 'demo', name },
  spec: { type: 'ClusterIP', clusterIP: '10.96.0.20', selector: { app: name }, ports: [{ name: 'http', port, protocol: 'TCP', targetPort: 'http' }] },
});

/** A slice as the EndpointSlice controller writes it: the pod's IP, the app's container port, the Pod as targetRef. */
const slice = (name: string, port: number, ready: boolean, pod = 'ledger-7d9f'): KubeObject => ({
  metadata: { namespace: 'demo', name: `${name}-abc12`, labels: { 'kubernetes.io/service-name': name } },
  addressType: 'IPv4',
  ports: [{ name: 'http', protocol: 'TCP', port }],
  endpoints: [{ addresses: ['127.0.24.1'], conditions: { ready, serving: ready, terminating: false }, nodeName: 'east-node-1', targetRef: { kind: 'Pod', namespace: 'demo', name: pod } }],
});

/** A pod as `isthmus inject` leaves it: the sidecar's inbound port named isthmus-in (or no sidecar at all). */
const pod = (name: string, app: number, inbound?: number): KubeObject => ({
  metadata: { namespace: 'demo', name, labels: { app: name.split('-')[0] as string } },
  spec: {
    ...(inbound === undefined ? {} : { initContainers: [{ name: 'isthmus-sidecar', restartPolicy: 'Always', ports: [{ name: 'isthmus-out', containerPort: 15001, protocol: 'TCP' }, { name: 'isthmus-in', containerPort: inbound, protocol: 'TCP' }] }] }),
    containers: [{ name: 'app', ports: [{ name: 'http', containerPort: app, protocol: 'TCP' }] }],
  },
  status: { podIP: '127.0.24.1' },
});

async function exportRecord(cluster: string, name: string): Promise<any> {
  return await etcd.get(keys.export(cluster, 'demo', name)).json();
}

function conditionsOf(kube: FakeKubeApiServer, name: string): Record<string, string> {
  const conditions = ((kube.get('serviceexports', 'demo', name)?.status as any)?.conditions ?? []) as { type: string; status: string; reason: string }[];
  return Object.fromEntries(conditions.map((c) => [c.type, `${c.status}/${c.reason}`]));
}

beforeAll(async () => {
  logDir = mkdtempSync(join(tmpdir(), 'isthmus-k8s-'));
  mesh = await TestMesh.create();
  etcd = rawEtcd(mesh.etcd);
  const ca = await mesh.caInit('ca', 'mesh.test');
  operator = await mesh.operator(ca);
  const gatewayPort = await freePort('127.0.24.1');
  east = await mesh.join('east', { index: 24, ca, region: 'us-east', zones: ['a', 'b'], gateways: [`127.0.24.1:${gatewayPort}`] });
  west = await mesh.join('west', { index: 25, ca, region: 'us-west' });
  eastKube = await FakeKubeApiServer.start({ host: '127.0.24.2' });
  westKube = await FakeKubeApiServer.start({ host: '127.0.25.2' });
  for (const [cluster, kube] of [[east, eastKube], [west, westKube]] as const) {
    appendFileSync(cluster.config, `platform: kubernetes\nkubernetes:\n  kubeconfig: ${kube.writeKubeconfig()}\n  namespaces: [demo]\n  gatewayServiceAccount: isthmus-system/isthmus-gateway\n`);
  }

  // The demo namespace in both clusters, as `kubectl apply -f namespace.yaml` makes it (the API server refuses objects of a namespace that does not exist).
  for (const kube of [eastKube, westKube]) kube.apply('namespaces', { metadata: { name: 'demo' } });
  // east runs ledger on a node in zone b: an app that says who called it, and its sidecar's
  // inbound in front of it on another port of the same pod IP.
  app = createServer((req, res) => res.end(JSON.stringify({ cluster: 'east', path: req.url, xfcc: req.headers['x-forwarded-client-cert'] ?? null })));
  await new Promise<void>((resolve) => app.listen(0, '127.0.24.1', resolve));
  appPort = (app.address() as AddressInfo).port;
  ledgerInbound = await freePort('127.0.24.1');
  eastKube.apply('nodes', { metadata: { name: 'east-node-1', labels: { 'topology.kubernetes.io/zone': 'b', 'topology.kubernetes.io/region': 'us-east' } } });
  eastKube.apply('services', service('ledger', 80));
  eastKube.apply('pods', pod('ledger-7d9f', appPort, ledgerInbound));
  eastKube.apply('endpointslices', slice('ledger', appPort, true));
  // west runs the caller.
  westKube.apply('services', service('client', 80));

  await Promise.all([mesh.startFederation('east'), mesh.startFederation('west')]);
  eastApi = apiClient(east.rootCert);
  // east's gateway as in a pod: cluster.yaml, the root certificate and its ServiceAccount's
  // projected token; no CA key. It buys its certificate by CSR.
  const gatewayDir = join(logDir, 'gateway-pod');
  mkdirSync(join(gatewayDir, 'ca'), { recursive: true });
  copyFileSync(east.rootCert, join(gatewayDir, 'ca', 'root-cert.pem'));
  writeFileSync(join(gatewayDir, 'token'), eastKube.issueToken({ namespace: 'isthmus-system', serviceAccount: 'isthmus-gateway', audiences: ['isthmus'] }));
  const podConfig = parse(readFileSync(east.config, 'utf8'));
  podConfig.certificates = { ...podConfig.certificates, caDir: 'ca' };
  podConfig.gateways[0].tokenFile = 'token';
  writeFileSync(join(gatewayDir, 'cluster.yaml'), stringify(podConfig));
  gateway = new MeshProcess({
    name: 'east-gateway', args: ['gateway', '--config', join(gatewayDir, 'cluster.yaml'), '--id', 'gw-1'], logFile: join(logDir, 'gateway.log'),
    readyUrl: 'http://127.0.24.1:15021/readyz', onUnexpectedExit: () => undefined,
  });
  await gateway.start();

  const sidecar = async (cluster: TestCluster, host: string, name: string, token: string, inbound?: { listen: string; app: string }, listeners: DevSidecarListener[] = []) => startDevSidecar({
    cluster: cluster.name, zone: 'a', namespace: 'demo', service: name,
    federation: { url: `https://${cluster.apiAddress}`, rootCert: cluster.rootCert },
    stateDir: join(logDir, `${cluster.name}-${name}`),
    outbound: { listen: `${host}:${await freePort(host)}` },
    admin: { listen: `${host}:${await freePort(host)}` },
    ...(inbound ? { inbound } : {}),
    listeners,
  }, { bootstrapToken: token }, { kind: 'in-process', logger: silentLogger });
  // Each pod's projected ServiceAccount token, as its own API server issued it.
  ledgerSidecar = await sidecar(east, '127.0.24.1', 'ledger', eastKube.issueToken({ namespace: 'demo', serviceAccount: 'ledger', audiences: ['isthmus'] }),
    { listen: `127.0.24.1:${ledgerInbound}`, app: `127.0.24.1:${appPort}` });
  // cart's apps in east: each says which one answered, and the HTTP ones who called.
  const answering = (name: string) => createServer((req, res) => res.end(JSON.stringify({ app: name, xfcc: req.headers['x-forwarded-client-cert'] ?? null })));
  cartApps = { web: answering('web'), admin: answering('admin'), cache: createTcpServer((socket) => socket.on('data', (d) => socket.write(`cache:${d.toString()}`))) };
  for (const [name, server] of Object.entries(cartApps)) {
    await new Promise<void>((resolve) => server.listen(0, '127.0.24.1', resolve));
    cartPorts[name as keyof typeof cartPorts] = (server.address() as AddressInfo).port;
  }
  cartInbound = await freePort('127.0.24.1');
  cartListen = `127.0.25.1:${await freePort('127.0.25.1')}`;
  clientSidecar = await sidecar(west, '127.0.25.1', 'client', westKube.issueToken({ namespace: 'demo', serviceAccount: 'client', audiences: ['isthmus'] }), undefined,
    [{ service: 'cart', namespace: 'demo', listen: cartListen, port: cartPorts.cache }]);
}, 180_000);

afterAll(async () => {
  await cartSidecar?.stop();
  for (const server of Object.values(cartApps ?? {})) server.close();
  await clientSidecar?.stop();
  await ledgerSidecar?.stop();
  await gateway?.stop();
  await eastApi?.close();
  etcd?.close();
  await mesh?.close();
  await eastKube?.stop();
  await westKube?.stop();
  app?.close();
  if (logDir) rmSync(logDir, { recursive: true, force: true });
});

describe('two clusters on Kubernetes, through the MCS API', () => {
  test('a ServiceExport exports the service: its record in etcd, a ServiceImport in the other cluster, and that cluster\'s app reaches <svc>.<ns>.svc.clusterset.local', async () => {
    eastKube.apply('serviceexports', { apiVersion: 'multicluster.x-k8s.io/v1alpha1', kind: 'ServiceExport', metadata: { namespace: 'demo', name: 'ledger' } });
    // The endpoint has no zone of its own: its node's label says b.
    await waitFor(async () => (await exportRecord('east', 'ledger'))?.zones?.b?.healthy === 1, 15_000, 'east/demo/ledger exported with one healthy endpoint');
    expect(await exportRecord('east', 'ledger')).toMatchObject({ ports: [{ port: 80, protocol: 'http', name: 'http' }], identities: ['spiffe://mesh.test/ns/demo/sa/ledger'], zones: { a: { healthy: 0, total: 0 }, b: { healthy: 1, total: 1 } } });
    await waitFor(async () => (westKube.get('serviceimports', 'demo', 'ledger')?.status as any)?.clusters?.length === 1, 15_000, 'a ServiceImport in west');
    expect(westKube.get('serviceimports', 'demo', 'ledger')).toMatchObject({
      spec: { type: 'ClusterSetIP', ports: [{ name: 'http', port: 80, protocol: 'TCP', appProtocol: 'http' }] },
      status: { clusters: [{ cluster: 'east' }] },
    });
    // The exporting cluster imports it too (KEP-1645), and `kubectl get serviceexports` tells the truth.
    await waitFor(async () => eastKube.get('serviceimports', 'demo', 'ledger') !== undefined, 15_000, 'a ServiceImport in east');
    await waitFor(async () => conditionsOf(eastKube, 'ledger').Valid === 'True/ServiceExported', 15_000, 'Valid=True on east\'s ServiceExport');
    expect(conditionsOf(eastKube, 'ledger')).toEqual({ Valid: 'True/ServiceExported', Conflict: 'False/NoConflicts' });
    const { value } = await waitFor(async () => {
      const res = await viaProxy(clientSidecar.outbound, 'http://ledger.demo.svc.clusterset.local/accounts?id=7');
      return res.status === 200 && res;
    }, 20_000, 'ledger.demo.svc.clusterset.local from west');
    // The call went through ledger's sidecar, not to the app's port: the app was told who called.
    expect(value.body).toMatchObject({ cluster: 'east', path: '/accounts?id=7' });
    expect(value.body.xfcc).toContain('URI=spiffe://mesh.test/ns/demo/sa/client');
    // That crossed east's gateway, which registered with a certificate bought by its token: it has no CA key.
    expect(existsSync(join(logDir, 'gateway-pod', 'ca', 'ca-key.pem'))).toBe(false);
    expect(readFileSync(join(logDir, 'gateway.log'), 'utf8')).toContain('gateway certificate obtained');
  });

  test('the destination sidecar enforces ledger\'s AuthorizationPolicy on calls from the other cluster', async () => {
    const file = join(logDir, 'ledger-deny.yaml');
    writeFileSync(file, `apiVersion: isthmus.dev/v1alpha1
kind: AuthorizationPolicy
metadata: { name: ledger-admin, namespace: demo }
spec:
  service: ledger
  deny:
    - name: no-admin
      to: { paths: [{ prefix: /admin }] }
`);
    const env = { ...etcdEnv(mesh.etcd), ...operator.env };
    await isthmusOk(['policy', 'apply', '-f', file], env);
    try {
      const { value } = await waitFor(async () => {
        const res = await viaProxy(clientSidecar.outbound, 'http://ledger.demo.svc.clusterset.local/admin/keys');
        return res.status === 403 && res;
      }, 20_000, 'the deny rule enforced for west\'s client');
      expect(value.text).toContain('denied by AuthorizationPolicy demo/ledger-admin deny rule 0 (no-admin)');
      expect((await viaProxy(clientSidecar.outbound, 'http://ledger.demo.svc.clusterset.local/accounts')).status).toBe(200);
    } finally {
      await isthmusOk(['policy', 'delete', 'AuthorizationPolicy', 'demo/ledger-admin'], env);
    }
  });

  test('an endpoint whose pod has no sidecar is not an instance of the mesh: callers never reach its app port in plain text', async () => {
    eastKube.apply('services', service('plain', 80));
    eastKube.apply('pods', pod('plain-5c4b', appPort));
    eastKube.apply('endpointslices', slice('plain', appPort, true, 'plain-5c4b'));
    eastKube.apply('serviceexports', { metadata: { namespace: 'demo', name: 'plain' } });
    await waitFor(async () => (await exportRecord('east', 'plain')) !== null, 15_000, 'plain exported');
    expect((await exportRecord('east', 'plain')).zones).toEqual({ a: { healthy: 0, total: 0 }, b: { healthy: 0, total: 0 } });
    // Where a kubectl user looks: the ServiceExport's Valid condition counts the endpoint left out, and says why.
    const validMessage = () => ((eastKube.get('serviceexports', 'demo', 'plain')?.status as { conditions?: { type: string; message: string }[] } | undefined)?.conditions ?? []).find((c) => c.type === 'Valid')?.message;
    await waitFor(async () => validMessage()?.includes('left out'), 15_000, 'the skipped endpoint on the ServiceExport');
    expect(validMessage()).toBe('exported to the mesh by cluster east; 1 endpoint left out of the mesh: 1 whose pod has no isthmus sidecar (inject the workload with `isthmus inject`)');
    // Injected (the pod replaced by one with the sidecar), it is an instance at the sidecar's inbound.
    eastKube.remove('pods', 'demo', 'plain-5c4b');
    eastKube.apply('pods', pod('plain-5c4b', appPort, ledgerInbound));
    await waitFor(async () => (await exportRecord('east', 'plain'))?.zones?.b?.healthy === 1, 15_000, 'plain\'s injected pod exported');
    await waitFor(async () => validMessage() === 'exported to the mesh by cluster east', 15_000, 'the ServiceExport to say nothing is left out');
    eastKube.remove('serviceexports', 'demo', 'plain');
    eastKube.remove('endpointslices', 'demo', 'plain-abc12');
    eastKube.remove('services', 'demo', 'plain');
    await waitFor(async () => (await exportRecord('east', 'plain')) === null, 15_000, 'plain withdrawn');
  });

  test('a Service with two HTTP ports and a TCP port: west reaches each through cart\'s one sidecar, which forwards to the port the caller named', async () => {
    // The admin port's Service port is not its container port (targetPort by name), as is common.
    const adminServicePort = 18443;
    const ports = [
      { name: 'http', port: cartPorts.web, containerPort: cartPorts.web, targetPort: cartPorts.web as number | string },
      { name: 'http-admin', port: adminServicePort, containerPort: cartPorts.admin, targetPort: 'http-admin' },
      { name: 'redis', port: cartPorts.cache, containerPort: cartPorts.cache, targetPort: cartPorts.cache },
    ];
    const podSpec = {
      initContainers: [{ name: 'isthmus-sidecar', ports: [{ name: 'isthmus-in', containerPort: cartInbound, protocol: 'TCP' }] }],
      containers: [{ name: 'cart', ports: ports.map((p) => ({ name: p.name, containerPort: p.containerPort, protocol: 'TCP' })) }],
    };
    const cartService = { metadata: { namespace: 'demo', name: 'cart' }, spec: { type: 'ClusterIP', clusterIP: '10.96.0.30', selector: { app: 'cart' }, ports: ports.map((p) => ({ name: p.name, port: p.port, protocol: 'TCP', targetPort: p.targetPort })) } };
    eastKube.apply('services', cartService);
    eastKube.apply('pods', { metadata: { namespace: 'demo', name: 'cart-6f7c', labels: { app: 'cart' } }, spec: podSpec });
    eastKube.apply('endpointslices', {
      metadata: { namespace: 'demo', name: 'cart-x1', labels: { 'kubernetes.io/service-name': 'cart' } }, addressType: 'IPv4',
      ports: ports.map((p) => ({ name: p.name, port: p.containerPort, protocol: 'TCP' })),
      endpoints: [{ addresses: ['127.0.24.1'], conditions: { ready: true }, nodeName: 'east-node-1', targetRef: { kind: 'Pod', namespace: 'demo', name: 'cart-6f7c' } }],
    });
    eastKube.apply('serviceexports', { metadata: { namespace: 'demo', name: 'cart' } });

    // The sidecar runs as `isthmus inject` starts it in that pod, the Service in the same input:
    // its --inbound-* arguments come from both (127.0.0.1 in a pod; the pod's address here).
    const injected = sidecarContainer(podFacts('cart', { app: 'cart' }, podSpec, [serviceFacts(cartService)!], 'demo'), { image: defaultImage, tokenAudience: 'isthmus' }).args as string[];
    const inboundArgs = injected.slice(injected.indexOf('--inbound-app')).map((a) => a.replace('127.0.0.1', '127.0.24.1'));
    expect(inboundArgs).toEqual(['--inbound-app', `127.0.24.1:${cartPorts.web}`, '--inbound-port', `${adminServicePort}=${cartPorts.admin}`, '--inbound-port', `${cartPorts.cache}/tcp`]);
    const admin = `127.0.24.1:${await freePort('127.0.24.1')}`;
    const config = writeSidecarFiles({
      cluster: 'east', zone: 'a', namespace: 'demo', service: 'cart',
      federation: { url: `https://${east.apiAddress}`, rootCert: east.rootCert },
      stateDir: join(logDir, 'east-cart'), outbound: { listen: `127.0.24.1:${await freePort('127.0.24.1')}` }, admin: { listen: admin },
      inbound: { listen: `127.0.24.1:${cartInbound}`, app: '127.0.24.1:1' }, listeners: [],
    }, { bootstrapToken: eastKube.issueToken({ namespace: 'demo', serviceAccount: 'cart', audiences: ['isthmus'] }) });
    cartSidecar = new MeshProcess({
      name: 'east-cart', args: ['sidecar', '--config', config, ...inboundArgs], logFile: join(logDir, 'cart-sidecar.log'),
      readyUrl: `http://${admin}/readyz`, onUnexpectedExit: () => undefined,
    });
    await cartSidecar.start();
    await waitFor(async () => (await exportRecord('east', 'cart'))?.zones?.b?.healthy === 1, 15_000, 'cart exported');

    const call = (port: number | undefined) => viaProxy(clientSidecar.outbound, `http://cart.demo.svc.clusterset.local${port === undefined ? '' : `:${port}`}/items`);
    const { value: web } = await waitFor(async () => {
      const res = await call(cartPorts.web);
      return res.status === 200 && res;
    }, 20_000, 'cart\'s web port from west');
    expect(web.body.app).toBe('web');
    expect(web.body.xfcc).toContain('URI=spiffe://mesh.test/ns/demo/sa/client');
    const other = await call(adminServicePort);
    expect(other.status).toBe(200);
    expect(other.body).toMatchObject({ app: 'admin', xfcc: expect.stringContaining('URI=spiffe://mesh.test/ns/demo/sa/client') });
    // A request that names no port goes to the first one.
    expect((await call(undefined)).body.app).toBe('web');

    // The TCP port, through west's listener for it: mTLS to east's gateway, then cart's sidecar, then the cache.
    const answer = await new Promise<string>((resolve, reject) => {
      const [host, port] = cartListen.split(':');
      const socket = connect({ host: host as string, port: Number(port) }, () => socket.write('PING\n'));
      socket.setTimeout(10_000, () => socket.destroy(new Error('no answer from cart\'s cache port')));
      socket.once('data', (d) => {
        resolve(d.toString());
        socket.end();
      });
      socket.once('error', reject);
    });
    expect(answer).toBe('cache:PING\n');
  });

  test('a restarted federation leaves its cluster\'s ServiceImports alone while it catches up with etcd', async () => {
    const deletes = () => eastKube.requests.filter((r) => r.startsWith('DELETE /apis/multicluster.x-k8s.io/v1alpha1/namespaces/demo/serviceimports/')).length;
    const before = deletes();
    await east.federation?.stop();
    await mesh.startFederation('east');
    await waitFor(async () => (await exportRecord('east', 'ledger'))?.zones?.b?.healthy === 1, 15_000, 'east publishing again');
    await waitFor(async () => (westKube.get('serviceimports', 'demo', 'ledger')?.status as any)?.clusters?.length === 1, 15_000, 'west importing again');
    expect(eastKube.get('serviceimports', 'demo', 'ledger')).toBeDefined();
    expect(deletes()).toBe(before);
  });

  test('an EndpointSlice that turns not ready and back, and a Service whose port changes, move the export and the import', async () => {
    eastKube.apply('endpointslices', slice('ledger', appPort, false));
    await waitFor(async () => (await exportRecord('east', 'ledger'))?.zones?.b?.healthy === 0, 15_000, 'no healthy endpoint exported');
    expect((await exportRecord('east', 'ledger')).zones.b.total).toBe(1);
    eastKube.apply('endpointslices', slice('ledger', appPort, true));
    await waitFor(async () => (await exportRecord('east', 'ledger'))?.zones?.b?.healthy === 1, 15_000, 'the endpoint healthy again');
    eastKube.apply('services', service('ledger', 8080));
    await waitFor(async () => (westKube.get('serviceimports', 'demo', 'ledger')?.spec as any)?.ports?.[0]?.port === 8080, 15_000, 'the import\'s port to follow');
    eastKube.apply('services', service('ledger', 80));
    await waitFor(async () => (westKube.get('serviceimports', 'demo', 'ledger')?.spec as any)?.ports?.[0]?.port === 80, 15_000, 'the import\'s port back');
  });

  test('a deleted EndpointSlice empties the export; a deleted Service withdraws it and its ServiceExport says Valid=False until it is back', async () => {
    eastKube.remove('endpointslices', 'demo', 'ledger-abc12');
    await waitFor(async () => (await exportRecord('east', 'ledger'))?.zones?.b?.total === 0, 15_000, 'no endpoint exported');
    eastKube.remove('services', 'demo', 'ledger');
    await waitFor(async () => (await exportRecord('east', 'ledger')) === null, 15_000, 'the export record withdrawn');
    await waitFor(async () => conditionsOf(eastKube, 'ledger').Valid === 'False/NoService', 15_000, 'Valid=False on the ServiceExport');
    eastKube.apply('services', service('ledger', 80));
    eastKube.apply('endpointslices', slice('ledger', appPort, true));
    await waitFor(async () => (await exportRecord('east', 'ledger'))?.zones?.b?.healthy === 1, 15_000, 'the export back');
    await waitFor(async () => conditionsOf(eastKube, 'ledger').Valid === 'True/ServiceExported', 15_000, 'Valid=True again');
  });

  test('west exports ledger too, with other ports: its ServiceExport says Conflict=True and names east, whose export is older', async () => {
    westKube.apply('services', service('ledger', 9090));
    westKube.apply('serviceexports', { metadata: { namespace: 'demo', name: 'ledger' } });
    await waitFor(async () => conditionsOf(westKube, 'ledger').Conflict === 'True/PortConflict', 15_000, 'Conflict=True on west\'s ServiceExport');
    const conflict = ((westKube.get('serviceexports', 'demo', 'ledger')?.status as any).conditions as any[]).find((c) => c.type === 'Conflict');
    expect(conflict.message).toContain('cluster east');
    expect(conflict.message).toContain('spec.ports');
    // The import keeps the oldest export's ports and lists both clusters.
    await waitFor(async () => (westKube.get('serviceimports', 'demo', 'ledger')?.status as any)?.clusters?.length === 2, 15_000, 'both clusters in the import');
    expect((westKube.get('serviceimports', 'demo', 'ledger')?.spec as any).ports[0].port).toBe(80);
    expect(conditionsOf(eastKube, 'ledger').Conflict).toBe('False/NoConflicts');
    westKube.remove('serviceexports', 'demo', 'ledger');
    westKube.remove('services', 'demo', 'ledger');
    await waitFor(async () => (await etcd.get(keys.serviceExport('west', 'demo', 'ledger')).string()) === null && (await exportRecord('west', 'ledger')) === null, 15_000, 'west\'s export withdrawn');
  });

  test('a watch dropped while things change, whose history is then gone (410), lists again and misses nothing', async () => {
    const lists = () => eastKube.requests.filter((r) => r.startsWith('GET /apis/multicluster.x-k8s.io/v1alpha1/namespaces/demo/serviceexports') && !r.includes('watch=')).length;
    const listedBefore = lists();
    eastKube.dropWatches();
    eastKube.apply('services', service('billing', 80));
    eastKube.apply('endpointslices', slice('billing', appPort, true));
    eastKube.apply('serviceexports', { metadata: { namespace: 'demo', name: 'billing' } });
    eastKube.compact();
    await waitFor(async () => (await exportRecord('east', 'billing'))?.zones?.b?.healthy === 1, 20_000, 'billing exported after the 410');
    await waitFor(async () => westKube.get('serviceimports', 'demo', 'billing') !== undefined, 15_000, 'billing imported in west');
    expect(lists()).toBeGreaterThan(listedBefore);
    eastKube.remove('serviceexports', 'demo', 'billing');
    await waitFor(async () => westKube.get('serviceimports', 'demo', 'billing') === undefined, 15_000, 'billing\'s import gone');
  });

  test('deleting the ServiceExport unexports: the record leaves etcd, the ServiceImports go, and west\'s sidecar no longer routes to ledger', async () => {
    eastKube.remove('serviceexports', 'demo', 'ledger');
    await waitFor(async () => (await exportRecord('east', 'ledger')) === null && (await etcd.get(keys.serviceExport('east', 'demo', 'ledger')).string()) === null, 15_000, 'the export gone from etcd');
    await waitFor(async () => westKube.get('serviceimports', 'demo', 'ledger') === undefined && eastKube.get('serviceimports', 'demo', 'ledger') === undefined, 15_000, 'the ServiceImports deleted');
    await waitFor(async () => (await viaProxy(clientSidecar.outbound, 'http://ledger.demo.svc.clusterset.local/')).status === 503, 15_000, 'west\'s sidecar to stop routing');
  });

  test('a pod\'s ServiceAccount token buys a certificate for its own account only, whatever the request says', async () => {
    const url = `https://${east.apiAddress}/v1/certificates`;
    const tokenA = eastKube.issueToken({ namespace: 'demo', serviceAccount: 'a', audiences: ['isthmus'] });
    const signed = await eastApi.post(url, { csr: createCsr().csrPem, identity: 'spiffe://mesh.test/ns/demo/sa/b', namespace: 'demo', serviceAccount: 'b' }, { authorization: `Bearer ${tokenA}` });
    expect(signed.status).toBe(200);
    expect(signed.body.identity).toBe('spiffe://mesh.test/ns/demo/sa/a');
    // West's API server issued this one: east's TokenReview does not know it.
    const foreign = westKube.issueToken({ namespace: 'demo', serviceAccount: 'b', audiences: ['isthmus'] });
    const refused = await eastApi.post(url, { csr: createCsr().csrPem }, { authorization: `Bearer ${foreign}` });
    expect(refused.status).toBe(401);
    expect(refused.body.error.code).toBe('ISTHMUS_ERR_TRUST_TOKEN_INVALID');
    // A token for another audience (the API server's own) is not a workload credential.
    const apiToken = eastKube.issueToken({ namespace: 'demo', serviceAccount: 'b', audiences: ['https://kubernetes.default.svc'] });
    expect((await eastApi.post(url, { csr: createCsr().csrPem }, { authorization: `Bearer ${apiToken}` })).status).toBe(401);
    // The gateways' ServiceAccount gets east's gateway identity, and nothing else does.
    const gatewayToken = eastKube.issueToken({ namespace: 'isthmus-system', serviceAccount: 'isthmus-gateway', audiences: ['isthmus'] });
    expect((await eastApi.post(url, { csr: createCsr().csrPem }, { authorization: `Bearer ${gatewayToken}` })).body.identity).toBe('spiffe://mesh.test/cluster/east/gateway');
  });
});
