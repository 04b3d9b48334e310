import { existsSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { basename, dirname, join, resolve } from 'node:path';
import type { Command } from 'commander';
import { describeError, IsthmusError } from '../core/errors.js';
import { keys, recordVersion } from '../core/keys.js';
import { checkName } from '../core/names.js';
import { checkDirectory, ensureDirectory } from '../core/user-paths.js';
import { clockSkewOfEndpoints } from '../federation/clock.js';
import { loadEtcdTls, type EtcdTls } from '../federation/etcd-tls.js';
import type { FederationStore } from '../federation/store.js';
import type { ClusterRecord } from '../model/records.js';
import { addRoot, newBundle, validateBundle, type TrustBundle } from '../trust/bundle.js';
import { createIntermediateCa, type CertAndKey } from '../trust/ca.js';
import { readRootCa, writeClusterCa } from '../trust/ca-files.js';
import { certificateInfo } from '../trust/verify.js';
import { clusterYaml } from './cluster-yaml.js';
import { clusterObjects, controlPlane, type ClusterCaFiles, type ClusterObjects } from './control-plane-objects.js';
import type { ClusterTarget } from './join-kubernetes.js';
import { describePermission, grantHint, type Permission } from './join-permissions.js';
import { action, connectStore, duration, etcdEndpoints, etcdOption, outputOption, wholeNumber, type EtcdFlags } from './common.js';
import { printJson } from './output.js';
import { failedChecks, formatCheck, runChecks, type Check, type CheckResult } from './preflight.js';

export interface JoinOptions extends EtcdFlags {
  region: string;
  zone: string[];
  ca: string;
  /** Where the cluster's CA files and cluster.yaml go: a directory, or (kubeconfig) the cluster itself. */
  out?: string | undefined;
  kubeconfig?: string | undefined;
  context?: string | undefined;
  /** Unset in local mode: join picks the first loopback 127.0.N.1 that no cluster uses and nothing here listens on. */
  federationHost?: string;
  /** host:port other clusters and workloads use to reach the federation API, when not the listen address (NAT, Kubernetes Service). */
  advertise?: string | undefined;
  apiPort: number;
  dashboardPort: number;
  gateway: string[];
  leaseTtl: string;
  force?: boolean;
  /**
   * The client certificate and key the cluster's federation presents to etcd, recorded in
   * cluster.yaml instead of --etcd-cert/--etcd-key (the operator's, which join itself uses).
   */
  federationEtcdCert?: string | undefined;
  federationEtcdKey?: string | undefined;
  output: string;
}

interface JoinContext {
  cluster: string;
  opts: JoinOptions;
  endpoints: string[];
  store?: FederationStore;
  root?: CertAndKey & { trustDomain: string };
  bundle?: { value: TrustBundle; modRevision: number };
  existing?: { modRevision: number };
  federationEtcd?: { cert?: string | undefined; key?: string | undefined };
  /** --kubeconfig: the cluster the Secrets and ConfigMap go to, once the check has reached it. */
  kube?: ClusterTarget;
  /** --kubeconfig: the RBAC permissions the context's user lacks for this join (SelfSubjectAccessReview). */
  kubeMissing?: Permission[];
}

const collect = (value: string, previous: string[]) => [...previous, ...value.split(',').map((s) => s.trim()).filter(Boolean)];
const port = wholeNumber(0, 65535);

export function registerJoin(program: Command): void {
  program.command('join')
    .description('add a cluster to the mesh: preflight checks, intermediate CA, cluster config, records in etcd')
    .argument('<cluster>', 'cluster name (a DNS label)')
    .requiredOption('--region <region>', 'region of the cluster, e.g. us-east')
    .requiredOption('--zone <zone>', 'zone(s) of the cluster; repeat or comma-separate', collect, [])
    .addOption(etcdOption())
    .requiredOption('--ca <dir>', 'root CA directory from `isthmus ca init` (root-cert.pem, root-key.pem)')
    .option('--out <dir>', 'directory for the cluster\'s CA files and cluster.yaml (new or empty); or --kubeconfig')
    .option('--kubeconfig <file>', `write the CA files and cluster.yaml into the cluster instead (namespace ${controlPlane.namespace}: Secret ${controlPlane.caSecret}, ConfigMap ${controlPlane.configMap}, Secret ${controlPlane.etcdSecret} for a TLS etcd), as deploy/multi-cluster/ mounts them; the cluster config says platform: kubernetes`)
    .option('--context <name>', 'kubeconfig context of the cluster (default: the file\'s current-context)')
    .option('--federation-host <host>', 'address the federation service listens on and advertises (default: the first loopback address 127.0.N.1 no other cluster uses, so clusters on one machine do not clash)')
    .option('--advertise <host:port>', 'address others reach the federation API at, when it differs from --federation-host:--api-port (e.g. listening on 0.0.0.0 behind a Service)')
    .option('--api-port <port>', 'federation API port', port, 15010)
    .option('--dashboard-port <port>', 'dashboard port', port, 15014)
    .option('--gateway <host:port>', 'an east-west gateway address to publish; repeatable', collect, [])
    .option('--lease-ttl <duration>', 'how long the cluster\'s records outlive its federation service', duration, '15s')
    .option('--federation-etcd-cert <file>', 'client certificate the cluster\'s federation presents to etcd, recorded in cluster.yaml (default: --etcd-cert, which join itself uses)')
    .option('--federation-etcd-key <file>', 'key of --federation-etcd-cert')
    .option('--force', 'replace a cluster of the same name and reuse a non-empty --out')
    .addOption(outputOption())
    .action(action(async (cluster: string, opts: JoinOptions) => {
      const json = opts.output === 'json';
      // A failed preflight is one JSON document, as every refusal is: `{ error: { code, message,
      // details } }` with every check in `details`, printed by action().
      const joined = await joinCluster(cluster, opts, json ? undefined : (r) => process.stdout.write(`${formatCheck(r)}\n`));
      if (json) return printJson({ joined: true, cluster, ...joined });
      if (joined.kubernetes) {
        const k = joined.kubernetes;
        return void process.stdout.write([
          '',
          `Cluster ${cluster} joined the mesh (trust domain ${joined.trustDomain}).`,
          `  written to context ${k.context} (${k.server}), namespace ${k.namespace}: ${k.objects.join(', ')}`,
          `  intermediate valid until ${joined.intermediateNotAfter}`,
          '',
          'Next: install the control plane (docs/kubernetes.md), or restart it after a --force join:',
          `  kubectl --context ${k.context} apply -k deploy/multi-cluster/overlays/<cluster>`,
          `  kubectl --context ${k.context} -n ${k.namespace} rollout restart deploy`,
          '',
        ].join('\n'));
      }
      process.stdout.write([
        '',
        `Cluster ${cluster} joined the mesh (trust domain ${joined.trustDomain}).`,
        `  config:       ${joined.config}`,
        `  intermediate: ${joined.dir}/ca-cert.pem (valid until ${joined.intermediateNotAfter})`,
        '',
        'Next: start its federation service:',
        `  isthmus federation --config ${joined.config}`,
        '',
      ].join('\n'));
    }));
}

export interface JoinResult {
  /** --out: the directory and its cluster.yaml. */
  dir?: string;
  config?: string;
  /** --kubeconfig: where the objects went. */
  kubernetes?: { context: string; server: string; namespace: string; objects: string[] };
  trustDomain: string;
  intermediateNotAfter: string;
  checks: CheckResult[];
}

/**
 * Preflight, then the intermediate CA, the cluster directory and the etcd records. Throws
 * ISTHMUS_ERR_PREFLIGHT_FAILED (details: every check) without writing anything when a check fails.
 */
export async function joinCluster(cluster: string, opts: JoinOptions, onCheck?: (r: CheckResult) => void): Promise<JoinResult> {
  checkName('cluster', cluster);
  checkName('region', opts.region);
  if (opts.zone.length === 0) throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', '--zone needs at least one zone');
  for (const zone of opts.zone) checkName('zone', zone);
  if ((opts.out === undefined) === (opts.kubeconfig === undefined)) {
    throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', 'say where the cluster\'s CA and config go: --out <dir> for a directory, or --kubeconfig <file> (and --context) for a Kubernetes cluster; not both');
  }
  if (opts.kubeconfig !== undefined) {
    // In a pod: listen on every address (the kubelet probes, the Service forwards), reached through the Service.
    opts.federationHost ??= '0.0.0.0';
    opts.advertise ??= `isthmus-federation.${controlPlane.namespace}.svc:${opts.apiPort}`;
  }
  const context: JoinContext = { cluster, opts, endpoints: etcdEndpoints(opts.etcd) };
  if (opts.federationEtcdCert || opts.federationEtcdKey) {
    // Checked (pair, expiry, readable) before anything is written; etcd itself judges it when the federation starts.
    const files = loadEtcdTls(context.endpoints, { ca: opts.etcdCa, cert: opts.federationEtcdCert, key: opts.federationEtcdKey });
    context.federationEtcd = { cert: files?.files.cert, key: files?.files.key };
  }
  try {
    const checks = await runChecks([...joinChecks, opts.kubeconfig !== undefined ? clusterObjectsCheck : outputDirectoryCheck], context, onCheck);
    const failed = failedChecks(checks);
    if (context.kubeMissing?.length && context.kube) {
      // The refusal a user acts on: every permission to grant, at once; other failures beside it.
      const others = failed.filter((f) => f.name !== clusterObjectsCheck.name).map((f) => f.name);
      throw new IsthmusError('ISTHMUS_ERR_KUBERNETES_FORBIDDEN', `context "${context.kube.context}" may not do what the join needs: ${context.kubeMissing.map(describePermission).join('; ')}; grant ${grantHint(context.kubeMissing)}, or use a context with more rights${others.length > 0 ? ` (failed too: ${others.join(', ')})` : ''}; nothing was written`, { details: checks });
    }
    if (failed.length > 0) {
      throw new IsthmusError('ISTHMUS_ERR_PREFLIGHT_FAILED', `${failed.length} preflight check(s) failed (${failed.map((f) => f.name).join(', ')}); nothing was written`, { details: checks });
    }
    const written = await writeJoin(context);
    return { ...written, trustDomain: context.root!.trustDomain, checks };
  } finally {
    await context.store?.close().catch(() => undefined);
  }
}

