import { readFileSync } from 'node:fs';
import { dirname, join, posix } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { clusterYaml } from '../src/cli/cluster-yaml.js';
import { clusterObjects, controlPlane, type ClusterObjects } from '../src/cli/control-plane-objects.js';
import { parseClusterConfig } from '../src/federation/config.js';
import { injectText } from '../src/inject/inject.js';
import { defaultImage, defaultTokenAudience, namespaceConfigMaps } from '../src/inject/sidecar-spec.js';
import { isObj, loadManifests, parseManifests, root, yamlFiles, type Manifest, type Obj } from './helpers/manifests.js';

/*
 * What a pod of deploy/multi-cluster/ can read, from its volumes and mounts, against every file
 * its config names: a gateway that cannot read its token, or a federation whose cluster.yaml
 * names an etcd key nobody mounts, starts and fails in the cluster, where no test of ours runs.
 * So: every file a config refers to is mounted; every ConfigMap and Secret mounted is one that
 * `isthmus join --kubeconfig` writes (or the manifests define), with that key; a projected token
 * carries the audience the federation reviews tokens for; and a gateway pod holds nothing of the
 * CA key.
 */

const at = (value: unknown, ...path: string[]): unknown => path.reduce<unknown>((v, step) => (isObj(v) ? v[step] : undefined), value);
const list = (value: unknown): Obj[] => (Array.isArray(value) ? value.filter(isObj) : []);

/** One file or directory a container sees: where it is and where it comes from. */
interface PodFile {
  path: string;
  source: { kind: 'ConfigMap' | 'Secret'; name: string; key: string; optional: boolean } | { kind: 'token'; audience: string; expirationSeconds: number } | { kind: 'emptyDir' };
  readOnly: boolean;
}

/** The files a container's volume mounts give it (configMap, secret, projected with items; serviceAccountToken; emptyDir as a directory). */
function containerFiles(podSpec: Obj, containerName: string): { files: PodFile[]; problems: string[] } {
  const containers = [...list(podSpec.initContainers), ...list(podSpec.containers)];
  const container = containers.find((c) => c.name === containerName);
  if (!container) return { files: [], problems: [`no container ${containerName}`] };
  const volumes = new Map(list(podSpec.volumes).map((v) => [String(v.name), v]));
  const files: PodFile[] = [];
  const problems: string[] = [];
  for (const mount of list(container.volumeMounts)) {
    const volume = volumes.get(String(mount.name));
    const base = String(mount.mountPath);
    const readOnly = mount.readOnly === true;
    if (!volume) {
      problems.push(`${containerName}: mount ${String(mount.name)} names no volume`);
      continue;
    }
    const items = (kind: 'ConfigMap' | 'Secret', ref: unknown) => {
      const name = String(at(ref, 'name') ?? at(ref, 'secretName'));
      const entries = list(at(ref, 'items'));
      // Without items every key would be a file: the tests could not tell what the pod reads.
      if (entries.length === 0) problems.push(`${containerName}: ${kind} ${name} is mounted without items`);
      for (const item of entries) {
        files.push({ path: posix.join(base, String(item.path)), source: { kind, name, key: String(item.key), optional: at(ref, 'optional') === true }, readOnly });
      }
    };
    if (volume.configMap) items('ConfigMap', volume.configMap);
    else if (volume.secret) items('Secret', volume.secret);
    else if (volume.emptyDir) files.push({ path: base, source: { kind: 'emptyDir' }, readOnly });
    else if (volume.projected) {
      for (const source of list(at(volume, 'projected', 'sources'))) {
        if (source.configMap) items('ConfigMap', source.configMap);
        else if (source.secret) items('Secret', source.secret);
        else if (source.serviceAccountToken) {
          const token = source.serviceAccountToken as Obj;
          files.push({ path: posix.join(base, String(token.path)), source: { kind: 'token', audience: String(token.audience ?? ''), expirationSeconds: Number(token.expirationSeconds ?? 3600) }, readOnly });
        } else problems.push(`${containerName}: volume ${String(volume.name)} has a projected source this test does not know`);
      }
    } else problems.push(`${containerName}: volume ${String(volume.name)} is of a kind this test does not know`);
  }
  return { files, problems };
}

