import { IsthmusError } from '../core/errors.js';
import { keys } from '../core/keys.js';
import { planPolicy, type ApplyChange, type PolicyRecord } from '../model/policy-records.js';
import type { ParsedPolicy } from '../cli/policy-documents.js';
import type { FederationStore } from './store.js';

export interface ApplyResult {
  dryRun: boolean;
  /** `changed` is kept for scripts written before `change` existed. */
  applied: { kind: string; name: string; change: ApplyChange; changed: boolean }[];
  warnings: string[];
}

/**
 * The one write of `isthmus policy apply` and of the dashboard's manager view: policies already
 * checked (checkPolicyDocuments) go into one etcd transaction for all of them, guarded by the
 * revisions read, so a concurrent writer makes it fail whole (ISTHMUS_ERR_ETCD_CONFLICT) rather
 * than half-apply. `dryRun` says what would change and writes nothing. `readAt`: the revision
 * (key → mod revision) each document was read at, by a caller that edited a stored record.
 */
export async function applyParsedPolicies(parsed: readonly ParsedPolicy[], store: FederationStore, dryRun: boolean, opts: { readAt?: Record<string, number> } = {}): Promise<ApplyResult> {
  const known = await knownServices(store);
  const warnings = [...parsed.flatMap((p) => unknownServiceWarnings(p, known)), ...await missingRouteGroupWarnings(parsed, store)];
  const puts: { key: string; value: object }[] = [];
  const ifAbsent: string[] = [];
  const ifModRevision: Record<string, number> = {};
  const applied: ApplyResult['applied'] = [];
  for (const p of parsed) {
    const before = await store.get<unknown>(p.key);
    // The caller built this document from the record it read: it must still be that record.
    const readAt = opts.readAt?.[p.key];
    if (readAt !== undefined && before?.modRevision !== readAt) throw conflict();
    const { change, record } = p.kind === 'ServiceLevelObjective'
      ? { change: before === undefined ? 'created' as const : JSON.stringify(before.value) === JSON.stringify(p.record) ? 'unchanged' as const : 'changed' as const, record: p.record }
      : planPolicy(before?.value as PolicyRecord | undefined, p.record as PolicyRecord);
    applied.push({ kind: p.kind, name: `${p.namespace}/${p.name}`, change, changed: change !== 'unchanged' });
    if (change === 'unchanged') continue;
    puts.push({ key: p.key, value: record });
    if (before) ifModRevision[p.key] = before.modRevision;
    else ifAbsent.push(p.key);
  }
  if (!dryRun && puts.length > 0 && !(await store.transact({ ifAbsent, ifModRevision, puts }))) {
    throw conflict();
  }
  return { dryRun, applied, warnings };
}

function conflict(): IsthmusError {
  return new IsthmusError('ISTHMUS_ERR_ETCD_CONFLICT', 'another writer changed these policies while they were applied; nothing was written: run the command again');
}

/** `<ns>/<service>` of every service some cluster exports or means to export. */
async function knownServices(store: FederationStore): Promise<Set<string>> {
  const known = new Set<string>();
  for (const prefix of [keys.exports, keys.serviceExports]) {
    for (const r of (await store.list(prefix)).records) {
      const [, ns, svc] = r.key.slice(prefix.length).split('/');
      if (ns && svc) known.add(`${ns}/${svc}`);
    }
  }
  return known;
}

/**
 * A TrafficTarget's rule whose HTTPRouteGroup is neither in the file nor stored allows nothing
 * until the group is applied (docs/authorization.md): said at apply time, not only in explain.
 */
async function missingRouteGroupWarnings(parsed: readonly ParsedPolicy[], store: FederationStore): Promise<string[]> {
  const inFile = new Set(parsed.filter((p) => p.kind === 'HTTPRouteGroup').map((p) => `${p.namespace}/${p.name}`));
  const warnings: string[] = [];
  for (const p of parsed) {
    if (p.kind !== 'TrafficTarget') continue;
    const rules = ((p.record as PolicyRecord).spec as { rules: { kind: string; name: string }[] }).rules;
    for (const rule of rules) {
      if (inFile.has(`${p.namespace}/${rule.name}`) || (await store.get(keys.policy('httproutegroup', p.namespace, rule.name))) !== undefined) continue;
      warnings.push(`TrafficTarget ${p.namespace}/${p.name} names HTTPRouteGroup ${p.namespace}/${rule.name}, which is not applied (yet?): that rule allows nothing until it is`);
    }
  }
  return warnings;
}

function unknownServiceWarnings(p: ParsedPolicy, known: ReadonlySet<string>): string[] {
  const named = p.kind === 'ServiceLevelObjective'
    ? [(p.record as { service: string }).service]
    : [...(p.record as PolicyRecord).services, ...(p.record as PolicyRecord).backends];
  return [...new Set(named)].filter((s) => !known.has(`${p.namespace}/${s}`))
    .map((s) => `${p.kind} ${p.namespace}/${p.name} names ${p.namespace}/${s}, which no cluster exports (yet?); applied anyway`);
}
