import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { parseAllDocuments } from 'yaml';
import { IsthmusError } from '../core/errors.js';
import { keys } from '../core/keys.js';
import type { SloView } from '../dashboard/overview.js';
import { isRecord, SloPolicySchema, type SloPolicy } from '../model/records.js';
import { liveOverview } from './dashboard-client.js';
import { describeObjective, sloPolicyFromSpec } from '../model/slo-spec.js';
import type { FederationStore } from '../federation/store.js';
import { action, etcdOption, outputOption, withStore } from './common.js';
import { printJson, printTable } from './output.js';

interface PolicyOptions { etcd?: string; output: string }

/** Kinds `policy` knows; the etcd key segment of each (`/policies/<kind>/<ns>/<name>`). */
const kinds: Record<string, string> = { ServiceLevelObjective: 'slo', slo: 'slo' };

export function registerPolicy(program: Command): void {
  const policy = program.command('policy').description('traffic and service-level policies of the mesh, stored in etcd');

  policy.command('apply')
    .description('create or replace the policies in a YAML file (kind ServiceLevelObjective; several documents allowed)')
    .requiredOption('-f, --file <file>', 'YAML file, or - for standard input')
    .addOption(etcdOption())
    .addOption(outputOption())
    .addHelpText('after', `
Example (slo.yaml):
  apiVersion: isthmus.dev/v1alpha1
  kind: ServiceLevelObjective
  metadata: { name: ledger-fast, namespace: demo }
  spec:
    service: ledger
    latency: { percentile: 99, below: 250ms }
    success: 99.9
    window: 1h
    webhook: { url: https://hooks.example.com/isthmus }

  isthmus policy apply -f slo.yaml`)
    .action(action(async (opts: PolicyOptions & { file: string }) => {
      const policies = readPolicies(opts.file);
      const applied = await withStore(opts.etcd, async (store) => {
        const out: { kind: string; name: string; changed: boolean }[] = [];
        for (const p of policies) {
          const key = keys.policy('slo', p.namespace, p.name);
          const before = await store.get(key);
          const changed = JSON.stringify(before?.value) !== JSON.stringify(p);
          if (changed) await store.put(key, p);
          out.push({ kind: 'ServiceLevelObjective', name: `${p.namespace}/${p.name}`, changed });
        }
        return out;
      });
      if (opts.output === 'json') return printJson({ applied });
      for (const a of applied) process.stdout.write(`${a.kind} ${a.name} ${a.changed ? 'applied' : 'unchanged'}\n`);
    }));

  policy.command('list')
    .description('list the policies, with each objective\'s current verdict from a federation\'s dashboard when one is reachable')
    .addOption(etcdOption())
    .addOption(outputOption())
    .action(action(async (opts: PolicyOptions) => {
      const { policies, views, from } = await withStore(opts.etcd, async (store) => {
        const { records } = await store.list(keys.sloPolicies);
        const found = records.flatMap((r) => (isRecord(SloPolicySchema, r.value) ? [r.value] : []));
        return { policies: found, ...(found.length > 0 ? await liveVerdicts(store) : { views: [] as SloView[], from: undefined }) };
      });
      const viewOf = (p: SloPolicy) => views.find((v) => v.namespace === p.namespace && v.name === p.name);
      if (opts.output === 'json') {
        return printJson({ verdictsFrom: from ?? null, policies: policies.map((p) => ({ kind: 'ServiceLevelObjective', ...p, verdict: viewOf(p) ?? null })) });
      }
      printTable(['KIND', 'NAME', 'SERVICE', 'OBJECTIVE', 'STATE', 'BURN (WINDOW/5M)', 'WEBHOOK'], policies.map((p) => {
        const v = viewOf(p);
        const burn = v ? `${v.burnRate.window ?? '–'} / ${v.burnRate.short ?? '–'}` : '?';
        return ['slo', `${p.namespace}/${p.name}`, p.service, describeObjective(p), v?.state ?? 'unknown', burn, p.webhook ? 'yes' : 'no'];
      }), '(no policies; see `isthmus policy apply --help`)');
      if (policies.length > 0 && !from) process.stdout.write('\nNo federation dashboard answered, so no verdicts: the federations evaluate objectives (is one running?).\n');
    }));

  policy.command('delete')
    .description('delete a policy')
    .argument('<kind>', 'slo (ServiceLevelObjective)')
    .argument('<name>', '<namespace>/<name>')
    .addOption(etcdOption())
    .addOption(outputOption())
    .action(action(async (kind: string, name: string, opts: PolicyOptions) => {
      const segment = kinds[kind];
      const [ns, policyName, ...rest] = name.split('/');
      if (!segment || !ns || !policyName || rest.length > 0) {
        throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `give a kind (slo) and <namespace>/<name>, e.g. \`isthmus policy delete slo demo/ledger-fast\``);
      }
      const existed = await withStore(opts.etcd, async (store) => {
        const key = keys.policy(segment, ns, policyName);
        const had = (await store.get(key)) !== undefined;
        if (had) await store.transact({ deletes: [key, keys.sloStatus(ns, policyName)] });
        return had;
      });
      if (opts.output === 'json') return printJson({ kind, name, deleted: existed });
      if (!existed) throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `there is no ${kind} policy ${name}; \`isthmus policy list\` shows them`);
      process.stdout.write(`${kind} ${name} deleted\n`);
    }));
}

function readPolicies(file: string): SloPolicy[] {
  let text: string;
  try {
    text = readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (err) {
    throw new IsthmusError('ISTHMUS_ERR_CONFIG_UNREADABLE', `cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  const docs = parseAllDocuments(text);
  const out: SloPolicy[] = [];
  docs.forEach((doc, i) => {
    const source = docs.length > 1 ? `${file} (document ${i + 1})` : file;
    if (doc.errors.length > 0) throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `${source} is not valid YAML: ${doc.errors[0]?.message}`);
    const value = doc.toJS() as unknown;
    if (value === null || value === undefined) return;
    const kind = (value as { kind?: unknown }).kind;
    if (kind !== 'ServiceLevelObjective') {
      throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `${source}: kind ${JSON.stringify(kind ?? null)} is not a policy Isthmus knows; write kind: ServiceLevelObjective`);
    }
    out.push(sloPolicyFromSpec(value, source));
  });
  if (out.length === 0) throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `${file} holds no policy; see \`isthmus policy apply --help\` for an example`);
  return out;
}

/** The verdicts of the first alive federation whose dashboard answers (they all evaluate the same counters). */
async function liveVerdicts(store: FederationStore): Promise<{ views: SloView[]; from: string | undefined }> {
  const live = await liveOverview(store);
  return { views: live?.overview.slos ?? [], from: live?.overview.servedBy };
}