/** The mounted file at `path` (or the writable directory it is under), or a problem naming it. */
function fileAt(files: PodFile[], path: string, what: string): PodFile | string {
  const found = files.find((f) => f.path === path) ?? files.find((f) => f.source.kind === 'emptyDir' && path.startsWith(`${f.path}/`));
  return found ?? `${what} ${path} is not mounted (mounted: ${files.map((f) => f.path).join(', ')})`;
}

/** Every ConfigMap or Secret key a pod mounts is in `objects` (what join writes, or manifests define). */
function unknownSources(files: PodFile[], objects: Map<string, Record<string, string>>): string[] {
  return files.flatMap((f) => {
    if (f.source.kind !== 'ConfigMap' && f.source.kind !== 'Secret') return [];
    const data = objects.get(`${f.source.kind} ${f.source.name}`);
    if (!data) return f.source.optional ? [] : [`${f.path}: ${f.source.kind} ${f.source.name} is written by nobody`];
    return f.source.key in data ? [] : [`${f.path}: ${f.source.kind} ${f.source.name} has no key ${f.source.key}`];
  });
}

/** The objects join writes, as `<Kind> <name>` → data. */
function objectsOf(written: ClusterObjects): Map<string, Record<string, string>> {
  return new Map<string, Record<string, string>>([
    [`ConfigMap ${controlPlane.configMap}`, written.configMap],
    ...written.secrets.map((s) => [`Secret ${s.name}`, s.data] as [string, Record<string, string>]),
  ]);
}

const configArg = (container: Obj | undefined) => {
  const args = (container?.args ?? []) as string[];
  return args[args.indexOf('--config') + 1] ?? '';
};

// What `isthmus join --kubeconfig` writes for a cluster with a TLS etcd and one gateway.
const joinYaml = clusterYaml({
  cluster: 'east', region: 'us-east', zones: ['us-east-1a', 'us-east-1b'], trustDomain: 'mesh.example.org',
  etcdEndpoints: ['https://etcd-0.mesh.example.org:2379', 'https://etcd-1.mesh.example.org:2379', 'https://etcd-2.mesh.example.org:2379'],
  etcdFiles: { ca: '/host/ca.pem', cert: '/host/client.pem', key: '/host/client-key.pem' },
  federation: { host: '0.0.0.0', advertise: `isthmus-federation.${controlPlane.namespace}.svc:15010`, apiPort: 15010, dashboardPort: 15014, leaseTtl: '15s' },
  gateways: ['gateway.east.mesh.example.org:15443'], inCluster: true,
});
const pem = 'PEM';
const written = clusterObjects(joinYaml, { caCert: pem, caKey: pem, rootCert: pem, certChain: pem }, { ca: pem, cert: pem, key: pem });

const manifests = loadManifests(yamlFiles(join(root, 'deploy', 'multi-cluster'))).manifests;
const deployment = (name: string, from: Manifest[] = manifests) => {
  const found = from.find((m) => m.doc.kind === 'Deployment' && at(m.doc, 'metadata', 'name') === name);
  if (!found) throw new Error(`no Deployment ${name}`);
  return found.doc;
};
const podSpecOf = (doc: Obj) => at(doc, 'spec', 'template', 'spec') as Obj;

/** A control-plane pod's files, and the cluster.yaml join writes as read from where its container's --config says. */
function controlPlanePod(doc: Obj, containerName: string) {
  const spec = podSpecOf(doc);
  const { files, problems } = containerFiles(spec, containerName);
  const configPath = configArg(list(spec.containers).find((c) => c.name === containerName));
  return { spec, files, problems, configPath, loaded: parseClusterConfig(joinYaml, configPath) };
}