const joinChecks: Check<JoinContext>[] = [
  {
    name: 'root CA',
    async run(ctx) {
      try {
        ctx.root = readRootCa(resolve(ctx.opts.ca));
      } catch (err) {
        return { status: 'failed', detail: (err as Error).message, hint: `point --ca at the directory \`isthmus ca init --out\` wrote` };
      }
      const info = certificateInfo(ctx.root.certPem);
      const days = Math.floor((info.notAfter.getTime() - Date.now()) / 86_400_000);
      if (days < 30) return { status: 'failed', detail: `root expires in ${days} days (${info.notAfter.toISOString()})`, hint: 'rotate the root CA before joining more clusters' };
      return { status: 'ok', detail: `trust domain ${ctx.root.trustDomain}, valid for ${days} more days` };
    },
  },
  {
    name: 'etcd reachable and writable',
    async run(ctx) {
      try {
        ctx.store = await connectStore(ctx.opts);
        const ms = await ctx.store.ping();
        return { status: 'ok', detail: `${ctx.endpoints.join(', ')} answered a write in ${ms.toFixed(0)} ms` };
      } catch (err) {
        return { status: 'failed', detail: (err as Error).message, hint: 'start etcd or correct --etcd / ISTHMUS_ETCD (and --etcd-ca, --etcd-cert, --etcd-key for a TLS etcd)' };
      }
    },
  },
  {
    name: 'clock skew',
    needs: ['etcd reachable and writable'],
    async run(ctx) {
      return await clockSkewOfEndpoints(ctx.endpoints, ctx.store?.tls, 'synchronise this machine\'s clock (NTP); certificates would be refused');
    },
  },
  {
    name: 'cluster name free',
    needs: ['etcd reachable and writable'],
    async run(ctx) {
      const existing = await ctx.store!.get<ClusterRecord>(keys.cluster(ctx.cluster));
      if (!existing) return { status: 'ok', detail: `no cluster named ${ctx.cluster} yet` };
      ctx.existing = { modRevision: existing.modRevision };
      const detail = `${ctx.cluster} joined at ${existing.value.joinedAt}`;
      if (ctx.opts.force) return { status: 'warn', detail: `${detail}; --force replaces it`, hint: 'make sure the old cluster\'s federation service is stopped' };
      return { status: 'failed', detail, hint: `pick another name, run \`isthmus leave ${ctx.cluster}\` first, or pass --force to replace it` };
    },
  },
  {
    name: 'CA compatible with the mesh',
    needs: ['root CA', 'etcd reachable and writable'],
    async run(ctx) {
      const td = ctx.root!.trustDomain;
      const stored = await ctx.store!.get(keys.bundle(td));
      const others = (await ctx.store!.list(keys.bundles)).records.length - (stored ? 1 : 0);
      if (!stored) {
        return { status: 'ok', detail: others > 0 ? `new trust domain ${td}: the mesh will federate it with ${others} other(s)` : `first cluster of trust domain ${td}` };
      }
      const bundle = validateBundle(stored.value);
      ctx.bundle = { value: bundle, modRevision: stored.modRevision };
      const fingerprint = certificateInfo(ctx.root!.certPem).fingerprint256;
      if (bundle.roots.some((r) => certificateInfo(r).fingerprint256 === fingerprint)) return { status: 'ok', detail: `root is in the mesh bundle of ${td}` };
      return { status: 'failed', detail: `trust domain ${td} already has a different root in the mesh`, hint: 'use the --ca directory that trust domain was created with, or choose a new trust domain with `isthmus ca init`' };
    },
  },
  {
    name: 'addresses free',
    needs: ['etcd reachable and writable'],
    async run(ctx) {
      const clusters = (await ctx.store!.list<ClusterRecord>(keys.clusters)).records;
      let picked = '';
      if (ctx.opts.federationHost === undefined && ctx.opts.advertise === undefined) {
        ctx.opts.federationHost = await freeLoopbackHost(ctx.cluster, clusters, ctx.opts);
        picked = ` (federation host picked: the first loopback address no other cluster uses; --federation-host chooses another)`;
      }
      const mine = new Set([advertisedAddress(ctx.opts), ...ctx.opts.gateway]);
      const clashes: string[] = [];
      // In a Kubernetes cluster the federation is reached by its Service's cluster-local name,
      // which every cluster has alike; only the gateways' addresses are the mesh's to share.
      const federationShared = ctx.opts.kubeconfig === undefined;
      for (const record of clusters) {
        const owner = record.key.slice(keys.clusters.length);
        if (!federationShared || owner === ctx.cluster || owner.includes('/')) continue;
        if (mine.has(record.value.federation)) clashes.push(`${record.value.federation} (federation of ${owner})`);
      }
      for (const record of (await ctx.store!.list<{ address: string; port: number }>(keys.gateways)).records) {
        const owner = record.key.slice(keys.gateways.length).split('/')[0];
        const address = `${record.value.address}:${record.value.port}`;
        if (owner !== ctx.cluster && mine.has(address)) clashes.push(`${address} (gateway of ${owner})`);
      }
      if (clashes.length > 0) return { status: 'failed', detail: `already used: ${clashes.join(', ')}`, hint: 'give this cluster its own --federation-host/--api-port or --gateway address' };
      return { status: 'ok', detail: `${[...mine].join(', ')}${picked}` };
    },
  },
];

