import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { loadClusterConfig } from '../../src/federation/config.js';
import { loadGatewayConfig } from '../../src/gateway/config.js';
import { gatewayRoot } from '../../src/gateway/gateway-certificate.js';
import { readClusterCa } from '../../src/trust/ca-files.js';
import { isthmus, isthmusOk } from '../helpers/cli.js';
import { etcdArgs, rawEtcd, startEtcd, type TestEtcd } from '../helpers/etcd.js';
import { FakeKubeApiServer, type KubeObject } from '../helpers/fake-kube-api-server.js';
import { freePort } from '../helpers/ports.js';

// `isthmus join --kubeconfig` against FakeKubeApiServer over real HTTPS (127.0.164.x, and
// 127.0.165.x for a second cluster), with a real TLS etcd on 127.0.164.1, through the built CLI.
let etcd: TestEtcd;
let dir: string;
let ca: string;
let east: FakeKubeApiServer;
let west: FakeKubeApiServer;

const joinArgs = (cluster: string, kubeconfig: string, extra: string[] = []) => [
  'join', cluster, '--region', 'us', '--zone', 'a', ...etcdArgs(etcd), '--ca', ca, '--kubeconfig', kubeconfig,
  '--gateway', `gw.${cluster}.example:30443`, ...extra,
];

async function clusterRecord(cluster: string): Promise<string | null> {
  const client = rawEtcd(etcd);
  try {
    return await client.get(`/isthmus/v1/clusters/${cluster}`).string();
  } finally {
    client.close();
  }
}

/**
 * The directory a pod of `deploy/multi-cluster/base/<file>` sees at /etc/isthmus, made from the
 * objects in `kube` as the kubelet would project them (a token the fake issues for the pod's
 * ServiceAccount and audience). Fails when an object or key the manifest names is missing.
 */
function podFiles(kube: FakeKubeApiServer, file: string, name: string): string {
  const deployment = parseAllDocuments(readFileSync(new URL(`../../deploy/multi-cluster/base/${file}`, import.meta.url), 'utf8'))
    .map((d) => d.toJS()).find((d) => d.kind === 'Deployment');
  const spec = deployment.spec.template.spec;
  const sources = spec.volumes.find((v: any) => v.name === 'cluster').projected.sources as any[];
  const pod = join(dir, name);
  mkdirSync(join(pod, 'etcd'), { recursive: true });
  for (const source of sources) {
    if (source.serviceAccountToken) {
      const token = kube.issueToken({ namespace: 'isthmus-system', serviceAccount: spec.serviceAccountName, audiences: [source.serviceAccountToken.audience] });
      writeFileSync(join(pod, source.serviceAccountToken.path), token);
      continue;
    }
    const [plural, ref] = source.configMap ? ['configmaps', source.configMap] : ['secrets', source.secret];
    const object = kube.get(plural, 'isthmus-system', ref.name);
    expect(object, `${plural} ${ref.name}`).toBeDefined();
    const data = plural === 'secrets' ? decoded(object) : object?.data as Record<string, string>;
    for (const item of ref.items) {
      expect(data[item.key], `${ref.name} key ${item.key}`).toBeTypeOf('string');
      writeFileSync(join(pod, item.path), data[item.key] as string);
    }
  }
  if (readdirSync(join(pod, 'etcd')).length === 0) rmdirSync(join(pod, 'etcd'));
  return pod;
}

const decoded = (secret: KubeObject | undefined) => Object.fromEntries(Object.entries((secret?.data ?? {}) as Record<string, string>).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));

beforeAll(async () => {
  etcd = await startEtcd({ host: '127.0.164.1' });
  dir = mkdtempSync(join(tmpdir(), 'isthmus-join-k8s-'));
  ca = join(dir, 'ca');
  await isthmusOk(['ca', 'init', '--trust-domain', 'mesh.test', '--out', ca]);
  east = await FakeKubeApiServer.start({ host: '127.0.164.2' });
  west = await FakeKubeApiServer.start({ host: '127.0.165.2' });
}, 60_000);

