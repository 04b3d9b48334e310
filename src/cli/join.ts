import { existsSync, mkdtempSync, readdirSync, renameSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { basename, dirname, join, resolve } from 'node:path';
import type { Command } from 'commander';
import { stringify } from 'yaml';
import { describeError, IsthmusError, isIsthmusError } from '../core/errors.js';
import { keys, recordVersion } from '../core/keys.js';
import { checkName } from '../core/names.js';
import { checkDirectory, ensureDirectory } from '../core/user-paths.js';
import { clockSkewFailMs, clockSkewWarnMs, etcdClockSkewMs } from '../federation/clock.js';
import { loadEtcdTls, type EtcdTls } from '../federation/etcd-tls.js';
import type { FederationStore } from '../federation/store.js';
import type { ClusterRecord } from '../model/records.js';
import { addRoot, newBundle, validateBundle, type TrustBundle } from '../trust/bundle.js';
import { createIntermediateCa, type CertAndKey } from '../trust/ca.js';
import { readRootCa, writeClusterCa } from '../trust/ca-files.js';
import { certificateInfo } from '../trust/verify.js';
import { action, connectStore, duration, etcdEndpoints, etcdOption, outputOption, wholeNumber, type EtcdFlags } from './common.js';
import { printJson } from './output.js';
import { failedChecks, formatCheck, printChecks, runChecks, type Check, type CheckResult } from './preflight.js';

export interface JoinOptions extends EtcdFlags {
  region: string;
  zone: string[];
  ca: string;
  out: string;
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
    .requiredOption('--out <dir>', 'directory for the cluster\'s CA files and cluster.yaml (new or empty)')
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
      const joined = await joinCluster(cluster, opts, json ? undefined : (r) => process.stdout.write(`${formatCheck(r)}\n`)).catch((err: unknown) => {
        if (json && isIsthmusError(err, 'ISTHMUS_ERR_PREFLIGHT_FAILED')) printChecks(err.details as CheckResult[], 'json', { joined: false });
        throw err;
      });
      if (json) return printJson({ joined: true, cluster, ...joined });
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

export interface JoinResult { dir: string; config: string; trustDomain: string; intermediateNotAfter: string; checks: CheckResult[] }

/**
 * Preflight, then the intermediate CA, the cluster directory and the etcd records. Throws
 * ISTHMUS_ERR_PREFLIGHT_FAILED (details: every check) without writing anything when a check fails.
 */
export async function joinCluster(cluster: string, opts: JoinOptions, onCheck?: (r: CheckResult) => void): Promise<JoinResult> {
  checkName('cluster', cluster);
  checkName('region', opts.region);
  if (opts.zone.length === 0) throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', '--zone needs at least one zone');
  for (const zone of opts.zone) checkName('zone', zone);
  const context: JoinContext = { cluster, opts, endpoints: etcdEndpoints(opts.etcd) };
  if (opts.federationEtcdCert || opts.federationEtcdKey) {
    // Checked (pair, expiry, readable) before anything is written; etcd itself judges it when the federation starts.
    const files = loadEtcdTls(context.endpoints, { ca: opts.etcdCa, cert: opts.federationEtcdCert, key: opts.federationEtcdKey });
    context.federationEtcd = { cert: files?.files.cert, key: files?.files.key };
  }
  try {
    const checks = await runChecks(joinChecks, context, onCheck);
    const failed = failedChecks(checks);
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
      const skew = await etcdClockSkewMs(ctx.endpoints[0] ?? '', ctx.store?.tls);
      const detail = `${(skew / 1000).toFixed(1)} s from etcd's clock`;
      if (Math.abs(skew) > clockSkewFailMs) return { status: 'failed', detail, hint: 'synchronise this machine\'s clock (NTP); certificates would be refused' };
      if (Math.abs(skew) > clockSkewWarnMs) return { status: 'warn', detail, hint: 'synchronise clocks with NTP' };
      return { status: 'ok', detail };
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
      for (const record of clusters) {
        const owner = record.key.slice(keys.clusters.length);
        if (owner === ctx.cluster || owner.includes('/')) continue;
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
  {
    name: 'output directory',
    async run(ctx) {
      const out = resolve(ctx.opts.out);
      try {
        checkDirectory(out, '--out');
      } catch (err) {
        return { status: 'failed', detail: describeError(err), hint: 'choose an --out directory on a writable disk' };
      }
      if (!existsSync(out) || readdirSync(out).length === 0) return { status: 'ok', detail: `${out} will be created` };
      if (ctx.opts.force) return { status: 'warn', detail: `${out} is not empty; --force replaces it` };
      return { status: 'failed', detail: `${out} is not empty`, hint: 'choose a new --out directory, or pass --force to replace it' };
    },
  },
];

/**
 * Writes the cluster directory to a temporary sibling first, then etcd in one transaction, then
 * renames the directory into place: a failure at any step leaves neither half behind.
 */
async function writeJoin(ctx: JoinContext): Promise<{ dir: string; config: string; intermediateNotAfter: string }> {
  const { cluster, opts } = ctx;
  const root = ctx.root!;
  const store = ctx.store!;
  const out = resolve(opts.out);
  const intermediate = createIntermediateCa({ root, trustDomain: root.trustDomain, cluster });
  ensureDirectory(dirname(out), '--out');
  const staging = mkdtempSync(join(dirname(out), `.${basename(out)}-`));
  try {
    writeClusterCa(staging, {
      caCert: intermediate.certPem,
      caKey: intermediate.keyPem,
      rootCert: root.certPem,
      certChain: `${intermediate.certPem.trim()}\n${root.certPem.trim()}\n`,
    });
    writeFileSync(join(staging, 'cluster.yaml'), clusterYaml(ctx), { mode: 0o644 });

    const record: ClusterRecord = {
      version: recordVersion, name: cluster, region: opts.region, zones: opts.zone, trustDomain: root.trustDomain,
      federation: advertisedAddress(opts), joinedAt: new Date().toISOString(),
    };
    const bundle = ctx.bundle ? addRoot(ctx.bundle.value, root.certPem) : newBundle(root.trustDomain, root.certPem);
    const committed = await store.transact({
      ifAbsent: [...(ctx.existing ? [] : [keys.cluster(cluster)]), ...(ctx.bundle ? [] : [keys.bundle(root.trustDomain)])],
      ifModRevision: {
        ...(ctx.existing ? { [keys.cluster(cluster)]: ctx.existing.modRevision } : {}),
        ...(ctx.bundle ? { [keys.bundle(root.trustDomain)]: ctx.bundle.modRevision } : {}),
      },
      puts: [
        { key: keys.cluster(cluster), value: record },
        { key: keys.intermediate(cluster), value: { version: recordVersion, certificate: intermediate.certPem } },
        { key: keys.bundle(root.trustDomain), value: bundle },
      ],
      deletePrefixes: ctx.existing ? [keys.exportsOf(cluster), keys.gatewaysOf(cluster)] : [],
    });
    if (!committed) {
      throw new IsthmusError('ISTHMUS_ERR_ETCD_CONFLICT', `another writer changed cluster ${cluster} or the trust bundle while joining; nothing was written, run the command again`);
    }
    try {
      if (existsSync(out)) {
        if (readdirSync(out).length === 0) rmdirSync(out);
        else rmSync(out, { recursive: true, force: true }); // only reached with --force (preflight)
      }
      renameSync(staging, out);
    } catch (err) {
      await store.transact({
        deletes: [keys.cluster(cluster), keys.intermediate(cluster), ...(ctx.bundle ? [] : [keys.bundle(root.trustDomain)])],
        puts: ctx.bundle ? [{ key: keys.bundle(root.trustDomain), value: ctx.bundle.value }] : [],
      }).catch(() => undefined);
      throw new IsthmusError('ISTHMUS_ERR_CONFIG_UNREADABLE', `could not write ${out}: ${(err as Error).message}; the cluster record was removed again`, { cause: err });
    }
    return { dir: out, config: join(out, 'cluster.yaml'), intermediateNotAfter: certificateInfo(intermediate.certPem).notAfter.toISOString() };
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
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

function clusterYaml(ctx: JoinContext): string {
  const { opts } = ctx;
  const config = {
    cluster: ctx.cluster,
    region: opts.region,
    zones: opts.zone,
    trustDomain: ctx.root!.trustDomain,
    etcd: { endpoints: ctx.endpoints, ...recordedEtcdTls(ctx.store?.tls, ctx.federationEtcd) },
    federation: {
      host: opts.federationHost ?? '127.0.0.1',
      ...(opts.advertise ? { advertise: opts.advertise } : {}),
      apiPort: opts.apiPort, dashboardPort: opts.dashboardPort, leaseTtl: opts.leaseTtl,
    },
    certificates: { workloadTtl: '24h', caDir: '.' },
    gateways: opts.gateway.map((address, i) => ({ id: `gw-${i + 1}`, address, zone: opts.zone[0] })),
    services: [],
  };
  return `# Written by \`isthmus join\`. Services of the local platform go under services:, e.g.\n#   services:\n#     - name: hello\n#       namespace: demo\n#       ports: [{ port: 8080, protocol: http }]\n#       instances: [{ address: "127.0.0.1:8080", zone: ${opts.zone[0]} }]\n${stringify(config)}`;
}
