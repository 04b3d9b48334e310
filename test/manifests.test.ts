import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { ClusterConfigSchema, parseClusterConfig } from '../src/federation/config.js';

/*
 * Offline checks of deploy/ and kind-configs/: no API server runs here, so these catch what
 * `kubectl apply --dry-run=server` would, plus the cross-file references kubectl never checks
 * (a Service selecting no pods, a binding naming a missing role, a probe on an undeclared port).
 */

const root = fileURLToPath(new URL('..', import.meta.url));
const image = 'ghcr.io/isthmus-mesh/isthmus:0.1.0';

/** Default ports, docs/architecture.md, "Contracts". */
const designPorts = { federationApi: 15010, federationDashboard: 15014, gatewayTls: 15443, gatewayAdmin: 15021 };

type Obj = Record<string, unknown>;

interface Manifest {
  file: string;
  doc: Obj;
}

function isObj(value: unknown): value is Obj {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Reads a dotted path; undefined when any step is missing. */
function at(value: unknown, path: string): unknown {
  let current = value;
  for (const step of path.split('.')) {
    if (!isObj(current)) return undefined;
    current = current[step];
  }
  return current;
}

function objAt(value: unknown, path: string): Obj {
  const found = at(value, path);
  return isObj(found) ? found : {};
}

function listAt(value: unknown, path: string): unknown[] {
  const found = at(value, path);
  return Array.isArray(found) ? found : [];
}

function yamlFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return yamlFiles(path);
    return /\.ya?ml$/.test(entry.name) ? [path] : [];
  }).sort();
}

interface Loaded {
  manifests: Manifest[];
  problems: string[];
}

function loadManifests(files: string[]): Loaded {
  const manifests: Manifest[] = [];
  const problems: string[] = [];
  for (const path of files) {
    const file = relative(root, path);
    for (const [i, document] of parseAllDocuments(readFileSync(path, 'utf8')).entries()) {
      for (const error of document.errors) problems.push(`${file} document ${i + 1}: ${error.message}`);
      if (document.contents === null) continue; // a trailing `---` or a comment-only document
      const doc: unknown = document.toJS();
      if (!isObj(doc)) problems.push(`${file} document ${i + 1}: not a mapping`);
      else manifests.push({ file, doc });
    }
  }
  return { manifests, problems };
}

const isKindCluster = (doc: Obj) => doc.kind === 'Cluster' && String(doc.apiVersion).startsWith('kind.x-k8s.io/');

function nameOf(doc: Obj): string {
  // kind decodes its config strictly and has no metadata: the cluster name is top-level.
  const name = isKindCluster(doc) ? doc.name : at(doc, 'metadata.name');
  return typeof name === 'string' ? name : '';
}

function checkIdentity({ file, doc }: Manifest): string[] {
  const problems: string[] = [];
  if (typeof doc.apiVersion !== 'string' || doc.apiVersion === '') problems.push(`${file}: a document has no apiVersion`);
  if (typeof doc.kind !== 'string' || doc.kind === '') problems.push(`${file}: a document has no kind`);
  if (nameOf(doc) === '') problems.push(`${file}: ${String(doc.kind)} has no ${isKindCluster(doc) ? 'name' : 'metadata.name'}`);
  return problems;
}

function containersOf(doc: Obj): Obj[] {
  return listAt(doc, 'spec.template.spec.containers').filter(isObj);
}

