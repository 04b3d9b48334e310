import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { IsthmusError, isIsthmusError } from '../core/errors.js';
import { keys } from '../core/keys.js';
import { clockSkewOfEndpoints } from '../federation/clock.js';
import { usesOfRoot } from './root-uses.js';
import { loadClusterConfig, type LoadedClusterConfig } from '../federation/config.js';
import type { FederationStore } from '../federation/store.js';
import type { Catalog } from '../model/catalog.js';
import { isRecord, ProbeRecordSchema, SloPolicySchema } from '../model/records.js';
import { validateBundle, type TrustBundle } from '../trust/bundle.js';
import { readClusterCa } from '../trust/ca-files.js';
import { certificateInfo, isSignedBy } from '../trust/verify.js';
import { action, connectStore, etcdEndpoints, etcdFlagsWithConfig, etcdOption, exitFailure, outputOption, type EtcdFlags } from './common.js';
import { inMesh, readMeshCatalog } from './list.js';
import { dashboardOf, liveOverview } from './dashboard-client.js';
import { failedChecks, printChecks, runChecks, type Check } from './preflight.js';

interface CheckContext {
  endpoints: string[];
  etcd: EtcdFlags;
  configPath?: string;
  loaded?: LoadedClusterConfig;
  store?: FederationStore;
  /** Read once by the first check that needs it; every later one sees the same mesh. */
  catalog?: Catalog;
  bundles: TrustBundle[];
}

const expiryWarnDays = 30;

export function registerCheck(program: Command): void {
  program.command('check')
    .description('check the mesh: etcd, clock skew, certificates and their expiry, each cluster\'s liveness; says how to fix what is wrong')
    .addOption(etcdOption())
    .option('-c, --config <file>', 'also check this cluster\'s config and CA files (and take the etcd address and TLS files from it)')
    .addOption(outputOption())
    .action(action(async (opts: EtcdFlags & { config?: string; output: string }) => {
      const loaded = opts.config ? loadClusterConfig(opts.config) : undefined;
      const etcd = etcdFlagsWithConfig(opts, loaded);
      const context: CheckContext = { endpoints: etcdEndpoints(etcd.etcd), etcd, bundles: [], ...(loaded ? { loaded } : {}) };
      try {
        const results = await runChecks(checks(context), context);
        printChecks(results, opts.output);
        const failed = failedChecks(results);
        if (failed.length > 0 && opts.output === 'json') {
          // The JSON above already names each failed check: one document on stdout, the reason on stderr.
          process.stderr.write(`isthmus check: ${failed.length} check(s) failed: ${failed.map((f) => f.name).join(', ')}\n`);
          process.exitCode = exitFailure;
        } else if (failed.length > 0) {
          throw new IsthmusError('ISTHMUS_ERR_PREFLIGHT_FAILED', `${failed.length} check(s) failed: ${failed.map((f) => f.name).join(', ')}`);
        }
      } finally {
        await context.store?.close().catch(() => undefined);
      }
    }));
}

