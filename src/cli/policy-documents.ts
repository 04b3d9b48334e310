import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';
import { IsthmusError, isIsthmusError } from '../core/errors.js';
import { keys } from '../core/keys.js';
import { readUserFile } from '../core/user-paths.js';
import { invalid, kindsByName, policyRecordFromDocument, type FieldProblem } from '../model/policy-kinds.js';
import type { PolicyRecord } from '../model/policy-records.js';
import type { SloPolicy } from '../model/records.js';
import { sloPolicyFromSpec } from '../model/slo-spec.js';

/** One document of a policy file, checked, with the key it is stored at. */
export type ParsedPolicy =
  | { kind: 'ServiceLevelObjective'; key: string; namespace: string; name: string; record: SloPolicy }
  | { kind: string; key: string; namespace: string; name: string; record: PolicyRecord };

/**
 * Reads every document of a policy file (`-` for standard input) and checks each one whole; the
 * first bad document throws, naming the file, the document's number and each bad field, so that
 * `apply` writes nothing of a file with any mistake in it.
 */
export async function readPolicyFile(file: string, now = new Date()): Promise<ParsedPolicy[]> {
  let text: string;
  try {
    text = file === '-' ? readFileSync(0, 'utf8') : readUserFile(file, 'the policy file');
  } catch (err) {
    if (isIsthmusError(err)) throw err;
    throw new IsthmusError('ISTHMUS_ERR_CONFIG_UNREADABLE', `cannot read ${file === '-' ? 'standard input' : file}: ${(err as Error).message}`, { cause: err });
  }
  // Warnings (an unknown tag, an odd anchor) would go to stderr as process warnings; errors say enough.
  const docs = parseAllDocuments(text, { logLevel: 'error' });
  const values: { value: unknown; source: string }[] = [];
  for (const [i, doc] of docs.entries()) {
    const source = docs.length > 1 ? `${file} (document ${i + 1})` : file;
    if (doc.errors.length > 0) throw new IsthmusError('ISTHMUS_ERR_CONFIG_UNREADABLE', `${source} is not valid YAML: ${doc.errors[0]?.message}`);
    try {
      values.push({ value: doc.toJS(), source });
    } catch (err) {
      // The yaml package refuses aliases that would expand without bound ("billion laughs").
      throw new IsthmusError('ISTHMUS_ERR_CONFIG_UNREADABLE', `${source} cannot be read: ${(err as Error).message}`, { cause: err });
    }
  }
  return await checkPolicyDocuments(values, file, now);
}

/**
 * Checks policy documents already read (from a file, or built by the dashboard's manager view)
 * each one whole, as `policy apply` does: the first bad one throws ISTHMUS_ERR_POLICY_INVALID
 * naming `source` and the path of each bad field; empty documents are skipped; none at all, or
 * one kind and name twice, is refused too.
 */
export async function checkPolicyDocuments(docs: readonly { value: unknown; source: string }[], what: string, now = new Date()): Promise<ParsedPolicy[]> {
  const out: ParsedPolicy[] = [];
  for (const { value, source } of docs) {
    if (value === null || value === undefined) continue;
    if (typeof value !== 'object' || Array.isArray(value)) throw invalid(source, [{ path: '/', message: 'a policy is a YAML mapping with apiVersion, kind, metadata and spec' }]);
    out.push(await parsePolicy(value as Record<string, unknown>, source, now));
  }
  if (out.length === 0) throw new IsthmusError('ISTHMUS_ERR_POLICY_INVALID', `${what} holds no policy; see \`isthmus policy apply --help\` for examples`);
  const seen = new Set<string>();
  for (const p of out) {
    if (seen.has(p.key)) throw new IsthmusError('ISTHMUS_ERR_POLICY_INVALID', `${what} holds ${p.kind} ${p.namespace}/${p.name} twice; nothing was applied`);
    seen.add(p.key);
  }
  return out;
}

async function parsePolicy(doc: Record<string, unknown>, source: string, now: Date): Promise<ParsedPolicy> {
  if (doc.kind === 'ServiceLevelObjective') {
    const record = sloPolicyFromSpec(doc, source);
    return { kind: 'ServiceLevelObjective', key: keys.policy('slo', record.namespace, record.name), namespace: record.namespace, name: record.name, record };
  }
  if (doc.kind === 'HTTPRoute' && doc.apiVersion === 'gateway.networking.k8s.io/v1') {
    const problems = await publishedHttpRouteProblems(doc);
    if (problems.length > 0) throw invalid(`${source} (Gateway API's HTTPRoute schema)`, problems);
  }
  const record = policyRecordFromDocument(doc, source, now);
  const kind = kindsByName.get(record.kind);
  return { kind: record.kind, key: keys.policy(kind?.segment ?? record.kind.toLowerCase(), record.namespace, record.name), namespace: record.namespace, name: record.name, record };
}

/**
 * The HTTPRoute against Gateway API's own published schema (the `@kubernetes-models/gateway-api`
 * package generates it from the Gateway API release), loaded only here: the sidecar and the
 * federation never need it.
 */
async function publishedHttpRouteProblems(doc: Record<string, unknown>): Promise<FieldProblem[]> {
  const { HTTPRoute } = await import('@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/HTTPRoute');
  try {
    new HTTPRoute(doc as ConstructorParameters<typeof HTTPRoute>[0]).validate();
    return [];
  } catch (err) {
    const errors = (err as { errors?: { instancePath?: string; message?: string; params?: Record<string, unknown> }[] }).errors;
    if (!Array.isArray(errors)) throw err;
    const seen = new Set<string>();
    return errors.flatMap((e) => {
      const allowed = Array.isArray(e.params?.allowedValues) ? `: ${(e.params.allowedValues as unknown[]).join(', ')}` : '';
      const line = { path: e.instancePath || '/', message: `${e.message ?? 'invalid'}${allowed}` };
      const id = `${line.path} ${line.message}`;
      if (seen.has(id)) return [];
      seen.add(id);
      return [line];
    }).slice(0, 10);
  }
}