/** Every field a Deployment here must have, and every reference inside it that must resolve. */
function checkDeployment({ file, doc }: Manifest): string[] {
  const where = `${file} Deployment ${nameOf(doc)}`;
  const problems: string[] = [];
  const matchLabels = objAt(doc, 'spec.selector.matchLabels');
  const templateLabels = objAt(doc, 'spec.template.metadata.labels');
  if (Object.keys(matchLabels).length === 0) problems.push(`${where}: spec.selector.matchLabels is empty`);
  if (JSON.stringify(sorted(matchLabels)) !== JSON.stringify(sorted(templateLabels))) {
    problems.push(`${where}: spec.selector.matchLabels ${JSON.stringify(matchLabels)} differ from the template labels ${JSON.stringify(templateLabels)}`);
  }
  const containers = containersOf(doc);
  if (containers.length === 0) problems.push(`${where}: no containers`);
  for (const container of containers) {
    const c = `${where} container ${String(container.name)}`;
    if (typeof container.image !== 'string' || container.image === '') problems.push(`${c}: no image`);
    for (const kind of ['requests', 'limits']) {
      for (const resource of ['cpu', 'memory']) {
        if (at(container, `resources.${kind}.${resource}`) === undefined) problems.push(`${c}: no resources.${kind}.${resource}`);
      }
    }
    const ports = listAt(container, 'ports').filter(isObj);
    for (const port of ports) {
      if (typeof port.name !== 'string' || port.name === '') problems.push(`${c}: containerPort ${String(port.containerPort)} has no name`);
    }
    const declared = new Set<unknown>(ports.flatMap((p) => [p.name, p.containerPort]));
    for (const probe of ['readinessProbe', 'livenessProbe', 'startupProbe']) {
      const action = at(container, `${probe}.httpGet`) ?? at(container, `${probe}.tcpSocket`) ?? at(container, `${probe}.grpc`);
      if (action === undefined) {
        if (probe === 'readinessProbe') problems.push(`${c}: no readinessProbe`);
        continue;
      }
      const port = at(action, 'port');
      if (!declared.has(port)) problems.push(`${c}: ${probe} uses port ${String(port)}, which the container does not declare`);
    }
  }
  return problems;
}

function sorted(labels: Obj): [string, unknown][] {
  return Object.entries(labels).sort(([a], [b]) => a.localeCompare(b));
}

function selects(selector: Obj, labels: Obj): boolean {
  return Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);
}

const namespaceOf = (doc: Obj) => String(at(doc, 'metadata.namespace') ?? 'default');

/** A Service must select the pods of a Deployment in its namespace, and target ports they declare. */
function checkService({ file, doc }: Manifest, all: Manifest[]): string[] {
  const where = `${file} Service ${nameOf(doc)}`;
  const selector = objAt(doc, 'spec.selector');
  const targets = all.filter((m) => m.doc.kind === 'Deployment' && namespaceOf(m.doc) === namespaceOf(doc)
    && selects(selector, objAt(m.doc, 'spec.template.metadata.labels')));
  if (targets.length === 0) return [`${where}: selector ${JSON.stringify(selector)} matches no Deployment's pod labels`];
  const problems: string[] = [];
  for (const port of listAt(doc, 'spec.ports').filter(isObj)) {
    const target = port.targetPort ?? port.port;
    const declared = targets.some((t) => containersOf(t.doc).some((c) =>
      listAt(c, 'ports').filter(isObj).some((p) => p.name === target || p.containerPort === target)));
    if (!declared) problems.push(`${where}: targetPort ${String(target)} is no container port of ${targets.map((t) => nameOf(t.doc)).join(', ')}`);
    if (typeof port.name !== 'string' || port.name === '') problems.push(`${where}: port ${String(port.port)} has no name`);
  }
  return problems;
}

function checkClusterRoleBinding({ file, doc }: Manifest, all: Manifest[]): string[] {
  const where = `${file} ClusterRoleBinding ${nameOf(doc)}`;
  const problems: string[] = [];
  const roleName = at(doc, 'roleRef.name');
  if (at(doc, 'roleRef.kind') !== 'ClusterRole' || !all.some((m) => m.doc.kind === 'ClusterRole' && nameOf(m.doc) === roleName)) {
    problems.push(`${where}: roleRef ${String(at(doc, 'roleRef.kind'))}/${String(roleName)} is not a ClusterRole in these files`);
  }
  const subjects = listAt(doc, 'subjects').filter(isObj);
  if (subjects.length === 0) problems.push(`${where}: no subjects`);
  for (const subject of subjects) {
    if (subject.kind !== 'ServiceAccount') continue;
    const exists = all.some((m) => m.doc.kind === 'ServiceAccount' && nameOf(m.doc) === subject.name && namespaceOf(m.doc) === subject.namespace);
    if (!exists) problems.push(`${where}: subject ServiceAccount ${String(subject.namespace)}/${String(subject.name)} is not in these files`);
  }
  return problems;
}