afterAll(async () => {
  await east?.stop();
  await west?.stop();
  await etcd?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('isthmus join --kubeconfig writes the cluster\'s CA and config into the cluster', () => {
  test('the namespace, the CA Secret, the etcd client Secret and the ConfigMap, named and keyed as the federation Deployment mounts them, hold a CA and a config the federation accepts', async () => {
    const joined = await isthmusOk(joinArgs('east', east.writeKubeconfig(), ['--context', 'fake', '-o', 'json']));
    const result = JSON.parse(joined.stdout);
    expect(result).toMatchObject({ joined: true, kubernetes: { context: 'fake', namespace: 'isthmus-system', objects: ['Namespace isthmus-system', 'Secret isthmus-cluster-ca', 'Secret isthmus-etcd-client', 'ConfigMap isthmus-cluster'] } });
    expect(east.get('namespaces', undefined, 'isthmus-system')).toBeDefined();
    // The API server refuses objects of a namespace that does not exist: the namespace is made first.
    expect(east.requests.filter((r) => r.startsWith('POST /api/v1/'))).toEqual([
      'POST /api/v1/namespaces', 'POST /api/v1/namespaces/isthmus-system/secrets', 'POST /api/v1/namespaces/isthmus-system/secrets', 'POST /api/v1/namespaces/isthmus-system/configmaps',
    ]);

    // What deploy/multi-cluster/base/federation.yaml projects into /etc/isthmus must all be there.
    const pod = podFiles(east, 'federation.yaml', 'pod-etc-isthmus');
    // The files as the pod sees them: a CA chain that verifies, and a cluster.yaml that validates.
    const clusterCa = readClusterCa(pod);
    expect(clusterCa.trustDomain).toBe('mesh.test');
    const loaded = loadClusterConfig(join(pod, 'cluster.yaml'));
    expect(loaded.config).toMatchObject({
      cluster: 'east', platform: 'kubernetes',
      etcd: { ca: 'etcd/ca.pem', cert: 'etcd/client.pem', key: 'etcd/client-key.pem' },
      federation: { host: '0.0.0.0', advertise: 'isthmus-federation.isthmus-system.svc:15010' },
      certificates: { caDir: '.' },
      gateways: [{ id: 'gw-1', address: '0.0.0.0:15443', advertise: 'gw.east.example:30443', admin: '0.0.0.0:15021', tokenFile: 'token' }],
      kubernetes: { tokenAudience: 'isthmus', gatewayServiceAccount: 'isthmus-system/isthmus-gateway' },
    });
    expect(readFileSync(join(pod, 'etcd', 'client.pem'), 'utf8')).toBe(readFileSync(etcd.tls.cert, 'utf8'));
    expect(JSON.parse(await clusterRecord('east') ?? 'null')).toMatchObject({ name: 'east', federation: 'isthmus-federation.isthmus-system.svc:15010' });

    // A gateway pod of base/gateway.yaml: it listens in the pod, advertises the --gateway address,
    // trusts the root beside cluster.yaml and buys its certificate with its token; no CA key there.
    const gatewayPodDir = podFiles(east, 'gateway.yaml', 'pod-gateway');
    const gateway = loadGatewayConfig(join(gatewayPodDir, 'cluster.yaml'), undefined);
    expect(gateway).toMatchObject({ listen: { host: '0.0.0.0', port: 15443 }, advertise: { host: 'gw.east.example', port: 30443 }, tokenFile: join(gatewayPodDir, 'token'), federationUrl: 'https://isthmus-federation.isthmus-system.svc:15010' });
    expect(gatewayRoot(gateway)).toBe(readFileSync(join(pod, 'root-cert.pem'), 'utf8'));
    expect(readdirSync(gatewayPodDir).sort()).toEqual(['cluster.yaml', 'root-cert.pem', 'token']);
  });

  test('a second join refuses without --force and changes nothing; with --force it replaces the Secrets and the ConfigMap in place', async () => {
    const before = east.get('secrets', 'isthmus-system', 'isthmus-cluster-ca');
    const refused = await isthmus(joinArgs('east', east.writeKubeconfig()));
    expect(refused.code).not.toBe(0);
    expect(refused.stdout).toMatch(/Kubernetes cluster.*Secret isthmus-cluster-ca, Secret isthmus-etcd-client, ConfigMap isthmus-cluster in isthmus-system from an earlier join/);
    expect(refused.stdout).toContain('pass --force to replace them');
    expect(east.get('secrets', 'isthmus-system', 'isthmus-cluster-ca')).toEqual(before);

    const puts = () => east.requests.filter((r) => r.startsWith('PUT /api/v1/namespaces/isthmus-system/')).length;
    const replaced = await isthmusOk(joinArgs('east', east.writeKubeconfig(), ['--force']));
    expect(replaced.stdout).toContain('--force replaces them');
    const after = east.get('secrets', 'isthmus-system', 'isthmus-cluster-ca');
    expect(after?.metadata.uid).toBe(before?.metadata.uid);
    expect(decoded(after)['ca-cert.pem']).not.toBe(decoded(before)['ca-cert.pem']);
    expect(puts()).toBe(3);
  });

  test('a context the kubeconfig lacks fails preflight naming the contexts it has; nothing is written anywhere', async () => {
    const result = await isthmus(joinArgs('north', west.writeKubeconfig(), ['--context', 'kind-north']));
    expect(result.code).not.toBe(0);
    expect(result.stdout).toContain('has no context "kind-north" (it has fake)');
    expect(result.stderr).toContain('preflight check(s) failed (Kubernetes cluster); nothing was written');
    expect(await clusterRecord('north')).toBeNull();
    expect(west.list('secrets')).toEqual([]);
  });

  test('neither --out nor --kubeconfig, or both: join says which to give and writes nothing', async () => {
    for (const where of [[], ['--out', join(dir, 'both'), '--kubeconfig', west.writeKubeconfig()]]) {
      const result = await isthmus(['join', 'north', '--region', 'us', '--zone', 'a', ...etcdArgs(etcd), '--ca', ca, ...where]);
      expect(result.code).not.toBe(0);
      expect(result.stderr).toContain('--out <dir> for a directory, or --kubeconfig <file> (and --context) for a Kubernetes cluster; not both');
    }
    expect(await clusterRecord('north')).toBeNull();
  });

  test('an API server that does not answer fails preflight saying so, with its address', async () => {
    const closed = await freePort('127.0.165.3');
    const kubeconfig = join(dir, 'unreachable-kubeconfig');
    writeFileSync(kubeconfig, readFileSync(west.writeKubeconfig(), 'utf8').replace(west.url, `https://127.0.165.3:${closed}`));
    const result = await isthmus(joinArgs('north', kubeconfig));
    expect(result.code).not.toBe(0);
    expect(result.stdout).toContain(`could not reach the Kubernetes API server https://127.0.165.3:${closed} of context "fake"`);
    // With -o json: one JSON document, the error with every check in its details (as an RBAC refusal is).
    const json = await isthmus(joinArgs('north', kubeconfig, ['-o', 'json']));
    expect(json.code).not.toBe(0);
    const { error, ...rest } = JSON.parse(json.stdout);
    expect(rest).toEqual({});
    expect(error.code).toBe('ISTHMUS_ERR_PREFLIGHT_FAILED');
    expect(error.details.find((c: { name: string }) => c.name === 'Kubernetes cluster')).toMatchObject({ status: 'failed' });
    expect(await clusterRecord('north')).toBeNull();
  });

  test('RBAC: join asks the API server for every permission it will use before writing, and refuses naming all that are missing; nothing is written, in the cluster or in etcd', async () => {
    const writes = () => west.requests.filter((r) => /^(POST|PUT|PATCH|DELETE) \/api\//.test(r));
    // A user with a Role in isthmus-system that may only read: no namespace rights, no writes.
    west.grant([{ verbs: ['get'], resources: ['secrets', 'configmaps'], namespaces: ['isthmus-system'] }]);
    const refused = await isthmus(joinArgs('west', west.writeKubeconfig(), ['-o', 'json']));
    west.allowAll();
    expect(refused.code).not.toBe(0);
    const error = JSON.parse(refused.stdout).error;
    expect(error.code).toBe('ISTHMUS_ERR_KUBERNETES_FORBIDDEN');
    expect(error.message).toContain('context "fake" may not do what the join needs: get namespaces "isthmus-system" at the cluster scope; create namespaces at the cluster scope; create secrets in namespace isthmus-system; create configmaps in namespace isthmus-system; grant a ClusterRole with {apiGroups: [""], resources: [namespaces], verbs: [get, create]} and a Role in isthmus-system with {apiGroups: [""], resources: [secrets], verbs: [create]}, {apiGroups: [""], resources: [configmaps], verbs: [create]}');
    expect(error.message).toContain('nothing was written');
    expect(error.details.find((c: { name: string }) => c.name === 'Kubernetes cluster')).toMatchObject({ status: 'failed' });
    expect(west.requests.filter((r) => r.startsWith('POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews')).length).toBeGreaterThanOrEqual(7);
    expect(writes()).toEqual([]);
    expect(west.get('namespaces', undefined, 'isthmus-system')).toBeUndefined();
    expect(await clusterRecord('west')).toBeNull();

    // The namespace exists and the user may create in it but not read the ConfigMap: one permission missing, named.
    west.apply('namespaces', { metadata: { name: 'isthmus-system' } });
    west.grant([
      { verbs: ['get'], resources: ['namespaces'], resourceNames: ['isthmus-system'] },
      { verbs: ['get', 'create', 'update'], resources: ['secrets'], namespaces: ['isthmus-system'] },
      { verbs: ['create'], resources: ['configmaps'], namespaces: ['isthmus-system'] },
    ]);
    const unreadable = await isthmus(joinArgs('west', west.writeKubeconfig()));
    expect(unreadable.code).not.toBe(0);
    expect(unreadable.stdout).toContain('its user may not get configmaps "isthmus-cluster" in namespace isthmus-system');
    expect(unreadable.stderr).toMatch(/may not do what the join needs: get configmaps "isthmus-cluster" in namespace isthmus-system; grant a Role in isthmus-system with \{apiGroups: \[""\], resources: \[configmaps\], verbs: \[get\]\}, or use/);
    expect(writes()).toEqual([]);

    // Granted that too, the join goes through without any right on namespaces beyond get.
    west.grant([
      { verbs: ['get'], resources: ['namespaces'], resourceNames: ['isthmus-system'] },
      { verbs: ['get', 'create'], resources: ['secrets', 'configmaps'], namespaces: ['isthmus-system'] },
    ]);
    await isthmusOk(joinArgs('west', west.writeKubeconfig()));
    west.allowAll();
    expect(parse((west.get('configmaps', 'isthmus-system', 'isthmus-cluster')?.data as Record<string, string>)['cluster.yaml'] as string).cluster).toBe('west');
    expect(await clusterRecord('west')).not.toBeNull();
  });

  test('a write refused after the preflight (RBAC changed in between) names the verb, resource and namespace, and etcd keeps no record', async () => {
    west.failNext('/api/v1/namespaces/isthmus-system/configmaps', 403, 1, 'PUT');
    const unwritable = await isthmus(joinArgs('west', west.writeKubeconfig(), ['--force', '-o', 'json']));
    expect(unwritable.code).not.toBe(0);
    expect(JSON.parse(unwritable.stdout).error.code).toBe('ISTHMUS_ERR_KUBERNETES_FORBIDDEN');
    expect(unwritable.stderr).toContain('may not update configmaps in namespace isthmus-system');
    expect(unwritable.stderr).toContain('the cluster\'s records in etcd were removed again');
    expect(await clusterRecord('west')).toBeNull();
  });
});