/** Each `[what, path]` not mounted, as a problem of `who`. */
function unmounted(files: PodFile[], wanted: readonly (readonly [string, string])[], who: string): string[] {
  return wanted.flatMap(([what, path]) => {
    const file = fileAt(files, path, what);
    return typeof file === 'string' ? [`${who}: ${file}`] : [];
  });
}

/** The problems of the federation's pod: each file its cluster.yaml names, and where it comes from. */
function federationProblems(doc: Obj): string[] {
  const { spec, files, problems, configPath, loaded } = controlPlanePod(doc, 'federation');
  const wanted: [string, string][] = [
    ['cluster.yaml', configPath],
    ...['ca-cert.pem', 'ca-key.pem', 'root-cert.pem', 'cert-chain.pem'].map((f): [string, string] => [`CA file ${f}`, posix.join(loaded.caDir, f)]),
    ...Object.entries(loaded.etcdTls).map(([which, path]): [string, string] => [`etcd.${which}`, path as string]),
  ];
  problems.push(...unmounted(files, wanted, 'federation'));
  const config = fileAt(files, configPath, 'cluster.yaml');
  if (typeof config !== 'string' && !(config.source.kind === 'ConfigMap' && config.source.name === controlPlane.configMap && config.source.key === 'cluster.yaml')) {
    problems.push(`federation: ${configPath} is not ConfigMap ${controlPlane.configMap}'s cluster.yaml`);
  }
  // The adapter reaches the API server as the pod's ServiceAccount.
  if (spec.automountServiceAccountToken === false) problems.push('federation: its ServiceAccount token is not mounted, so the adapter cannot reach the API server');
  return [...problems, ...unknownSources(files, objectsOf(written)).map((p) => `federation: ${p}`)];
}

/** The problems of a gateway pod: its config, the root, its token (and the token's audience), and no CA key. */
function gatewayProblems(doc: Obj): string[] {
  const { spec, files, problems, configPath, loaded } = controlPlanePod(doc, 'gateway');
  const entry = loaded.config.gateways[0];
  if (entry?.tokenFile === undefined) problems.push('gateway: cluster.yaml as join writes it gives the gateway no tokenFile: it would need the CA key');
  if (loaded.config.kubernetes.gatewayServiceAccount !== `${String(at(doc, 'metadata', 'namespace'))}/${String(spec.serviceAccountName)}`) {
    problems.push(`gateway: kubernetes.gatewayServiceAccount is ${String(loaded.config.kubernetes.gatewayServiceAccount)}, the pods run as ${String(spec.serviceAccountName)}`);
  }
  problems.push(...unmounted(files, [['cluster.yaml', configPath], ['root-cert.pem', posix.join(loaded.caDir, 'root-cert.pem')]], 'gateway'));
  if (entry?.tokenFile !== undefined) {
    const token = fileAt(files, posix.resolve(dirname(configPath), entry.tokenFile), 'tokenFile');
    if (typeof token === 'string') problems.push(`gateway: ${token}`);
    else if (token.source.kind !== 'token') problems.push(`gateway: tokenFile ${token.path} is not a projected ServiceAccount token`);
    else problems.push(...tokenProblems('gateway', token.source, loaded.config.kubernetes.tokenAudience));
  }
  // The CA key is the federation's alone: not the Secret that holds it, not the key under any name.
  for (const f of files) {
    if ((f.source.kind === 'Secret' && f.source.name === controlPlane.caSecret) || ('key' in f.source && f.source.key === 'ca-key.pem')) {
      problems.push(`gateway: ${f.path} comes from ${f.source.kind} ${'name' in f.source ? f.source.name : ''}, which holds the cluster CA key`);
    }
  }
  problems.push(...replicaProblems(list(spec.containers).find((c) => c.name === 'gateway') ?? {}, entry?.admin));
  return [...problems, ...unknownSources(files, objectsOf(written)).map((p) => `gateway: ${p}`)];
}