function checkCrd({ file, doc }: Manifest): string[] {
  const where = `${file} CRD ${nameOf(doc)}`;
  const problems: string[] = [];
  const group = at(doc, 'spec.group');
  if (group !== 'multicluster.x-k8s.io') problems.push(`${where}: group is ${String(group)}, not multicluster.x-k8s.io`);
  if (nameOf(doc) !== `${String(at(doc, 'spec.names.plural'))}.${String(group)}`) problems.push(`${where}: name must be <plural>.<group>`);
  const versions = listAt(doc, 'spec.versions').filter(isObj);
  const storage = versions.filter((v) => v.storage === true);
  if (storage.length !== 1) problems.push(`${where}: ${storage.length} storage versions, need exactly 1`);
  for (const v of storage) {
    if (v.served !== true) problems.push(`${where}: storage version ${String(v.name)} is not served`);
    if (at(v, 'schema.openAPIV3Schema.type') !== 'object') problems.push(`${where}: version ${String(v.name)} has no openAPIV3Schema of type object`);
  }
  return problems;
}

/** Parses an IPv4 CIDR into its first and last address; refuses host bits after the prefix. */
function parseCidr(cidr: string): { first: number; last: number } {
  const match = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(cidr);
  if (!match) throw new Error(`${cidr} is not an IPv4 CIDR`);
  const octets = match.slice(1, 5).map(Number);
  const prefix = Number(match[5]);
  if (octets.some((o) => o > 255) || prefix > 32) throw new Error(`${cidr} is not an IPv4 CIDR`);
  const address = octets.reduce((acc, o) => acc * 256 + o, 0);
  const size = 2 ** (32 - prefix);
  if (address % size !== 0) throw new Error(`${cidr} has host bits set after /${prefix}`);
  return { first: address, last: address + size - 1 };
}

function cidrsOverlap(a: string, b: string): boolean {
  const x = parseCidr(a);
  const y = parseCidr(b);
  return x.first <= y.last && y.first <= x.last;
}

const loaded = loadManifests([...yamlFiles(join(root, 'deploy')), ...yamlFiles(join(root, 'kind-configs'))]);
const { manifests } = loaded;
const ofKind = (kind: string) => manifests.filter((m) => m.doc.kind === kind && !isKindCluster(m.doc));
const byName = (kind: string, name: string) => {
  const found = ofKind(kind).find((m) => nameOf(m.doc) === name);
  if (!found) throw new Error(`no ${kind} ${name} in deploy/`);
  return found;
};
const kindClusters = manifests.filter((m) => isKindCluster(m.doc));
const containerOf = (deployment: string) => {
  const container = containersOf(byName('Deployment', deployment).doc)[0];
  if (!container) throw new Error(`Deployment ${deployment} has no container`);
  return container;
};
const portsOf = (container: Obj) =>
  Object.fromEntries(listAt(container, 'ports').filter(isObj).map((p) => [String(p.name), p.containerPort]));

describe('cidrsOverlap', () => {
  it.each([
    ['10.10.0.0/16', '10.110.0.0/16', false],
    ['10.10.0.0/16', '10.11.0.0/16', false],
    ['10.10.0.0/15', '10.11.0.0/16', true],
    ['10.0.0.0/8', '10.120.0.0/16', true],
    ['10.10.0.0/16', '10.10.255.0/24', true],
    ['192.168.1.0/24', '192.168.1.255/32', true],
    ['192.168.1.0/24', '192.168.2.0/32', false],
    ['0.0.0.0/0', '172.18.0.0/16', true],
  ])('%s and %s overlap: %s', (a, b, expected) => {
    expect(cidrsOverlap(a, b)).toBe(expected);
    expect(cidrsOverlap(b, a)).toBe(expected);
  });

  it.each(['10.10.0.1/16', '10.10.0.0', '256.0.0.0/8', '10.0.0.0/33', 'fd00::/8'])('refuses %s', (cidr) => {
    expect(() => parseCidr(cidr)).toThrow();
  });
});

