import { authorizationApplies, namespaceSettings, type AuthorizationTable, type CompiledRule, type DefaultAction, type MtlsMode } from './authorization.js';

/**
 * Who may call one service, as `isthmus explain` and the admin port's /routes show it: the
 * namespace's mTLS mode and default, and the compiled rules in the order they are tried (deny
 * rules, then allow rules). Built from the same compiled table the inbound decides with, so it
 * shows what the sidecar does. Pure.
 */
export interface AuthorizationSummary {
  mtls: MtlsMode;
  defaultAction: DefaultAction;
  /** The MeshNamespace that sets them; absent: the defaults. */
  namespacePolicy?: string;
  /** Requests are checked (and their paths normalised) at the service's inbound. */
  enforced: boolean;
  /** What no allow rule matches is denied. */
  allowList: boolean;
  policies: string[];
  deny: { rule: string; matches: string }[];
  allow: { rule: string; matches: string }[];
  problems: string[];
}

export function summariseAuthorization(table: AuthorizationTable, namespace: string, service: string): AuthorizationSummary {
  const settings = namespaceSettings(table, namespace);
  const entry = table.services.get(`${namespace}/${service}`);
  return {
    mtls: settings.mtls,
    defaultAction: settings.defaultAction,
    ...(settings.policy ? { namespacePolicy: settings.policy } : {}),
    enforced: authorizationApplies(table, namespace, service),
    allowList: entry?.allowList ?? false,
    policies: [...(entry?.policies ?? [])],
    deny: (entry?.denies ?? []).map((r) => ({ rule: r.name, matches: describeRule(r) })),
    allow: (entry?.allows ?? []).map((r) => ({ rule: r.name, matches: describeRule(r) })),
    problems: [...(entry?.problems ?? [])],
  };
}

export function formatAuthorizationSummary(a: AuthorizationSummary): string[] {
  const lines = ['', `  authorization (at the service's inbound): mTLS ${a.mtls}, default ${a.defaultAction}${a.namespacePolicy ? ` (${a.namespacePolicy})` : ' (no MeshNamespace)'}`];
  if (!a.enforced) {
    lines.push('    no policy: every caller with a mesh certificate is allowed');
    return lines;
  }
  for (const d of a.deny) lines.push(`    deny   ${d.rule}: ${d.matches}`);
  for (const r of a.allow) lines.push(`    allow  ${r.rule}: ${r.matches}`);
  lines.push(a.allowList ? '    otherwise denied (an allow list is in force)' : `    otherwise ${a.defaultAction === 'deny' ? 'denied (the namespace denies by default)' : 'allowed'}`);
  for (const p of a.problems) lines.push(`    problem: ${p}`);
  return lines;
}

/** A rule as people read it (`isthmus explain`, `isthmus can`). */
export function describeRule(rule: CompiledRule): string {
  const from = [
    rule.identities ? `identity ${rule.identities.map((m) => ('exact' in m ? m.exact : `${m.prefix}*`)).join(' or ')}` : undefined,
    rule.namespaces ? `namespace ${[...rule.namespaces].join(' or ')}` : undefined,
    rule.serviceAccounts ? `service account ${[...rule.serviceAccounts].join(' or ')}` : undefined,
    rule.clusters ? `cluster ${[...rule.clusters].join(' or ')}` : undefined,
  ].filter((x): x is string => x !== undefined);
  const to = [
    rule.methods ? `method ${[...rule.methods].join(' or ')}` : undefined,
    rule.paths ? `path ${rule.paths.map((p) => ('exact' in p ? `= ${p.exact}` : 'prefix' in p ? `${p.prefix}*` : `*${p.suffix}`)).join(' or ')}` : undefined,
    rule.pathRegex ? `path ~ ${rule.pathRegex.source}` : undefined,
    rule.headers ? rule.headers.map(([n, v]) => `header ${n}: ${v}`).join(', ') : undefined,
  ].filter((x): x is string => x !== undefined);
  return `${from.length > 0 ? `from ${from.join(', ')}` : 'from anyone'}${to.length > 0 ? ` to ${to.join(', ')}` : ''}`;
}