/**
 * Each gateway replica publishes its own admin address and zone: `--admin-advertise` is the
 * pod's IP (downward API `status.podIP`) and the port the admin listens on (the entry's `admin`
 * and the container port named admin), and `--zone` the pod's zone label, when it has one.
 */
function replicaProblems(container: Obj, admin: string | undefined): string[] {
  const args = (Array.isArray(container.args) ? container.args : []).map(String);
  const flag = (name: string) => (args.includes(name) ? args[args.indexOf(name) + 1] ?? '' : undefined);
  const fieldOf = (value: string | undefined) => {
    const variable = /^\$\(([A-Z_][A-Z0-9_]*)\)/.exec(value ?? '')?.[1];
    const env = list(container.env).find((e) => e.name === variable);
    return at(env ?? {}, 'valueFrom', 'fieldRef', 'fieldPath');
  };
  const problems: string[] = [];
  const adminAdvertise = flag('--admin-advertise');
  const adminPort = list(container.ports).find((p) => p.name === 'admin')?.containerPort;
  if (adminAdvertise === undefined) problems.push('gateway: no --admin-advertise: every replica would publish the admin listen address, which nobody can dial');
  else {
    if (fieldOf(adminAdvertise) !== 'status.podIP') problems.push(`gateway: --admin-advertise ${adminAdvertise} is not the pod's IP (an env var from fieldRef status.podIP)`);
    const port = adminAdvertise.slice(adminAdvertise.lastIndexOf(':') + 1);
    if (port !== String(adminPort) || port !== admin?.slice(admin.lastIndexOf(':') + 1)) problems.push(`gateway: --admin-advertise port ${port} is not the admin port (container port ${String(adminPort)}, cluster.yaml admin ${String(admin)})`);
  }
  const zone = flag('--zone');
  if (zone !== undefined && fieldOf(zone) !== "metadata.labels['topology.kubernetes.io/zone']") problems.push(`gateway: --zone ${zone} is not the pod's topology.kubernetes.io/zone label`);
  return problems;
}

function tokenProblems(who: string, token: { audience: string; expirationSeconds: number }, audience: string): string[] {
  const problems: string[] = [];
  if (token.audience !== audience) problems.push(`${who}: the token's audience is "${token.audience}", the federation reviews tokens for "${audience}"`);
  // The kubelet refuses less than 10 minutes; an hour keeps a stolen token short-lived.
  if (token.expirationSeconds < 600 || token.expirationSeconds > 3600) problems.push(`${who}: the token lives ${token.expirationSeconds} s; keep it between 600 and 3600`);
  return problems;
}

/** The sidecar `isthmus inject` adds to the sample app, against the sidecar config the namespace mounts. */
function sidecarProblems(injected: Manifest[], sidecarConfigMap: Obj): string[] {
  const doc = deployment('ledger', injected);
  const spec = podSpecOf(doc);
  const sidecar = list(spec.initContainers).find((c) => c.name === 'isthmus-sidecar');
  const { files, problems } = containerFiles(spec, 'isthmus-sidecar');
  const configPath = configArg(sidecar);
  const sidecarYaml = String((sidecarConfigMap.data as Record<string, string>)['sidecar.yaml']);
  const config = parse(sidecarYaml) as { tokenFile?: string; stateDir?: string; federation: { rootCert: string } };
  const dir = dirname(configPath);
  const wanted: [string, string][] = [['sidecar.yaml', configPath], ['federation.rootCert', posix.resolve(dir, config.federation.rootCert)]];
  if (config.tokenFile === undefined) problems.push('sidecar: the namespace\'s sidecar config names no tokenFile');
  else wanted.push(['tokenFile', posix.resolve(dir, config.tokenFile)]);
  problems.push(...unmounted(files, wanted, 'sidecar'));
  if (config.tokenFile !== undefined) {
    const token = fileAt(files, posix.resolve(dir, config.tokenFile), 'tokenFile');
    if (typeof token !== 'string') {
      if (token.source.kind !== 'token') problems.push(`sidecar: tokenFile ${token.path} is not a projected ServiceAccount token`);
      else problems.push(...tokenProblems('sidecar', token.source, parseClusterConfig(joinYaml, '/etc/isthmus/cluster.yaml').config.kubernetes.tokenAudience));
    }
  }
  const state = fileAt(files, posix.resolve(dir, config.stateDir ?? '.'), 'stateDir');
  if (typeof state === 'string' || state.source.kind !== 'emptyDir' || state.readOnly) problems.push(`sidecar: stateDir ${posix.resolve(dir, config.stateDir ?? '.')} is not a writable emptyDir`);
  // The namespace's ConfigMaps: isthmus-sidecar is in the sample app; isthmus-root-cert holds root-cert.pem (docs/kubernetes.md, step 6).
  const namespaceObjects = new Map<string, Record<string, string>>([
    [`ConfigMap ${namespaceConfigMaps.sidecar}`, sidecarConfigMap.data as Record<string, string>],
    [`ConfigMap ${namespaceConfigMaps.rootCert}`, { 'root-cert.pem': pem }],
  ]);
  return [...problems, ...unknownSources(files, namespaceObjects).map((p) => `sidecar: ${p}`)];
}