describe('the checkers themselves', () => {
  // Guards against checks that pass vacuously: each broken document must produce a problem.
  const deployment = (patch: (d: Obj) => void): Manifest => {
    const doc = structuredClone(byName('Deployment', 'isthmus-gateway').doc);
    patch(doc);
    return { file: 'broken.yaml', doc };
  };

  it.each<[string, (d: Obj) => void, RegExp]>([
    ['selector differs from the template labels', (d) => { objAt(d, 'spec.selector.matchLabels')['extra'] = 'x'; }, /differ from the template labels/],
    ['a container without limits', (d) => { delete objAt(containersOf(d)[0], 'resources').limits; }, /no resources\.limits\.cpu/],
    ['an unnamed port', (d) => { delete (listAt(containersOf(d)[0], 'ports')[0] as Obj).name; }, /has no name/],
    ['a probe on an undeclared port', (d) => { objAt(containersOf(d)[0], 'readinessProbe.httpGet').port = 'nope'; }, /uses port nope/],
  ])('a Deployment with %s is reported', (_, patch, problem) => {
    expect(checkDeployment(deployment(patch)).join('\n')).toMatch(problem);
  });

  it('a Service whose selector matches no Deployment is reported', () => {
    const doc = structuredClone(byName('Service', 'isthmus-gateway').doc);
    objAt(doc, 'spec.selector')['app.kubernetes.io/name'] = 'nobody';
    expect(checkService({ file: 'broken.yaml', doc }, manifests).join('\n')).toMatch(/matches no Deployment/);
  });

  it('a binding to a missing role or account is reported', () => {
    const doc = structuredClone(byName('ClusterRoleBinding', 'isthmus-federation').doc);
    objAt(doc, 'roleRef').name = 'missing';
    (listAt(doc, 'subjects')[0] as Obj).namespace = 'elsewhere';
    const problems = checkClusterRoleBinding({ file: 'broken.yaml', doc }, manifests).join('\n');
    expect(problems).toMatch(/roleRef ClusterRole\/missing/);
    expect(problems).toMatch(/ServiceAccount elsewhere\/isthmus-federation/);
  });
});