const outputDirectoryCheck: Check<JoinContext> = {
    name: 'output directory',
    async run(ctx) {
      const out = resolve(ctx.opts.out as string);
      try {
        checkDirectory(out, '--out');
      } catch (err) {
        return { status: 'failed', detail: describeError(err), hint: 'choose an --out directory on a writable disk' };
      }
      if (!existsSync(out) || readdirSync(out).length === 0) return { status: 'ok', detail: `${out} will be created` };
      if (ctx.opts.force) return { status: 'warn', detail: `${out} is not empty; --force replaces it` };
      return { status: 'failed', detail: `${out} is not empty`, hint: 'choose a new --out directory, or pass --force to replace it' };
    },
  };

const clusterObjectsCheck: Check<JoinContext> = {
  name: 'Kubernetes cluster',
  async run(ctx) {
    // client-node is loaded only by a join into a cluster.
    const { ClusterTarget, clusterCheck } = await import('./join-kubernetes.js');
    try {
      ctx.kube = ClusterTarget.open(ctx.opts.kubeconfig as string, ctx.opts.context);
    } catch (err) {
      return { status: 'failed', detail: describeError(err), hint: 'kubectl config get-contexts lists the contexts of a kubeconfig' };
    }
    const { result, missing } = await clusterCheck(ctx.kube, clusterSecrets(ctx), ctx.opts.force === true);
    ctx.kubeMissing = missing;
    return result;
  },
};