const replaced = (file: string, from: string, to: string): Manifest[] => {
  const text = readFileSync(join(root, file), 'utf8');
  if (!text.includes(from)) throw new Error(`${file} has no ${JSON.stringify(from)}`);
  return parseManifests([{ file, text: text.replace(from, to) }]).manifests;
};
const sampleApp = 'deploy/multi-cluster/sample-app';
const injectedLedger = (ledgerText = readFileSync(join(root, sampleApp, 'ledger.yaml'), 'utf8'), audience = defaultTokenAudience) =>
  parseManifests([{ file: 'ledger.yaml', text: injectText(ledgerText, 'ledger.yaml', { image: defaultImage, tokenAudience: audience }).text }]).manifests;
const sidecarConfigMap = manifests.find((m) => m.doc.kind === 'ConfigMap' && at(m.doc, 'metadata', 'name') === namespaceConfigMaps.sidecar)?.doc as Obj;

describe('every file the pods of deploy/multi-cluster/ are configured to read is mounted from what `isthmus join --kubeconfig` writes', () => {
  it('the federation: cluster.yaml, the four CA files and etcd\'s client files, from ConfigMap isthmus-cluster and Secrets isthmus-cluster-ca and isthmus-etcd-client', () => {
    expect(federationProblems(deployment('isthmus-federation'))).toEqual([]);
  });

  it('a gateway: cluster.yaml, the root and a projected token for the federation\'s audience; nothing of the CA key', () => {
    expect(gatewayProblems(deployment('isthmus-gateway'))).toEqual([]);
  });

  it('an injected sidecar: its config, the root and a projected token for the federation\'s audience, and a writable state directory', () => {
    expect(sidecarProblems(injectedLedger(), sidecarConfigMap)).toEqual([]);
  });

  it('the example ConfigMap isthmus-cluster is what join writes', () => {
    const example = manifests.find((m) => m.file.endsWith('configmap-example.yaml'))?.doc as Obj;
    const data = example.data as Record<string, string>;
    expect(Object.keys(data).sort()).toEqual(Object.keys(written.configMap).sort());
    expect(parse(data['cluster.yaml'] as string)).toEqual(parse(joinYaml));
  });
});

