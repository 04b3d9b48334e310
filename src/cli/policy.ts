import type { Command } from 'commander';
import { stringify } from 'yaml';
import { IsthmusError, isIsthmusError } from '../core/errors.js';
import { keys } from '../core/keys.js';
import type { SloView } from '../dashboard/overview.js';
import { isRecord, SloPolicySchema, type SloPolicy } from '../model/records.js';
import { kindByWord, policyKinds } from '../model/policy-kinds.js';
import { policyDocument, PolicyRecordSchema, type PolicyRecord } from '../model/policy-records.js';
import { liveOverview } from './dashboard-client.js';
import { inMesh, readMeshCatalog } from './list.js';
import { describeObjective } from '../model/slo-spec.js';
import type { FederationStore } from '../federation/store.js';
import { action, etcdOption, outputOption, withStore, type EtcdFlags } from './common.js';
import { printJson, printTable } from './output.js';
import { applyPolicies } from './policy-apply.js';

interface PolicyOptions extends EtcdFlags { output: string }

const kindWords = `slo, ${policyKinds.map((k) => k.segment).join(', ')}`;

export function registerPolicy(program: Command): void {
  const policy = program.command('policy').description('traffic, service-level and authorization policies of the mesh, stored in etcd (docs/traffic-policy.md, docs/authorization.md)');

  policy.command('apply')
    .description('create or replace the policies of a YAML file, all or none (HTTPRoute, TrafficSplit, ServiceLevelObjective, the isthmus.dev kinds, and the authorization kinds AuthorizationPolicy, MeshNamespace, TrafficTarget, HTTPRouteGroup of docs/authorization.md; several documents allowed)')
    .requiredOption('-f, --file <file>', 'YAML file, or - for standard input')
    .option('--dry-run', 'check the file and show what would change (created, changed, unchanged); write nothing')
    .addOption(etcdOption())
    .addOption(outputOption())
    .addHelpText('after', `
Example (split.yaml): 90% of demo/hello's requests to hello-v1, 10% to hello-v2, and every
request with the header x-user-group: beta to hello-v2:
  apiVersion: gateway.networking.k8s.io/v1
  kind: HTTPRoute
  metadata: { name: hello-canary, namespace: demo }
  spec:
    parentRefs: [{ group: "", kind: Service, name: hello }]
    rules:
      - matches: [{ headers: [{ name: x-user-group, value: beta }] }]
        backendRefs: [{ name: hello-v2 }]
      - backendRefs: [{ name: hello-v1, weight: 90 }, { name: hello-v2, weight: 10 }]
        timeouts: { request: 5s }

  isthmus policy apply -f split.yaml --dry-run
  isthmus policy apply -f split.yaml
  cat split.yaml | isthmus policy apply -f -

A service level objective (slo.yaml):
  apiVersion: isthmus.dev/v1alpha1
  kind: ServiceLevelObjective
  metadata: { name: ledger-fast, namespace: demo }
  spec:
    service: ledger
    latency: { percentile: 99, below: 250ms }
    success: 99.9
    window: 1h
    webhook: { urlFrom: { env: SLO_WEBHOOK_URL } }   # read by each federation; never stored

  isthmus policy apply -f slo.yaml`)
    .action(action(async (opts: PolicyOptions & { file: string; dryRun?: boolean }) => {
      const result = await applyPolicies(opts.file, opts, opts.dryRun === true);
      if (opts.output === 'json') return printJson(result);
      for (const w of result.warnings) process.stderr.write(`warning: ${w}\n`);
      const verb = { created: result.dryRun ? 'would be created' : 'created', changed: result.dryRun ? 'would be changed' : 'changed', unchanged: 'unchanged' };
      for (const a of result.applied) process.stdout.write(`${a.kind} ${a.name} ${verb[a.change]}\n`);
      if (result.dryRun) process.stdout.write('(dry run: nothing was written)\n');
    }));

  policy.command('list')
    .description('list the policies of every kind, with each objective\'s current verdict from a federation\'s dashboard when one is reachable')
    .addOption(etcdOption())
    .addOption(outputOption())
    .action(action(async (opts: PolicyOptions) => {
      const { slos, traffic, catalog, views, from } = await withStore(opts, async (store) => {
        const { records } = await store.list(keys.policies);
        const slos = records.filter((r) => r.key.startsWith(keys.sloPolicies)).flatMap((r) => (isRecord(SloPolicySchema, r.value) ? [r.value] : []));
        const traffic = records.filter((r) => !r.key.startsWith(keys.sloPolicies)).flatMap((r) => (isRecord(PolicyRecordSchema, r.value) ? [r.value] : []));
        const catalog = slos.length > 0 ? (await readMeshCatalog(store)).catalog : undefined;
        return { slos, traffic, catalog, ...(slos.length > 0 ? await liveVerdicts(store) : { views: [] as SloView[], from: undefined }) };
      });
      const viewOf = (p: SloPolicy) => views.find((v) => v.namespace === p.namespace && v.name === p.name);
      // An objective on a service no alive cluster publishes has nothing to judge: say so, not just "no-data".
      const serviceGone = (p: SloPolicy) => catalog !== undefined && !inMesh(catalog, p.namespace, p.service);
      if (opts.output === 'json') {
        return printJson({
          verdictsFrom: from ?? null,
          policies: [
            ...slos.map((p) => ({ kind: 'ServiceLevelObjective', ...p, serviceInMesh: !serviceGone(p), verdict: viewOf(p) ?? null })),
            ...traffic.map((p) => ({ kind: p.kind, namespace: p.namespace, name: p.name, services: p.services, backends: p.backends, createdAt: p.createdAt })),
          ],
        });
      }
      printTable(['KIND', 'NAME', 'SERVICE', 'WHAT', 'STATE'], [
        ...slos.map((p) => {
          const v = viewOf(p);
          const burn = v ? `burn ${v.burnRate.window ?? '–'} / ${v.burnRate.short ?? '–'}` : '';
          const gone = serviceGone(p) ? ` (service ${p.namespace}/${p.service} left the mesh)` : '';
          return ['slo', `${p.namespace}/${p.name}`, p.service, `${describeObjective(p)}${p.webhook ? ', webhook' : ''}`, `${v?.state ?? 'unknown'} ${burn}${gone}`.trim()];
        }),
        ...traffic.map((p) => [kindByWord(p.kind)?.segment ?? p.kind, `${p.namespace}/${p.name}`, p.services.join(','), summary(p), 'stored']),
      ], '(no policies; see `isthmus policy apply --help`)');
      if (slos.some(serviceGone)) process.stdout.write('\nAn objective whose service left the mesh has nothing to judge: export the service again, start its cluster\'s federation, or delete the objective (isthmus policy delete slo <namespace>/<name>).\n');
      if (slos.length > 0 && !from) process.stdout.write('\nNo federation dashboard answered, so no verdicts: the federations evaluate objectives (is one running?).\n');
    }));

  policy.command('get')
    .description('print one policy as the document that was applied (YAML, or JSON with --output json)')
    .argument('<kind>', kindWords)
    .argument('<name>', '<namespace>/<name>')
    .addOption(etcdOption())
    .addOption(outputOption())
    .action(action(async (kindWord: string, name: string, opts: PolicyOptions) => {
      const { key, label } = policyKey(kindWord, name);
      const stored = await withStore(opts, async (store) => store.get(key));
      if (!stored) throw new IsthmusError('ISTHMUS_ERR_POLICY_NOT_FOUND', `there is no ${label}; \`isthmus policy list\` shows them`);
      const value = isRecord(PolicyRecordSchema, stored.value) ? policyDocument(stored.value) : stored.value;
      if (opts.output === 'json') return printJson(value);
      process.stdout.write(stringify(value));
    }));

  policy.command('delete')
    .description('delete a policy')
    .argument('<kind>', kindWords)
    .argument('<name>', '<namespace>/<name>')
    .addOption(etcdOption())
    .addOption(outputOption())
    .action(action(async (kindWord: string, name: string, opts: PolicyOptions) => {
      const { key, label, slo, namespace, policyName } = policyKey(kindWord, name);
      const existed = await withStore(opts, async (store) => {
        const had = (await store.get(key)) !== undefined;
        if (had) await store.transact({ deletes: [key, ...(slo ? [keys.sloStatus(namespace, policyName)] : [])] });
        return had;
      });
      if (opts.output === 'json') return printJson({ kind: kindWord, name, deleted: existed });
      if (!existed) throw new IsthmusError('ISTHMUS_ERR_POLICY_NOT_FOUND', `there is no ${label}; \`isthmus policy list\` shows them`);
      process.stdout.write(`${kindWord} ${name} deleted\n`);
    }));
}