type JoinWritten = Omit<JoinResult, 'trustDomain' | 'checks'>;

/**
 * The intermediate CA, then the cluster's files, then etcd in one transaction. A directory is
 * written to a temporary sibling first and renamed into place after etcd; a cluster's objects are
 * written after etcd, whose records are removed again if that fails: a failure at any step
 * leaves no cluster record without its CA and config.
 */
async function writeJoin(ctx: JoinContext): Promise<JoinWritten> {
  const root = ctx.root!;
  const intermediate = createIntermediateCa({ root, trustDomain: root.trustDomain, cluster: ctx.cluster });
  const files = { caCert: intermediate.certPem, caKey: intermediate.keyPem, rootCert: root.certPem, certChain: `${intermediate.certPem.trim()}\n${root.certPem.trim()}\n` };
  const intermediateNotAfter = certificateInfo(intermediate.certPem).notAfter.toISOString();
  if (ctx.kube) {
    const objects = joinObjects(ctx, files);
    await commitRecords(ctx, intermediate.certPem);
    try {
      const written = await ctx.kube.write(objects, ctx.opts.force === true);
      return { kubernetes: { context: ctx.kube.context, server: ctx.kube.server, namespace: controlPlane.namespace, objects: written }, intermediateNotAfter };
    } catch (err) {
      await rollbackRecords(ctx);
      if (err instanceof IsthmusError) throw new IsthmusError(err.code, `${err.message}; the cluster's records in etcd were removed again`, { cause: err });
      throw err;
    }
  }
  const out = resolve(ctx.opts.out as string);
  ensureDirectory(dirname(out), '--out');
  const staging = mkdtempSync(join(dirname(out), `.${basename(out)}-`));
  try {
    writeClusterCa(staging, files);
    writeFileSync(join(staging, 'cluster.yaml'), clusterYamlOf(ctx), { mode: 0o644 });
    await commitRecords(ctx, intermediate.certPem);
    try {
      if (existsSync(out)) {
        if (readdirSync(out).length === 0) rmdirSync(out);
        else rmSync(out, { recursive: true, force: true }); // only reached with --force (preflight)
      }
      renameSync(staging, out);
    } catch (err) {
      await rollbackRecords(ctx);
      throw new IsthmusError('ISTHMUS_ERR_CONFIG_UNREADABLE', `could not write ${out}: ${(err as Error).message}; the cluster record was removed again`, { cause: err });
    }
    return { dir: out, config: join(out, 'cluster.yaml'), intermediateNotAfter };
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

/** The cluster record, its intermediate and the trust bundle, in one transaction that loses to any other writer. */
async function commitRecords(ctx: JoinContext, intermediateCert: string): Promise<void> {
  const { cluster, opts } = ctx;
  const root = ctx.root!;
  const record: ClusterRecord = {
    version: recordVersion, name: cluster, region: opts.region, zones: opts.zone, trustDomain: root.trustDomain,
    federation: advertisedAddress(opts), joinedAt: new Date().toISOString(),
  };
  const bundle = ctx.bundle ? addRoot(ctx.bundle.value, root.certPem) : newBundle(root.trustDomain, root.certPem);
  const committed = await ctx.store!.transact({
    ifAbsent: [...(ctx.existing ? [] : [keys.cluster(cluster)]), ...(ctx.bundle ? [] : [keys.bundle(root.trustDomain)])],
    ifModRevision: {
      ...(ctx.existing ? { [keys.cluster(cluster)]: ctx.existing.modRevision } : {}),
      ...(ctx.bundle ? { [keys.bundle(root.trustDomain)]: ctx.bundle.modRevision } : {}),
    },
    puts: [
      { key: keys.cluster(cluster), value: record },
      { key: keys.intermediate(cluster), value: { version: recordVersion, certificate: intermediateCert } },
      { key: keys.bundle(root.trustDomain), value: bundle },
    ],
    deletePrefixes: ctx.existing ? [keys.exportsOf(cluster), keys.gatewaysOf(cluster)] : [],
  });
  if (!committed) {
    throw new IsthmusError('ISTHMUS_ERR_ETCD_CONFLICT', `another writer changed cluster ${cluster} or the trust bundle while joining; nothing was written, run the command again`);
  }
}

async function rollbackRecords(ctx: JoinContext): Promise<void> {
  const root = ctx.root!;
  await ctx.store!.transact({
    deletes: [keys.cluster(ctx.cluster), keys.intermediate(ctx.cluster), ...(ctx.bundle ? [] : [keys.bundle(root.trustDomain)])],
    puts: ctx.bundle ? [{ key: keys.bundle(root.trustDomain), value: ctx.bundle.value }] : [],
  }).catch(() => undefined);
}

/** The Secrets a join into a cluster writes: the CA, and etcd's client files when etcd speaks TLS. */
function clusterSecrets(ctx: JoinContext): string[] {
  return [controlPlane.caSecret, ...(Object.keys(recordedEtcdTls(ctx.store?.tls, ctx.federationEtcd)).length > 0 ? [controlPlane.etcdSecret] : [])];
}

/** The files of a join, keyed as deploy/multi-cluster/base/ projects them beside cluster.yaml. */
function joinObjects(ctx: JoinContext, files: ClusterCaFiles): ClusterObjects {
  const etcdFiles = recordedEtcdTls(ctx.store?.tls, ctx.federationEtcd);
  return clusterObjects(clusterYamlOf(ctx), files, Object.fromEntries(Object.entries(etcdFiles).map(([which, path]) => [which, readFileSync(path, 'utf8')])));
}

function advertisedAddress(opts: JoinOptions): string {
  if (opts.advertise !== undefined && !/^[^:\s]+:[0-9]{1,5}$/.test(opts.advertise)) {
    throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `--advertise "${opts.advertise}" is not host:port`);
  }
  return opts.advertise ?? `${opts.federationHost ?? '127.0.0.1'}:${opts.apiPort}`;
}

/**
 * Local mode: the first 127.0.N.1 (N from 1) whose federation address no other cluster in etcd
 * has and whose API and dashboard ports nothing on this machine listens on, so a second
 * `isthmus join` on one machine does not fail the "addresses free" check.
 */
async function freeLoopbackHost(cluster: string, clusters: { key: string; value: ClusterRecord }[], opts: JoinOptions): Promise<string> {
  const taken = new Set(clusters
    .filter((r) => r.key.slice(keys.clusters.length) !== cluster && !r.key.slice(keys.clusters.length).includes('/'))
    .map((r) => r.value.federation.slice(0, r.value.federation.lastIndexOf(':'))));
  for (let n = 1; n < 255; n++) {
    const host = `127.0.${n}.1`;
    if (taken.has(host)) continue;
    if (await canListen(host, opts.apiPort) && await canListen(host, opts.dashboardPort)) return host;
  }
  throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', 'every loopback address 127.0.1.1 … 127.0.254.1 is taken by a cluster or a listener; pass --federation-host');
}

async function canListen(host: string, port: number): Promise<boolean> {
  if (port === 0) return true;
  return await new Promise((resolveListen) => {
    const server = createServer();
    server.once('error', () => resolveListen(false));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolveListen(true)));
  });
}

/**
 * The TLS files join connected with (or --federation-etcd-cert/-key), absolute, so the
 * federation started from any directory presents the same client certificate to etcd.
 */
function recordedEtcdTls(tls: EtcdTls | undefined, federation: JoinContext['federationEtcd']): { ca?: string; cert?: string; key?: string } {
  const cert = federation?.cert ?? tls?.files.cert;
  const key = federation?.key ?? tls?.files.key;
  return { ...(tls?.files.ca ? { ca: tls.files.ca } : {}), ...(cert ? { cert } : {}), ...(key ? { key } : {}) };
}

function clusterYamlOf(ctx: JoinContext): string {
  const { opts } = ctx;
  return clusterYaml({
    cluster: ctx.cluster, region: opts.region, zones: opts.zone, trustDomain: ctx.root!.trustDomain,
    etcdEndpoints: ctx.endpoints, etcdFiles: recordedEtcdTls(ctx.store?.tls, ctx.federationEtcd),
    federation: { host: opts.federationHost ?? '127.0.0.1', advertise: opts.advertise, apiPort: opts.apiPort, dashboardPort: opts.dashboardPort, leaseTtl: opts.leaseTtl },
    gateways: opts.gateway, inCluster: ctx.kube !== undefined,
  });
}
