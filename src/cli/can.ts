import type { Command } from 'commander';
import { IsthmusError } from '../core/errors.js';
import { keys } from '../core/keys.js';
import { checkName } from '../core/names.js';
import { authorize, compileAuthorization, namespaceSettings, type CallerFacts, type MtlsMode } from '../model/authorization.js';
import { PolicyRecordSchema, type PolicyRecord } from '../model/policy-records.js';
import { ClusterRecordSchema, isRecord } from '../model/records.js';
import { normaliseRequestPath } from '../model/request-path.js';
import { parseSpiffeId, workloadId } from '../trust/spiffe.js';
import { action, etcdOption, outputOption, withStore } from './common.js';
import { printJson } from './output.js';

export interface CanAnswer {
  allowed: boolean;
  source: string;
  sourceCluster: string | null;
  service: string;
  method: string;
  /** The path as the inbound would match it (normalised), or null when it would be refused. */
  path: string | null;
  rule: string | null;
  reason: string;
  code: 'ISTHMUS_ERR_AUTHZ_DENIED' | 'ISTHMUS_ERR_AUTHZ_PATH_REFUSED' | null;
  mtls: MtlsMode;
}

interface CanInput { source: string; service: string; namespace: string; method: string; path: string; headers: Record<string, string>; cluster?: string }

/**
 * `isthmus can`: the decision the service's inbound would make, from the policies stored in
 * etcd, with the same compiled table and normalisation (model/authorization.ts,
 * model/request-path.ts). Pure given the records: `answerCan` is what the command prints.
 */
export function answerCan(records: readonly PolicyRecord[], trustDomains: readonly string[], input: CanInput): CanAnswer {
  const identity = sourceIdentity(input.source, trustDomains);
  const caller: CallerFacts = { identity, ...(input.cluster ? { cluster: input.cluster } : {}) };
  const table = compileAuthorization(records);
  const service = `${input.namespace}/${input.service}`;
  const method = input.method.toUpperCase();
  const base = { source: identity, sourceCluster: input.cluster ?? null, service, method, mtls: namespaceSettings(table, input.namespace).mtls };
  const normalised = normaliseRequestPath(input.path);
  if ('refused' in normalised) return { ...base, allowed: false, path: null, rule: null, reason: `${normalised.refused} (refused with 400 once the service has authorization policies)`, code: 'ISTHMUS_ERR_AUTHZ_PATH_REFUSED' };
  const lower = Object.fromEntries(Object.entries(input.headers).map(([n, v]) => [n.toLowerCase(), v]));
  const decision = authorize(table, input.namespace, input.service, caller, { method, path: normalised.path, header: (n) => lower[n] });
  return { ...base, allowed: decision.allowed, path: normalised.path, rule: decision.rule ?? null, reason: decision.reason, code: decision.allowed ? null : 'ISTHMUS_ERR_AUTHZ_DENIED' };
}

/** A SPIFFE ID as given, or `<ns>/<sa>` in the mesh's one trust domain. */
function sourceIdentity(source: string, trustDomains: readonly string[]): string {
  if (source.startsWith('spiffe://')) {
    parseSpiffeId(source);
    return source;
  }
  const m = /^([^/]+)\/([^/]+)$/.exec(source);
  if (!m) throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `${JSON.stringify(source)} is neither a SPIFFE ID (spiffe://<td>/ns/<ns>/sa/<sa>) nor <namespace>/<service-account>`);
  const domains = [...new Set(trustDomains)];
  if (domains.length !== 1) {
    throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', domains.length === 0
      ? 'no cluster has joined the mesh, so <ns>/<sa> names no trust domain: give the caller as a SPIFFE ID'
      : `the mesh has trust domains ${domains.sort().join(', ')}: give the caller as a SPIFFE ID (spiffe://<td>/ns/${m[1]}/sa/${m[2]})`);
  }
  return workloadId(domains[0] as string, m[1] as string, m[2] as string);
}

export function registerCan(program: Command): void {
  program.command('can')
    .description('may this caller call this service, and by which rule? (the decision the service\'s inbound sidecar would make, from the stored policies; exit 0 yes, 1 no)')
    .argument('<source>', 'the caller: a SPIFFE ID, or <namespace>/<service-account> in the mesh\'s trust domain')
    .argument('<service>', '<service>.<namespace> (or <service> with -n)')
    .option('-n, --namespace <ns>', 'the service\'s namespace, when <service> has none', 'default')
    .option('--method <method>', 'the request\'s HTTP method', 'GET')
    .option('--path <path>', 'the request\'s path, as sent (it is normalised as the inbound does)', '/')
    .option('-H, --header <name=value...>', 'a request header (repeat for more)')
    .option('--from-cluster <cluster>', 'the cluster whose CA issued the caller\'s certificate; without it, rules about clusters are read strictly')
    .addOption(etcdOption())
    .addOption(outputOption())
    .addHelpText('after', `
Examples:
  isthmus can demo/client ledger.demo --path /balance
  isthmus can spiffe://mesh.example/ns/demo/sa/client ledger.demo --method POST --path /admin --from-cluster east -o json`)
    .option('--trust-domain <td>', 'the trust domain of a <namespace>/<service-account> caller, when the mesh has several')
    .action(action(async (source: string, target: string, opts: { namespace: string; method: string; path: string; header?: string[]; fromCluster?: string; trustDomain?: string; etcd?: string; output: string }) => {
      const dot = target.indexOf('.');
      const service = dot === -1 ? target : target.slice(0, dot);
      const namespace = dot === -1 ? opts.namespace : target.slice(dot + 1);
      checkName('service', service);
      checkName('namespace', namespace);
      if (opts.fromCluster !== undefined) checkName('cluster', opts.fromCluster);
      const headers: Record<string, string> = {};
      for (const h of opts.header ?? []) {
        const eq = h.indexOf('=');
        if (eq <= 0) throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `--header ${JSON.stringify(h)} is not name=value`);
        headers[h.slice(0, eq)] = h.slice(eq + 1);
      }
      const { records, trustDomains } = await withStore(opts, async (store) => {
        const policies = (await store.list(keys.policies)).records.filter((r) => !r.key.startsWith(keys.sloPolicies)).flatMap((r) => (isRecord(PolicyRecordSchema, r.value) ? [r.value] : []));
        const clusters = opts.trustDomain ? [] : (await store.list(keys.clusters)).records.flatMap((r) => (isRecord(ClusterRecordSchema, r.value) ? [r.value.trustDomain] : []));
        return { records: policies, trustDomains: opts.trustDomain ? [opts.trustDomain] : clusters };
      });
      const answer = answerCan(records, trustDomains, { source, service, namespace, method: opts.method, path: opts.path, headers, ...(opts.fromCluster ? { cluster: opts.fromCluster } : {}) });
      if (opts.output === 'json') printJson(answer);
      else {
        const who = `${answer.source}${answer.sourceCluster ? ` (cluster ${answer.sourceCluster})` : ''}`;
        process.stdout.write(`${answer.allowed ? 'yes' : 'no'}: ${who} ${answer.allowed ? 'may' : 'may not'} ${answer.method} ${answer.path ?? opts.path} on ${answer.service}\n  ${answer.reason}\n  mTLS mode of namespace ${namespace}: ${answer.mtls}\n`);
      }
      if (!answer.allowed) process.exitCode = 1;
    }));
}