function checks(ctx: CheckContext): Check<CheckContext>[] {
  const list: Check<CheckContext>[] = [
    {
      name: 'etcd reachable and writable',
      async run() {
        try {
          ctx.store = await connectStore(ctx.etcd);
          const ms = await ctx.store.ping();
          const status = await ctx.store.status();
          return { status: 'ok', detail: `${ctx.endpoints.join(', ')}: etcd ${status.version}, write round trip ${ms.toFixed(0)} ms` };
        } catch (err) {
          return { status: 'failed', detail: (err as Error).message, hint: 'start etcd, or pass the right --etcd / ISTHMUS_ETCD (and --etcd-ca, --etcd-cert, --etcd-key for a TLS etcd)' };
        }
      },
    },
    {
      name: 'etcd TLS',
      needs: ['etcd reachable and writable'],
      async run() {
        const files = ctx.store?.tls?.files;
        if (!files) return { status: 'warn', detail: 'plain text (http://): anyone who reaches etcd can rewrite the trust bundles', hint: 'turn on TLS with client certificates (docs/security.md, "etcd")' };
        if (!files.cert) return { status: 'warn', detail: `TLS, with no client certificate${files.ca ? ` (CA ${files.ca})` : ''}`, hint: 'etcd should ask for client certificates (--client-cert-auth; docs/security.md, "etcd")' };
        const notAfter = new Date(new X509Certificate(readFileSync(files.cert)).validTo);
        const days = Math.floor((notAfter.getTime() - Date.now()) / 86_400_000);
        const detail = `client certificate ${files.cert}, valid for ${days} more days`;
        if (days < 30) return { status: 'warn', detail, hint: 'issue a new one before it expires (isthmus ca issue-etcd-client)' };
        return { status: 'ok', detail };
      },
    },
    {
      name: 'clock skew',
      needs: ['etcd reachable and writable'],
      async run() {
        return await clockSkewOfEndpoints(ctx.endpoints, ctx.store?.tls, 'synchronise clocks with NTP: certificates are refused outside their validity window');
      },
    },
    {
      name: 'trust bundles',
      needs: ['etcd reachable and writable'],
      async run() {
        const { records } = await ctx.store!.list(keys.bundles);
        if (records.length === 0) return { status: 'failed', detail: 'no trust bundle in etcd', hint: 'join a cluster with `isthmus join`' };
        const problems: string[] = [];
        const expiring: string[] = [];
        for (const record of records) {
          try {
            const bundle = validateBundle(record.value);
            ctx.bundles.push(bundle);
            for (const root of bundle.roots) {
              const days = daysLeft(root);
              if (days < expiryWarnDays) expiring.push(`${bundle.trustDomain} root expires in ${days} days`);
            }
          } catch (err) {
            problems.push(`${record.key}: ${(err as Error).message}`);
          }
        }
        if (problems.length > 0) return { status: 'failed', detail: problems.join('; '), hint: 'rejoin a cluster of that trust domain with its root CA to rewrite the bundle' };
        const detail = `${ctx.bundles.length} trust domain(s): ${ctx.bundles.map((b) => `${b.trustDomain} (${b.roots.length} root${b.roots.length > 1 ? 's' : ''})`).join(', ')}`;
        if (expiring.length > 0) return { status: 'warn', detail: `${detail}; ${expiring.join('; ')}`, hint: 'rotate the root CA (docs/trust.md)' };
        return { status: 'ok', detail };
      },
    },
    {
      name: 'cluster intermediates',
      needs: ['trust bundles'],
      async run() {
        const { records } = await ctx.store!.list<{ certificate?: string }>(keys.intermediates);
        const roots = ctx.bundles.flatMap((b) => b.roots);
        const bad: string[] = [];
        const expiring: string[] = [];
        for (const record of records) {
          const cluster = record.key.slice(keys.intermediates.length);
          try {
            const pem = String(record.value.certificate ?? '');
            verifyIntermediate(pem, roots);
            const days = daysLeft(pem);
            if (days < expiryWarnDays) expiring.push(`${cluster} expires in ${days} days`);
          } catch (err) {
            bad.push(`${cluster}: ${(err as Error).message}`);
          }
        }
        if (bad.length > 0) return { status: 'failed', detail: bad.join('; '), hint: 'rejoin those clusters with `isthmus join --force` to issue a new intermediate' };
        if (expiring.length > 0) return { status: 'warn', detail: expiring.join('; '), hint: 'rejoin those clusters to renew their intermediate' };
        return { status: 'ok', detail: `${records.length} intermediate(s) chain to a mesh root and are valid` };
      },
    },
    {
      // A bundle of more than one root is a rotation under way (docs/trust.md, "Root rotation"):
      // say, for each older root, what still uses it, or that it can go.
      name: 'root rotation',
      needs: ['trust bundles'],
      async run() {
        const rotating = ctx.bundles.filter((b) => b.roots.length > 1);
        if (rotating.length === 0) return { status: 'ok', detail: 'no rotation under way (one root per trust domain)' };
        const found: string[] = [];
        let inUse = false;
        for (const bundle of rotating) {
          // The newest root is the last; every one before it is on its way out.
          for (const pem of bundle.roots.slice(0, -1)) {
            const fingerprint = new X509Certificate(pem).fingerprint256;
            const reasons = await usesOfRoot(ctx.store!, pem, bundle.trustDomain);
            inUse ||= reasons.length > 0;
            found.push(reasons.length > 0 ? `${bundle.trustDomain}: old root ${fingerprint} still in use: ${reasons.join('; ')}` : `${bundle.trustDomain}: nothing uses old root ${fingerprint} any more`);
          }
        }
        return {
          status: 'warn', detail: found.join('; '),
          hint: inUse ? 'finish the rotation: `isthmus ca rotate-intermediate` for each cluster named, then wait for its workloads to renew (docs/trust.md, "Root rotation")' : 'remove it: isthmus ca remove-root --ca <that root\'s directory>',
        };
      },
    },
    {
      name: 'cluster liveness',
      needs: ['etcd reachable and writable'],
      async run() {
        ctx.catalog = await catalogOf(ctx);
        const down = ctx.catalog.clusters.filter((c) => !c.alive);
        if (ctx.catalog.clusters.length === 0) return { status: 'warn', detail: 'no clusters have joined', hint: 'isthmus join <cluster> ...' };
        if (down.length > 0) {
          return { status: 'failed', detail: `not alive: ${down.map((c) => c.name).join(', ')} (alive: ${ctx.catalog.clusters.filter((c) => c.alive).map((c) => c.name).join(', ') || 'none'})`, hint: 'start their federation service: isthmus federation --config <cluster-dir>/cluster.yaml' };
        }
        return { status: 'ok', detail: `all ${ctx.catalog.clusters.length} cluster(s) alive: ${ctx.catalog.clusters.map((c) => c.name).join(', ')}` };
      },
    },
    // The checks below look at the clusters that are alive even when another one is down: one
    // cluster down must not hide what is wrong (or right) with the rest.
    {
      name: 'dashboards',
      needs: ['etcd reachable and writable'],
      async run() {
        // Each alive federation names its plain-HTTP port (dashboard, /metrics) in its heartbeat.
        const problems: string[] = [];
        const catalog = await catalogOf(ctx);
        const alive = catalog.clusters.filter((c) => c.alive);
        const down = catalog.clusters.filter((c) => !c.alive).map((c) => c.name);
        const skipped = down.length > 0 ? ` (not asked: ${down.join(', ')}, not alive)` : '';
        for (const c of alive) {
          const address = await dashboardOf(ctx.store!, c.name);
          if (!address) {
            problems.push(`${c.name}: no dashboard address (its dashboard port could not listen, or it runs an older federation)`);
            continue;
          }
          const answered = await fetch(`http://${address}/healthz`, { signal: AbortSignal.timeout(3000) }).then((r) => r.ok, () => false);
          if (!answered) problems.push(`${c.name}: http://${address}/ does not answer from here`);
        }
        if (problems.length > 0) return { status: 'warn', detail: `${problems.join('; ')}${skipped}`, hint: 'see that federation\'s log for "could not listen" (federation.dashboardPort), or whether this shell can reach its address' };
        if (alive.length === 0) return { status: 'warn', detail: `no cluster is alive to serve one${skipped}`, hint: 'start a federation service: isthmus federation --config <cluster-dir>/cluster.yaml' };
        return { status: 'ok', detail: `${alive.length} dashboard(s) answer${skipped}` };
      },
    },
    {
      // The same facts as the dashboard's latency matrix: a cluster with no gateway is "no gateway"
      // there and a warning here; a pair whose probes fail is red there and a warning here.
      name: 'east-west gateways',
      needs: ['etcd reachable and writable'],
      async run() {
        const catalog = await catalogOf(ctx);
        const alive = catalog.clusters.filter((c) => c.alive);
        if (alive.length < 2) return { status: 'ok', detail: 'fewer than two clusters alive: nothing crosses clusters' };
        const gatewayless = alive.filter((c) => c.gateways.length === 0).map((c) => c.name);
        const { records } = await ctx.store!.list(keys.probes);
        const failing = records
          .flatMap((r) => (isRecord(ProbeRecordSchema, r.value) ? [r.value] : []))
          .filter((p) => alive.some((c) => c.name === p.from) && alive.some((c) => c.name === p.to && c.gateways.length > 0))
          .filter((p) => p.p50Ms === null && p.failures > 0)
          .map((p) => `${p.from} → ${p.to}${p.lastError ? ` (${p.lastError})` : ''}`);
        const problems = [
          ...(gatewayless.length > 0 ? [`no gateway: ${gatewayless.join(', ')} (other clusters cannot reach their services)`] : []),
          ...(failing.length > 0 ? [`probes failing: ${failing.join(', ')}`] : []),
        ];
        if (problems.length > 0) {
          return {
            status: 'warn', detail: problems.join('; '),
            hint: gatewayless.length > 0
              ? 'give each cluster a gateway: isthmus join <cluster> ... --gateway <host:port> --force, then isthmus gateway --config <cluster-dir>/cluster.yaml (docs/gateway.md)'
              : 'is that cluster\'s gateway running, and can this cluster reach its address? the dashboard\'s matrix shows the same pairs',
          };
        }
        const gateways = alive.reduce((n, c) => n + c.gateways.length, 0);
        return { status: 'ok', detail: `${gateways} gateway(s) in ${alive.length} alive cluster(s); every probed pair answers` };
      },
    },
    {
      name: 'service level objectives',
      needs: ['etcd reachable and writable'],
      async run() {
        const { records } = await ctx.store!.list(keys.sloPolicies);
        if (records.length === 0) return { status: 'ok', detail: 'none defined (isthmus policy apply)' };
        const catalog = await catalogOf(ctx);
        const orphans = records.flatMap((r) => (isRecord(SloPolicySchema, r.value) && !inMesh(catalog, r.value.namespace, r.value.service) ? [r.value] : []));
        const orphaned = orphans.length > 0 ? `; service gone from the mesh: ${orphans.map((p) => `${p.namespace}/${p.name} (service ${p.namespace}/${p.service} is published by no alive cluster)`).join(', ')}` : '';
        const orphanHint = 'export the service again (isthmus export) or start its cluster\'s federation; or delete the objective: isthmus policy delete slo <namespace>/<name>';
        let live: Awaited<ReturnType<typeof liveOverview>>;
        try {
          live = await liveOverview(ctx.store!);
        } catch (err) {
          // A dashboard whose data is for operators, and no operator credential here.
          if (isIsthmusError(err) && err.code.startsWith('ISTHMUS_ERR_AUTH_')) {
            return { status: 'warn', detail: `${records.length} objective(s), but the dashboards refused to show them: ${err.message}${orphaned}`, hint: 'point the CLI at an operator credential: export ISTHMUS_OPERATOR_DIR=<dir> (isthmus operator issue)' };
          }
          throw err;
        }
        if (!live) return { status: 'warn', detail: `${records.length} objective(s), but no federation dashboard answered to evaluate them${orphaned}`, hint: orphans.length > 0 ? orphanHint : 'start a federation service, or check the dashboards above' };
        const missed = live.overview.slos.filter((s) => s.state === 'violated');
        if (missed.length > 0) {
          return {
            status: 'warn',
            detail: `missed: ${missed.map((s) => `${s.namespace}/${s.name} (burn ${s.burnRate.window ?? '?'} over ${Math.round(s.objective.windowSeconds / 60)}m)`).join(', ')}${orphaned}`,
            hint: 'isthmus stat and the dashboard show the service\'s latency and errors; isthmus trace <service> --from <cluster> shows one request hop by hop',
          };
        }
        if (orphans.length > 0) return { status: 'warn', detail: `${live.overview.slos.length - orphans.length} of ${live.overview.slos.length} objective(s) can be judged${orphaned}`, hint: orphanHint };
        const noData = live.overview.slos.filter((s) => s.state === 'no-data').length;
        return { status: 'ok', detail: `${live.overview.slos.length} objective(s) held${noData > 0 ? ` (${noData} with too few requests to judge)` : ''}, as ${live.from} reads them` };
      },
    },
    {
      // Not the mesh's health but this shell's: trace, admin ports and dashboard data ask for it.
      name: 'operator credential',
      async run() {
        const { findOperatorCredential } = await import('../trust/operator-files.js');
        const credential = findOperatorCredential();
        const hint = 'isthmus operator issue --name <you> --ca-dir <root or cluster CA dir> (docs/security.md)';
        if (!credential) return { status: 'warn', detail: 'none found: isthmus trace, /debug/connections and dashboard data will be refused', hint };
        const [leaf] = credential.chainPem;
        const info = certificateInfo(leaf ?? '');
        const hoursLeft = (info.notAfter.getTime() - Date.now()) / 3600_000;
        if (hoursLeft <= 0) return { status: 'failed', detail: `${info.identity ?? 'the certificate'} in ${credential.source} expired at ${info.notAfter.toISOString()}`, hint };
        return { status: hoursLeft < 1 ? 'warn' : 'ok', detail: `${info.identity ?? 'no SPIFFE ID'} from ${credential.source}, ${hoursLeft.toFixed(1)} h left`, ...(hoursLeft < 1 ? { hint } : {}) };
      },
    },
    {
      name: 'records readable',
      needs: ['etcd reachable and writable'],
      async run() {
        const invalid = (await catalogOf(ctx)).invalidKeys;
        if (invalid.length > 0) return { status: 'failed', detail: `malformed: ${invalid.join(', ')}`, hint: 'delete them with etcdctl; their owners rewrite them' };
        return { status: 'ok', detail: 'every catalog record matches its schema' };
      },
    },
  ];
  if (ctx.loaded) {
    const loaded = ctx.loaded;
    list.push({
      name: `cluster ${loaded.config.cluster} CA files`,
      async run() {
        const files = readClusterCa(loaded.caDir);
        verifyIntermediate(files.ca.certPem, [files.rootCert]);
        const days = daysLeft(files.ca.certPem);
        if (days < expiryWarnDays) return { status: 'warn', detail: `intermediate expires in ${days} days`, hint: `renew it: isthmus join ${loaded.config.cluster} --force ...` };
        return { status: 'ok', detail: `${loaded.caDir}: intermediate valid for ${days} more days` };
      },
    });
    list.push({
      name: `cluster ${loaded.config.cluster} known to the mesh`,
      needs: ['trust bundles'],
      async run() {
        const files = readClusterCa(loaded.caDir);
        const published = await ctx.store!.get<{ certificate?: string }>(keys.intermediate(loaded.config.cluster));
        if (!published) return { status: 'failed', detail: `no intermediate for ${loaded.config.cluster} in etcd`, hint: `join it: isthmus join ${loaded.config.cluster} ...` };
        if (String(published.value.certificate ?? '').trim() !== files.ca.certPem.trim()) {
          return { status: 'failed', detail: 'the intermediate in etcd is not the one in the CA directory', hint: 'this directory is from an older join; use the newest one or rejoin with --force' };
        }
        const inBundle = ctx.bundles.some((b) => b.roots.some((r) => r.trim() === files.rootCert.trim()));
        if (!inBundle) return { status: 'failed', detail: 'its root is in no mesh trust bundle', hint: 'rejoin the cluster so its root is published' };
        return { status: 'ok', detail: 'intermediate published and its root trusted by the mesh' };
      },
    });
  }
  return list;
}

async function catalogOf(ctx: CheckContext): Promise<Catalog> {
  return (ctx.catalog ??= (await readMeshCatalog(ctx.store!)).catalog);
}

function daysLeft(pem: string): number {
  return Math.floor((certificateInfo(pem).notAfter.getTime() - Date.now()) / 86_400_000);
}

/** An intermediate is a CA, so it cannot go through the leaf path check: verify it directly with Node. */
function verifyIntermediate(pem: string, roots: string[]): void {
  const cert = new X509Certificate(pem);
  const now = Date.now();
  if (Date.parse(cert.validTo) < now) throw new Error(`expired on ${new Date(cert.validTo).toISOString()}`);
  if (!cert.ca) throw new Error('not a CA certificate');
  const issuer = roots.map((r) => new X509Certificate(r)).find((r) => isSignedBy(cert, r));
  if (!issuer) throw new Error('not signed by any root of the mesh trust bundles');
}