describe('manifests in deploy/ and kind-configs/', () => {
  it('parse as YAML without errors', () => {
    expect(loaded.problems).toEqual([]);
    const files = new Set(manifests.map((m) => m.file));
    for (const file of [
      'deploy/multi-cluster/namespace.yaml', 'deploy/multi-cluster/federation.yaml', 'deploy/multi-cluster/gateway.yaml',
      'deploy/multi-cluster/serviceexport-crd.yaml', 'deploy/multi-cluster/configmap-example.yaml',
      'kind-configs/east.yaml', 'kind-configs/west.yaml', 'kind-configs/north.yaml',
    ]) expect(files, file).toContain(file);
  });

  it('every document has apiVersion, kind and a name', () => {
    expect(manifests.flatMap(checkIdentity)).toEqual([]);
  });

  it('Deployments: selectors match template labels, containers have images, resources, named ports, probes on declared ports', () => {
    expect(ofKind('Deployment')).toHaveLength(2);
    expect(ofKind('Deployment').flatMap(checkDeployment)).toEqual([]);
  });

  it('every container uses the release image', () => {
    const images = ofKind('Deployment').flatMap((m) => containersOf(m.doc).map((c) => c.image));
    expect(new Set(images)).toEqual(new Set([image]));
  });

  it('Services select a Deployment\'s pods and target ports they declare', () => {
    expect(ofKind('Service')).toHaveLength(2);
    expect(ofKind('Service').flatMap((m) => checkService(m, manifests))).toEqual([]);
  });

  it('ClusterRoleBindings refer to a ClusterRole and ServiceAccounts in these files', () => {
    expect(ofKind('ClusterRoleBinding').length).toBeGreaterThan(0);
    expect(ofKind('ClusterRoleBinding').flatMap((m) => checkClusterRoleBinding(m, manifests))).toEqual([]);
  });

  it('Deployments run as ServiceAccounts in these files, in the isthmus-system namespace', () => {
    for (const { doc } of ofKind('Deployment')) {
      const account = at(doc, 'spec.template.spec.serviceAccountName');
      expect(ofKind('ServiceAccount').some((m) => nameOf(m.doc) === account && namespaceOf(m.doc) === namespaceOf(doc)), String(account)).toBe(true);
    }
    const namespaced = manifests.filter((m) => !isKindCluster(m.doc) && !['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition'].includes(String(m.doc.kind)));
    expect(new Set(namespaced.map((m) => at(m.doc, 'metadata.namespace')))).toEqual(new Set(['isthmus-system']));
    expect(nameOf(byName('Namespace', 'isthmus-system').doc)).toBe('isthmus-system');
  });

  it('the federation ClusterRole reads services, endpointslices, nodes, serviceexports and writes serviceimports', () => {
    const rules = listAt(byName('ClusterRole', 'isthmus-federation').doc, 'rules').filter(isObj);
    const verbsFor = (group: string, resource: string) => new Set(rules
      .filter((r) => listAt(r, 'apiGroups').includes(group) && listAt(r, 'resources').includes(resource))
      .flatMap((r) => listAt(r, 'verbs')));
    for (const [group, resource] of [['', 'services'], ['', 'nodes'], ['discovery.k8s.io', 'endpointslices'],
      ['multicluster.x-k8s.io', 'serviceexports'], ['multicluster.x-k8s.io', 'serviceimports']] as const) {
      for (const verb of ['get', 'list', 'watch']) expect(verbsFor(group, resource), `${verb} ${resource}`).toContain(verb);
    }
    for (const verb of ['create', 'update', 'patch', 'delete']) expect(verbsFor('multicluster.x-k8s.io', 'serviceimports')).toContain(verb);
    // Nothing else may be written.
    const writes = rules.filter((r) => listAt(r, 'verbs').some((v) => !['get', 'list', 'watch'].includes(String(v))));
    expect(new Set(writes.flatMap((r) => listAt(r, 'resources')))).toEqual(new Set(['serviceimports', 'serviceimports/status']));
  });

  it('the federation runs `isthmus federation` hardened, with the CA Secret and config ConfigMap mounted', () => {
    const deployment = byName('Deployment', 'isthmus-federation').doc;
    const container = containerOf('isthmus-federation');
    expect(container.args).toEqual(['federation', '--config', '/etc/isthmus/cluster.yaml']);
    expect(at(container, 'securityContext.readOnlyRootFilesystem')).toBe(true);
    expect(at(container, 'securityContext.runAsNonRoot')).toBe(true);
    expect(at(container, 'securityContext.allowPrivilegeEscalation')).toBe(false);
    expect(at(container, 'securityContext.capabilities.drop')).toEqual(['ALL']);
    for (const probe of ['readinessProbe', 'livenessProbe']) {
      expect(at(container, `${probe}.httpGet`)).toMatchObject({ path: '/healthz', port: 'api', scheme: 'HTTPS' });
    }
    const sources = listAt(deployment, 'spec.template.spec.volumes').filter(isObj).flatMap((v) => listAt(v, 'projected.sources')).filter(isObj);
    const secret = sources.find((s) => at(s, 'secret.name') === 'isthmus-cluster-ca');
    expect(listAt(secret, 'secret.items').map((i) => at(i, 'key')).sort()).toEqual(['ca-cert.pem', 'ca-key.pem', 'cert-chain.pem', 'root-cert.pem']);
    // etcd's CA and the federation's client certificate, where the example's etcd.ca/cert/key point.
    const etcdClient = sources.find((s) => at(s, 'secret.name') === 'isthmus-etcd-client');
    expect(listAt(etcdClient, 'secret.items').map((i) => at(i, 'path')).sort()).toEqual(['etcd/ca.pem', 'etcd/client-key.pem', 'etcd/client.pem']);
    const configMap = sources.find((s) => at(s, 'configMap.name') === 'isthmus-cluster');
    expect(listAt(configMap, 'configMap.items').map((i) => at(i, 'path'))).toEqual(['cluster.yaml']);
    // The example ConfigMap is the one the Deployments mount.
    expect(byName('ConfigMap', 'isthmus-cluster').doc.data).toHaveProperty(['cluster.yaml']);
    const mount = listAt(container, 'volumeMounts').filter(isObj).find((m) => m.mountPath === '/etc/isthmus');
    expect(mount?.readOnly).toBe(true);
  });

  it('the gateway runs two replicas spread across zones, behind a LoadBalancer on 15443', () => {
    const deployment = byName('Deployment', 'isthmus-gateway').doc;
    expect(at(deployment, 'spec.replicas')).toBe(2);
    const spread = listAt(deployment, 'spec.template.spec.topologySpreadConstraints').filter(isObj);
    expect(spread.some((c) => c.topologyKey === 'topology.kubernetes.io/zone'
      && selects(objAt(c, 'labelSelector.matchLabels'), objAt(deployment, 'spec.template.metadata.labels')))).toBe(true);
    const container = containerOf('isthmus-gateway');
    expect(container.args).toEqual(['gateway', '--config', '/etc/isthmus/cluster.yaml']);
    expect(at(container, 'readinessProbe.httpGet')).toMatchObject({ path: '/readyz', port: 'admin', scheme: 'HTTP' });
    const service = byName('Service', 'isthmus-gateway').doc;
    expect(at(service, 'spec.type')).toBe('LoadBalancer');
    expect(listAt(service, 'spec.ports').map((p) => at(p, 'port'))).toEqual([designPorts.gatewayTls]);
  });

  it('ports match the documented defaults (docs/architecture.md) and the cluster config schema\'s defaults', () => {
    expect(portsOf(containerOf('isthmus-federation'))).toEqual({ api: designPorts.federationApi, dashboard: designPorts.federationDashboard });
    expect(portsOf(containerOf('isthmus-gateway'))).toEqual({ tls: designPorts.gatewayTls, admin: designPorts.gatewayAdmin });
    expect(listAt(byName('Service', 'isthmus-federation').doc, 'spec.ports').map((p) => at(p, 'port')))
      .toEqual([designPorts.federationApi, designPorts.federationDashboard]);
    const federationDefaults = ClusterConfigSchema.properties.federation.properties;
    expect(federationDefaults.apiPort.default).toBe(designPorts.federationApi);
    expect(federationDefaults.dashboardPort.default).toBe(designPorts.federationDashboard);
  });

  it('CRDs are the MCS API ServiceExport and ServiceImport, served and stored with a schema', () => {
    const crds = ofKind('CustomResourceDefinition');
    expect(crds.map((m) => at(m.doc, 'spec.names.kind')).sort()).toEqual(['ServiceExport', 'ServiceImport']);
    expect(crds.flatMap(checkCrd)).toEqual([]);
    for (const { doc } of crds) expect(listAt(doc, 'spec.versions').map((v) => at(v, 'name'))).toContain('v1alpha1');
    const importSchema = objAt(listAt(byName('CustomResourceDefinition', 'serviceimports.multicluster.x-k8s.io').doc, 'spec.versions')[0], 'schema.openAPIV3Schema');
    expect(Object.keys(objAt(importSchema, 'properties.spec.properties'))).toEqual(expect.arrayContaining(['type', 'ports', 'ips', 'sessionAffinity']));
    expect(at(importSchema, 'properties.spec.properties.type.enum')).toEqual(['ClusterSetIP', 'Headless']);
    expect(at(importSchema, 'properties.status.properties.clusters.items.properties.cluster.type')).toBe('string');
  });

  it('the example cluster.yaml passes the project\'s own config validator', () => {
    // The data key contains a dot, so it is read directly rather than through a dotted path.
    const clusterYaml = objAt(byName('ConfigMap', 'isthmus-cluster').doc, 'data')['cluster.yaml'];
    expect(typeof clusterYaml).toBe('string');
    const { config } = parseClusterConfig(String(clusterYaml), 'configmap-example.yaml');
    expect(config).toMatchObject({ cluster: 'east', region: 'us-east', zones: ['us-east-1a', 'us-east-1b'], services: [] });
    expect(config.etcd.endpoints.length).toBeGreaterThan(0);
    expect(config.etcd).toMatchObject({ ca: 'etcd/ca.pem', cert: 'etcd/client.pem', key: 'etcd/client-key.pem' });
    expect(config.etcd.endpoints.every((e) => e.startsWith('https://'))).toBe(true);
    expect(config.federation.apiPort).toBe(designPorts.federationApi);
    expect(config.federation.dashboardPort).toBe(designPorts.federationDashboard);
    expect(config.certificates.caDir).toBe('.'); // the CA files are projected beside cluster.yaml
  });
});