function policyKey(kindWord: string, name: string): { key: string; label: string; slo: boolean; namespace: string; policyName: string } {
  const slo = ['slo', 'servicelevelobjective'].includes(kindWord.toLowerCase());
  const kind = slo ? undefined : kindByWord(kindWord);
  // A MeshNamespace is named after its namespace: `meshnamespace demo` is `demo/demo`.
  const [namespace, policyName, ...rest] = kind?.kind === 'MeshNamespace' && !name.includes('/') ? [name, name] : name.split('/');
  if ((!slo && !kind) || !namespace || !policyName || rest.length > 0) {
    throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `give a kind (${kindWords}) and <namespace>/<name>, e.g. \`isthmus policy delete httproute demo/hello-canary\``);
  }
  const segment = slo ? 'slo' : (kind?.segment as string);
  return { key: keys.policy(segment, namespace, policyName), label: `${segment} policy ${name}`, slo, namespace, policyName };
}

/** One line on what a traffic policy does, for the table. */
function summary(p: PolicyRecord): string {
  const spec = p.spec as { rules?: unknown[]; backends?: { service: string; weight: number }[] };
  if (p.kind === 'HTTPRoute') return `${spec.rules?.length ?? 0} rule(s) → ${p.backends.join(', ') || 'subsets'}`;
  if (p.kind === 'TrafficSplit') return (spec.backends ?? []).map((b) => `${b.service} ${b.weight}`).join(', ');
  if (p.kind === 'AuthorizationPolicy') {
    const authz = p.spec as { allow?: unknown[]; deny?: unknown[] };
    return `${authz.allow === undefined ? 'no allow list' : `${authz.allow.length} allow rule(s)`}, ${authz.deny?.length ?? 0} deny rule(s)`;
  }
  if (p.kind === 'MeshNamespace') {
    const ns = p.spec as { authorization?: { default: string }; mtls?: { mode: string } };
    return `default ${ns.authorization?.default ?? 'allow'}, mTLS ${ns.mtls?.mode ?? 'strict'}`;
  }
  return p.kind;
}

/** The verdicts of the first alive federation whose dashboard answers (they all evaluate the same counters). */
async function liveVerdicts(store: FederationStore): Promise<{ views: SloView[]; from: string | undefined }> {
  // Verdicts are extra to a policy listing: a dashboard that wants an operator credential we lack gives none.
  const live = await liveOverview(store).catch((err: unknown) => {
    if (isIsthmusError(err) && err.code.startsWith('ISTHMUS_ERR_AUTH_')) return undefined;
    throw err;
  });
  return { views: live?.overview.slos ?? [], from: live?.overview.servedBy };
}