describe('the checks fail when a mount goes', () => {
  const base = 'deploy/multi-cluster/base';
  it('a gateway without its token, or without the root, or with the CA Secret', () => {
    const noToken = replaced(`${base}/gateway.yaml`, 'serviceAccountToken:\n                  audience: isthmus', 'serviceAccountToken:\n                  audience: kube-apiserver');
    expect(gatewayProblems(deployment('isthmus-gateway', noToken))).toEqual([expect.stringContaining('the token\'s audience is "kube-apiserver"')]);
    const noRoot = replaced(`${base}/gateway.yaml`, '                    - key: root-cert.pem\n                      path: root-cert.pem\n', '');
    expect(gatewayProblems(deployment('isthmus-gateway', noRoot))).toEqual([expect.stringContaining('root-cert.pem /etc/isthmus/root-cert.pem is not mounted')]);
    const withKey = replaced(`${base}/gateway.yaml`, '              - configMap:\n                  name: isthmus-cluster\n', `              - secret:\n                  name: isthmus-cluster-ca\n                  items:\n                    - key: ca-key.pem\n                      path: ca-key.pem\n              - configMap:\n                  name: isthmus-cluster\n`);
    expect(gatewayProblems(deployment('isthmus-gateway', withKey))).toEqual([expect.stringContaining('which holds the cluster CA key')]);
    const noVolume = replaced(`${base}/gateway.yaml`, '            - name: cluster\n              mountPath: /etc/isthmus', '            - name: cluster\n              mountPath: /etc/gateway');
    expect(gatewayProblems(deployment('isthmus-gateway', noVolume)).length).toBeGreaterThanOrEqual(3);
  });

  it('a gateway whose replicas would all publish the same admin address or zone', () => {
    const noAdvertise = replaced(`${base}/gateway.yaml`, ', --admin-advertise, "$(POD_IP):15021"', '');
    expect(gatewayProblems(deployment('isthmus-gateway', noAdvertise))).toEqual([expect.stringContaining('no --admin-advertise')]);
    const hostIp = replaced(`${base}/gateway.yaml`, 'fieldPath: status.podIP', 'fieldPath: status.hostIP');
    expect(gatewayProblems(deployment('isthmus-gateway', hostIp))).toEqual([expect.stringContaining('is not the pod\'s IP')]);
    const otherPort = replaced(`${base}/gateway.yaml`, '"$(POD_IP):15021"', '"$(POD_IP):15443"');
    expect(gatewayProblems(deployment('isthmus-gateway', otherPort))).toEqual([expect.stringContaining('is not the admin port')]);
    const fixedZone = replaced(`${base}/gateway.yaml`, '--zone, "$(POD_ZONE)"', '--zone, us-east-1a');
    expect(gatewayProblems(deployment('isthmus-gateway', fixedZone))).toEqual([expect.stringContaining('is not the pod\'s topology.kubernetes.io/zone label')]);
  });

  it('a federation without the etcd client files, or mounting a Secret join does not write', () => {
    const noEtcd = replaced(`${base}/federation.yaml`, '                    - key: client-key.pem\n                      path: etcd/client-key.pem\n', '');
    expect(federationProblems(deployment('isthmus-federation', noEtcd))).toEqual([expect.stringContaining('etcd.key /etc/isthmus/etcd/client-key.pem is not mounted')]);
    const renamed = replaced(`${base}/federation.yaml`, 'name: isthmus-cluster-ca', 'name: isthmus-ca');
    expect(federationProblems(deployment('isthmus-federation', renamed))).toEqual(expect.arrayContaining([expect.stringContaining('Secret isthmus-ca is written by nobody')]));
  });

  it('a sidecar whose token is for another audience, or whose namespace config names a file it does not mount', () => {
    expect(sidecarProblems(injectedLedger(undefined, 'other'), sidecarConfigMap)).toEqual([expect.stringContaining('the token\'s audience is "other"')]);
    const moved = { ...sidecarConfigMap, data: { 'sidecar.yaml': String((sidecarConfigMap.data as Record<string, string>)['sidecar.yaml']).replace('/var/run/secrets/isthmus/token', '/var/run/secrets/kubernetes.io/serviceaccount/token') } };
    expect(sidecarProblems(injectedLedger(), moved)).toEqual([expect.stringContaining('tokenFile /var/run/secrets/kubernetes.io/serviceaccount/token is not mounted')]);
  });
});