describe('kind cluster definitions', () => {
  const subnets = kindClusters.map(({ doc }) => ({
    cluster: nameOf(doc),
    pod: String(at(doc, 'networking.podSubnet')),
    service: String(at(doc, 'networking.serviceSubnet')),
  }));

  it('define east, west and north', () => {
    expect(kindClusters.map((m) => nameOf(m.doc)).sort()).toEqual(['east', 'north', 'west']);
    for (const { doc } of kindClusters) expect(doc.apiVersion).toBe('kind.x-k8s.io/v1alpha4');
  });

  it('pod and service subnets are pairwise disjoint across all clusters', () => {
    const all = subnets.flatMap((s) => [{ name: `${s.cluster} pods ${s.pod}`, cidr: s.pod }, { name: `${s.cluster} services ${s.service}`, cidr: s.service }]);
    expect(all).toHaveLength(6);
    const overlaps: string[] = [];
    all.forEach((a, i) => all.slice(i + 1).forEach((b) => { if (cidrsOverlap(a.cidr, b.cidr)) overlaps.push(`${a.name} overlaps ${b.name}`); }));
    expect(overlaps).toEqual([]);
  });

  it.each(['east', 'west', 'north'])('%s has one control-plane, two workers, and nodes in two zones of one region', (name) => {
    const cluster = kindClusters.find((m) => nameOf(m.doc) === name);
    const nodes = listAt(cluster?.doc, 'nodes').filter(isObj);
    expect(nodes.map((n) => n.role)).toEqual(['control-plane', 'worker', 'worker']);
    const regions = new Set(nodes.map((n) => objAt(n, 'labels')['topology.kubernetes.io/region']));
    expect(regions.size).toBe(1);
    expect([...regions][0]).toEqual(expect.any(String));
    const zones = new Set(nodes.map((n) => objAt(n, 'labels')['topology.kubernetes.io/zone']));
    expect(zones.size).toBe(2);
    const workerZones = new Set(nodes.filter((n) => n.role === 'worker').map((n) => objAt(n, 'labels')['topology.kubernetes.io/zone']));
    expect(workerZones.size, 'workers (where the gateways run) span both zones').toBe(2);
  });

  it('map the gateway\'s nodePort to a distinct host port per cluster', () => {
    const gatewayNodePort = at(listAt(byName('Service', 'isthmus-gateway').doc, 'spec.ports')[0], 'nodePort');
    const mappings = kindClusters.flatMap(({ doc }) => listAt(doc, 'nodes').flatMap((n) => listAt(n, 'extraPortMappings')).filter(isObj));
    expect(mappings).toHaveLength(3);
    for (const m of mappings) expect(m.containerPort).toBe(gatewayNodePort);
    expect(new Set(mappings.map((m) => m.hostPort)).size).toBe(3);
  });
});
