import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Value } from '../src/core/typebox.js';
import { SidecarConfigSchema } from '../src/sidecar/config.js';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { controlPlane } from '../src/cli/control-plane-objects.js';
import { injectText } from '../src/inject/inject.js';
import { defaultTokenAudience, sidecarInboundPortName } from '../src/inject/sidecar-spec.js';
import { ClusterConfigSchema, parseClusterConfig } from '../src/federation/config.js';
import {
  isCrd, isKindCluster, isKustomization, isObj, loadManifests, parseManifests, root, schemaProblems, yamlFiles,
  type Manifest, type Obj,
} from './helpers/manifests.js';

/*
 * Offline checks of deploy/ and kind-configs/: no API server runs here. Every document is
 * validated against the schema of what it is (helpers/manifests.ts: the Kubernetes OpenAPI
 * definitions, CRDs for custom resources, kind's and kustomize's shapes), which catches what
 * `kubectl apply --validate=strict` would, a misspelled field included. The rules below the
 * schemas are ours: cross-file references kubectl never checks (a Service selecting no pods, a
 * binding naming a missing role, a probe on an undeclared port) and what the mesh needs.
 */

const image = 'ghcr.io/isthmus-mesh/isthmus:0.1.0';

/** Default ports, docs/architecture.md, "Contracts". */
const designPorts = { federationApi: 15010, federationDashboard: 15014, gatewayTls: 15443, gatewayAdmin: 15021 };

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

function nameOf(doc: Obj): string {
  // kind decodes its config strictly and has no metadata: the cluster name is top-level.
  const name = isKindCluster(doc) ? doc.name : at(doc, 'metadata.name');
  return typeof name === 'string' ? name : '';
}

const workloadKinds = ['Deployment', 'StatefulSet', 'DaemonSet'];
const isWorkload = (doc: Obj) => workloadKinds.includes(String(doc.kind));

function containersOf(doc: Obj): Obj[] {
  return listAt(doc, 'spec.template.spec.containers').filter(isObj);
}

/** What a workload here must have beyond its schema, and every reference inside it that must resolve. */
function checkWorkload({ file, doc }: Manifest): string[] {
  const where = `${file} ${String(doc.kind)} ${nameOf(doc)}`;
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
  const targets = all.filter((m) => isWorkload(m.doc) && namespaceOf(m.doc) === namespaceOf(doc)
    && selects(selector, objAt(m.doc, 'spec.template.metadata.labels')));
  if (targets.length === 0) return [`${where}: selector ${JSON.stringify(selector)} matches no workload's pod labels`];
  const problems: string[] = [];
  for (const port of listAt(doc, 'spec.ports').filter(isObj)) {
    const target = port.targetPort ?? port.port;
    // Native sidecars (init containers with restartPolicy: Always) serve the pod's ports too.
    const serving = (t: Manifest) => [...containersOf(t.doc), ...listAt(t.doc, 'spec.template.spec.initContainers').filter(isObj).filter((c) => c.restartPolicy === 'Always')];
    const declared = targets.some((t) => serving(t).some((c) =>
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
const manifests = loaded.manifests;
const objects = manifests.filter((m) => !isKindCluster(m.doc) && !isKustomization(m.doc));
const ofKind = (kind: string) => objects.filter((m) => m.doc.kind === kind);
const byName = (kind: string, name: string) => {
  const found = ofKind(kind).find((m) => nameOf(m.doc) === name);
  if (!found) throw new Error(`no ${kind} ${name} in deploy/`);
  return found;
};
const kindClusters = manifests.filter((m) => isKindCluster(m.doc));
const kustomizations = manifests.filter((m) => isKustomization(m.doc));
const containerOf = (deployment: string) => {
  const container = containersOf(byName('Deployment', deployment).doc)[0];
  if (!container) throw new Error(`Deployment ${deployment} has no container`);
  return container;
};
const portsOf = (container: Obj) =>
  Object.fromEntries(listAt(container, 'ports').filter(isObj).map((p) => [String(p.name), p.containerPort]));
/** Copies of a file with one change each, validated like the real ones. */
const brokenCopy = (file: string, from: string, to: string, name: string) => {
  const text = readFileSync(join(root, file), 'utf8');
  if (!text.includes(from)) throw new Error(`${file} has no ${from}`);
  return parseManifests([{ file: name, text: text.replace(from, to) }]).manifests;
};

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

describe('schema validation of deploy/ and kind-configs/', () => {
  it('every document validates against its schema: Kubernetes OpenAPI, its CRD, kind v1alpha4 or kustomize', async () => {
    expect(loaded.problems).toEqual([]);
    expect(await schemaProblems(manifests)).toEqual([]);
    // Each kind of schema was used at least once, so none of them passes by having nothing to check.
    expect(objects.filter((m) => isCrd(m.doc))).toHaveLength(2);
    expect(objects.filter((m) => m.doc.kind === 'ServiceExport')).toHaveLength(1);
    expect(kindClusters).toHaveLength(3);
    expect(kustomizations.length).toBeGreaterThanOrEqual(6);
  });

  // Deliberately broken copies of real files: each must fail, naming its copy and the field.
  const broken: [string, string, string, string, RegExp][] = [
    ['a misspelled container field', 'deploy/multi-cluster/base/gateway.yaml', 'readinessProbe:', 'readinesProbe:', /'"readinesProbe"' does not exist in type 'IContainer'/],
    ['a misspelled Service field', 'deploy/multi-cluster/base/gateway.yaml', '  type: LoadBalancer', '  typ: LoadBalancer', /'"typ"' does not exist in type 'IServiceSpec'/],
    ['a number where a string belongs', 'deploy/multi-cluster/base/federation.yaml', 'name: ISTHMUS_LOG_FORMAT\n              value: json', 'name: ISTHMUS_LOG_FORMAT\n              value: 1', /Type 'number' is not assignable to type 'string'/],
    ['a misspelled RBAC field', 'deploy/multi-cluster/base/federation.yaml', 'apiGroups: [discovery.k8s.io]', 'apiGroup: [discovery.k8s.io]', /'"apiGroup"' does not exist in type 'IPolicyRule'/],
    ['a misspelled CRD schema key', 'deploy/multi-cluster/crds/mcs-api.yaml', 'openAPIV3Schema:', 'openAPIv3Schema:', /'"openAPIv3Schema"' does not exist/],
    ['a misspelled custom resource field (checked against its CRD)', 'deploy/multi-cluster/sample-app/ledger.yaml', 'kind: ServiceExport\nmetadata:', 'kind: ServiceExport\nspec: {}\nmetadata:', /ServiceExport ledger\): \/ must NOT have additional properties \(spec\)/],
    ['a misspelled kind node field', 'kind-configs/east.yaml', 'extraPortMappings:', 'extraPortMapping:', /document 1 \(Cluster east\): \/nodes\/0\/extraPortMapping/],
    ['a wrong kind node role', 'kind-configs/west.yaml', 'role: worker', 'role: agent', /\/nodes\/1\/role/],
    ['a misspelled kustomization field', 'deploy/multi-cluster/overlays/east/kustomization.yaml', 'resources:', 'resourcez:', /\/resourcez/],
  ];
  // All copies are checked in one pass (one TypeScript program): each problem names its copy.
  const label = (i: number, file: string) => `broken copy ${i + 1} of ${file}`;
  let brokenProblems: Promise<string[]> | undefined;
  const problemsOfBrokenCopies = () => {
    brokenProblems ??= schemaProblems(broken.flatMap(([, file, from, to], i) => brokenCopy(file, from, to, label(i, file))),
      ofKind('CustomResourceDefinition').map((m) => m.doc));
    return brokenProblems;
  };

  it.each(broken.map((b, i) => [...b, i] as const))('%s fails', async (_, file, _from, _to, problem, i) => {
    const problems = (await problemsOfBrokenCopies()).filter((p) => p.startsWith(`${label(i, file)} `));
    expect(problems.join('\n')).toMatch(problem);
  });

  it('an object of no known kind is reported rather than passed', async () => {
    const [m] = parseManifests([{ file: 'x.yaml', text: 'apiVersion: apps/v1\nkind: Deploymnet\nmetadata: {name: x}\n' }]).manifests;
    expect((await schemaProblems(m ? [m] : [])).join('\n')).toMatch(/apps\/v1 Deploymnet is no Kubernetes API kind/);
  });
});

describe('the checkers themselves', () => {
  // Guards against checks that pass vacuously: each broken document must produce a problem.
  const deployment = (patch: (d: Obj) => void): Manifest => {
    const doc = structuredClone(byName('Deployment', 'isthmus-gateway').doc);
    patch(doc);
    return { file: 'broken.yaml', index: 1, doc };
  };

  it.each<[string, (d: Obj) => void, RegExp]>([
    ['selector differs from the template labels', (d) => { objAt(d, 'spec.selector.matchLabels')['extra'] = 'x'; }, /differ from the template labels/],
    ['a container without limits', (d) => { delete objAt(containersOf(d)[0], 'resources').limits; }, /no resources\.limits\.cpu/],
    ['an unnamed port', (d) => { delete (listAt(containersOf(d)[0], 'ports')[0] as Obj).name; }, /has no name/],
    ['a probe on an undeclared port', (d) => { objAt(containersOf(d)[0], 'readinessProbe.httpGet').port = 'nope'; }, /uses port nope/],
  ])('a Deployment with %s is reported', (_, patch, problem) => {
    expect(checkWorkload(deployment(patch)).join('\n')).toMatch(problem);
  });

  it('a Service whose selector matches no workload is reported', () => {
    const doc = structuredClone(byName('Service', 'isthmus-gateway').doc);
    objAt(doc, 'spec.selector')['app.kubernetes.io/name'] = 'nobody';
    expect(checkService({ file: 'broken.yaml', index: 1, doc }, objects).join('\n')).toMatch(/matches no workload/);
  });

  it('a binding to a missing role or account is reported', () => {
    const doc = structuredClone(byName('ClusterRoleBinding', 'isthmus-federation').doc);
    objAt(doc, 'roleRef').name = 'missing';
    (listAt(doc, 'subjects')[0] as Obj).namespace = 'elsewhere';
    const problems = checkClusterRoleBinding({ file: 'broken.yaml', index: 1, doc }, objects).join('\n');
    expect(problems).toMatch(/roleRef ClusterRole\/missing/);
    expect(problems).toMatch(/ServiceAccount elsewhere\/isthmus-federation/);
  });
});

describe('manifests in deploy/', () => {
  const workloads = objects.filter((m) => isWorkload(m.doc));

  it('every object has a name (the API server requires one; the OpenAPI schema does not say so)', () => {
    expect(objects.filter((m) => nameOf(m.doc) === '').map((m) => `${m.file} document ${m.index}`)).toEqual([]);
  });

  it('workloads: selectors match template labels, containers have resources, named ports, probes on declared ports', () => {
    expect(workloads.map((m) => nameOf(m.doc)).sort()).toEqual(['caller', 'isthmus-etcd', 'isthmus-federation', 'isthmus-gateway', 'ledger']);
    expect(workloads.filter((m) => nameOf(m.doc) !== 'caller').flatMap(checkWorkload)).toEqual([]);
  });

  it('every Isthmus container uses the release image', () => {
    const images = ['isthmus-federation', 'isthmus-gateway'].flatMap((name) => containersOf(byName('Deployment', name).doc).map((c) => c.image));
    expect(new Set(images)).toEqual(new Set([image]));
  });

  it('Services select a workload\'s pods and target ports they declare (the sample app as `isthmus inject` deploys it)', () => {
    expect(ofKind('Service').map((m) => nameOf(m.doc)).sort()).toEqual(['isthmus-etcd', 'isthmus-federation', 'isthmus-gateway', 'ledger']);
    const sampleFiles = [...new Set(objects.filter((m) => m.file.includes('/sample-app/')).map((m) => m.file))];
    const injected = parseManifests(sampleFiles.map((file) => ({ file, text: injectText(readFileSync(join(root, file), 'utf8'), file, { image, tokenAudience: defaultTokenAudience }).text }))).manifests;
    const deployed = [...objects.filter((m) => !m.file.includes('/sample-app/')), ...injected];
    expect(ofKind('Service').flatMap((m) => checkService(m, deployed))).toEqual([]);
  });

  it('ClusterRoleBindings refer to a ClusterRole and ServiceAccounts in these files', () => {
    expect(ofKind('ClusterRoleBinding').length).toBeGreaterThan(0);
    expect(ofKind('ClusterRoleBinding').flatMap((m) => checkClusterRoleBinding(m, objects))).toEqual([]);
  });

  it('workloads run as ServiceAccounts of their namespace; the control plane lives in isthmus-system, the demo in demo', () => {
    for (const { doc } of workloads) {
      const account = at(doc, 'spec.template.spec.serviceAccountName');
      if (account === undefined) {
        expect(at(doc, 'spec.template.spec.automountServiceAccountToken'), `${nameOf(doc)} uses the default account without its token`).toBe(false);
        continue;
      }
      expect(ofKind('ServiceAccount').some((m) => nameOf(m.doc) === account && namespaceOf(m.doc) === namespaceOf(doc)), String(account)).toBe(true);
    }
    const namespaced = objects.filter((m) => !['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition'].includes(String(m.doc.kind)));
    const namespaceOfFile = (file: string) => (file.includes('/sample-app/') ? 'demo' : 'isthmus-system');
    expect(namespaced.filter((m) => at(m.doc, 'metadata.namespace') !== namespaceOfFile(m.file)).map((m) => `${m.file} ${nameOf(m.doc)}`)).toEqual([]);
    expect(ofKind('Namespace').map((m) => nameOf(m.doc)).sort()).toEqual(['demo', 'isthmus-system']);
  });

  it('the federation ClusterRole is least privilege: reads what the adapter watches, writes imports, export status and TokenReviews only (which verbs exactly: kube-rbac.test.ts)', () => {
    const rules = listAt(byName('ClusterRole', 'isthmus-federation').doc, 'rules').filter(isObj);
    // Nothing else may be written, and no rule uses a wildcard.
    const writes = rules.filter((r) => listAt(r, 'verbs').some((v) => !['get', 'list', 'watch'].includes(String(v))));
    expect(new Set(writes.flatMap((r) => listAt(r, 'resources')))).toEqual(new Set(['serviceimports', 'serviceimports/status', 'serviceexports/status', 'tokenreviews']));
    expect(rules.flatMap((r) => [...listAt(r, 'apiGroups'), ...listAt(r, 'resources'), ...listAt(r, 'verbs')])).not.toContain('*');
    expect(ofKind('ClusterRole')).toHaveLength(1);
  });

  it('docs/kubernetes.md\'s table of what the federation\'s ServiceAccount may do is the ClusterRole\'s rules', () => {
    const pairs = (rows: { group: string; resources: string[]; verbs: string[] }[]) => rows
      .flatMap((r) => r.resources.flatMap((resource) => r.verbs.map((verb) => `${r.group}/${resource} ${verb}`))).sort();
    const manifest = listAt(byName('ClusterRole', 'isthmus-federation').doc, 'rules').filter(isObj).flatMap((r) => listAt(r, 'apiGroups')
      .map((group) => ({ group: String(group), resources: listAt(r, 'resources').map(String), verbs: listAt(r, 'verbs').map(String) })));
    const doc = readFileSync(join(root, 'docs/kubernetes.md'), 'utf8');
    const section = doc.slice(doc.indexOf('### What the federation\'s ServiceAccount may do'));
    const table = section.split('\n').filter((line) => /^\| `/.test(line)).map((line) => {
      const [group, resources, verbs] = line.split('|').slice(1, 4).map((cell) => cell.trim());
      return { group: (group ?? '').replace(/`/g, '').replace(/^""$/, ''), resources: (resources ?? '').split(', '), verbs: (verbs ?? '').split(', ') };
    });
    expect(table.length).toBeGreaterThan(0);
    expect(pairs(table)).toEqual(pairs(manifest));
  });

  it('the federation runs `isthmus federation` hardened, with the CA Secret, etcd client Secret and config ConfigMap mounted', () => {
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
    expect(at(etcdClient, 'secret.optional')).toBe(true);
    expect(listAt(etcdClient, 'secret.items').map((i) => at(i, 'path')).sort()).toEqual(['etcd/ca.pem', 'etcd/client-key.pem', 'etcd/client.pem']);
    const configMap = sources.find((s) => at(s, 'configMap.name') === 'isthmus-cluster');
    expect(listAt(configMap, 'configMap.items').map((i) => at(i, 'path'))).toEqual(['cluster.yaml']);
    // The example ConfigMap is the one the Deployments mount.
    expect(byName('ConfigMap', 'isthmus-cluster').doc.data).toHaveProperty(['cluster.yaml']);
    const mount = listAt(container, 'volumeMounts').filter(isObj).find((m) => m.mountPath === '/etc/isthmus');
    expect(mount?.readOnly).toBe(true);
  });

  it('the federation runs one replica: two are not safe yet (docs/kubernetes.md, "One federation replica")', () => {
    expect(at(byName('Deployment', 'isthmus-federation').doc, 'spec.replicas')).toBe(1);
    // A PodDisruptionBudget over one pod would block every node drain.
    expect(ofKind('PodDisruptionBudget').filter((m) => objAt(m.doc, 'spec.selector.matchLabels')['app.kubernetes.io/name'] === 'isthmus-federation')).toEqual([]);
  });

  it('the federation is updated by Recreate: a rolling update would run two replicas while the new pod starts (docs/kubernetes.md, "Updating the federation")', () => {
    const deployment = byName('Deployment', 'isthmus-federation').doc;
    expect(at(deployment, 'spec.strategy')).toEqual({ type: 'Recreate' });
  });

  it('the gateway runs two replicas spread across zones, behind a LoadBalancer on 15443', () => {
    const deployment = byName('Deployment', 'isthmus-gateway').doc;
    expect(at(deployment, 'spec.replicas')).toBe(2);
    const spread = listAt(deployment, 'spec.template.spec.topologySpreadConstraints').filter(isObj);
    expect(spread.some((c) => c.topologyKey === 'topology.kubernetes.io/zone'
      && selects(objAt(c, 'labelSelector.matchLabels'), objAt(deployment, 'spec.template.metadata.labels')))).toBe(true);
    const container = containerOf('isthmus-gateway');
    expect(container.args).toEqual(['gateway', '--config', '/etc/isthmus/cluster.yaml', '--admin-advertise', '$(POD_IP):15021', '--zone', '$(POD_ZONE)']);
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

  it('kustomizations name files that exist; the overlays generate nothing, and base/ mounts by name what `isthmus join --kubeconfig` writes', () => {
    for (const { file, doc } of kustomizations) {
      for (const resource of listAt(doc, 'resources')) expect(existsSync(join(root, dirname(file), String(resource))), `${file}: ${String(resource)}`).toBe(true);
    }
    const overlays = kustomizations.filter((m) => m.file.includes('/overlays/'));
    expect(overlays.map((m) => m.file.split('/').at(-2)).sort()).toEqual(['central', 'east', 'west']);
    for (const { file, doc } of overlays) {
      expect(listAt(doc, 'resources'), file).toContain('../../base');
      // The CA Secret and the config live in the cluster only (join writes them): no CA key in a checkout.
      expect(listAt(doc, 'configMapGenerator'), file).toEqual([]);
      expect(listAt(doc, 'secretGenerator'), file).toEqual([]);
    }
    expect(overlays.filter((m) => listAt(m.doc, 'resources').includes('../../etcd-lab')).map((m) => m.file.split('/').at(-2))).toEqual(['central']);
    const volume = (deployment: string) => listAt(byName('Deployment', deployment).doc, 'spec.template.spec.volumes').map((v) => v as Obj).find((v) => at(v, 'name') === 'cluster') as Obj;
    const sources = listAt(volume('isthmus-federation'), 'projected.sources').map((source) => {
      const ref = (at(source as Obj, 'configMap') ?? at(source as Obj, 'secret')) as Obj;
      return `${at(source as Obj, 'configMap') ? 'ConfigMap' : 'Secret'} ${String(at(ref, 'name'))}: ${listAt(ref, 'items').map((i) => String(at(i as Obj, 'key'))).join(',')}`;
    });
    expect(sources).toEqual([
      `ConfigMap ${controlPlane.configMap}: cluster.yaml`,
      `Secret ${controlPlane.caSecret}: ca-cert.pem,ca-key.pem,root-cert.pem,cert-chain.pem`,
      `Secret ${controlPlane.etcdSecret}: ca.pem,client.pem,client-key.pem`,
    ]);
    // The gateway: the config and the root from the ConfigMap, its own token; never the CA Secret (test/pod-files.test.ts checks every path).
    expect(listAt(volume('isthmus-gateway'), 'projected.sources').map((source) => Object.keys(source as Obj)[0])).toEqual(['configMap', 'serviceAccountToken']);
    expect(at(listAt(volume('isthmus-gateway'), 'projected.sources')[0], 'configMap.name')).toBe(controlPlane.configMap);
  });

  it('an exported Service targets its app\'s own port; the mesh dials the pods\' sidecar inbound, which inject adds', () => {
    const exported = ofKind('ServiceExport').map((m) => `${namespaceOf(m.doc)}/${nameOf(m.doc)}`);
    expect(exported).toEqual(['demo/ledger']);
    for (const id of exported) {
      const service = ofKind('Service').find((m) => `${namespaceOf(m.doc)}/${nameOf(m.doc)}` === id);
      expect(listAt(service?.doc, 'spec.ports').map((p) => at(p, 'targetPort')), id).toEqual(['http']);
    }
    // The walk-through pipes ledger.yaml through `isthmus inject`: what comes out has the port the adapter looks for.
    const file = 'deploy/multi-cluster/sample-app/ledger.yaml';
    const injected = injectText(readFileSync(join(root, file), 'utf8'), file, { image, tokenAudience: defaultTokenAudience });
    expect(injected.changed).toEqual([expect.stringMatching(/^Deployment demo\/ledger /)]);
    expect(injected.text).toContain(`name: ${sidecarInboundPortName}`);
  });

  it('the sample app\'s sidecar config passes the sidecar config validator once a pod\'s values are added', () => {
    const sidecarYaml = String(objAt(byName('ConfigMap', 'isthmus-sidecar').doc, 'data')['sidecar.yaml']);
    const config = { ...parse(sidecarYaml) as Obj, namespace: 'demo', service: 'ledger' };
    expect(Value.Errors(SidecarConfigSchema, Value.Default(SidecarConfigSchema, config)).First()).toBeUndefined();
    expect(config).toMatchObject({ federation: { url: 'https://isthmus-federation.isthmus-system.svc:15010', rootCert: 'root-cert.pem' } });
  });
});

describe('kind cluster definitions', () => {
  const subnets = kindClusters.map(({ doc }) => ({
    cluster: nameOf(doc),
    pod: String(at(doc, 'networking.podSubnet')),
    service: String(at(doc, 'networking.serviceSubnet')),
  }));

  it('define east, west and central', () => {
    expect(kindClusters.map((m) => nameOf(m.doc)).sort()).toEqual(['central', 'east', 'west']);
    for (const { doc } of kindClusters) expect(doc.apiVersion).toBe('kind.x-k8s.io/v1alpha4');
  });

  it('pod and service subnets are pairwise disjoint across all clusters', () => {
    const all = subnets.flatMap((s) => [{ name: `${s.cluster} pods ${s.pod}`, cidr: s.pod }, { name: `${s.cluster} services ${s.service}`, cidr: s.service }]);
    expect(all).toHaveLength(6);
    const overlaps: string[] = [];
    all.forEach((a, i) => all.slice(i + 1).forEach((b) => { if (cidrsOverlap(a.cidr, b.cidr)) overlaps.push(`${a.name} overlaps ${b.name}`); }));
    expect(overlaps).toEqual([]);
  });

  it.each(['east', 'west', 'central'])('%s has one control-plane, two workers, and nodes in two zones of one region', (name) => {
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
