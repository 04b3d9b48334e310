import { Value } from '../core/typebox.js';
import {
  AuthorizationPolicySpecSchema, HttpRouteGroupSpecSchema, MeshNamespaceSpecSchema, TrafficTargetSpecSchema,
  type AuthorizationRule, type HttpRouteGroupSpec, type PathMatch,
} from './authorization-spec.js';
import type { PolicyRecord } from './policy-records.js';
import { compareText } from '../core/compare-text.js';

/**
 * Who may call a service: the stored authorization kinds compiled once per policy snapshot, and
 * the decision for one caller and request. Pure, no I/O; the inbound sidecar asks it for every
 * request (src/sidecar/authz-layer.ts) and `isthmus can` asks it from the CLI, so both give the
 * same answer. The rules (docs/authorization.md):
 * - a deny rule that matches wins over everything;
 * - else, if the service has an allow list (an AuthorizationPolicy with `allow`, or a
 *   TrafficTarget), a matching allow rule allows and nothing else does;
 * - else the namespace's default decides (MeshNamespace `authorization.default`, allow unless set).
 * Within a rule every condition given must hold (identities OR-ed among themselves, and so on).
 * A fact the sidecar cannot know (the method or path of a TCP connection, the identity or
 * cluster of a plain-text caller, the cluster of a caller on a TLS session resumed from a
 * handshake this process did not see) fails an allow rule's condition and satisfies a deny
 * rule's: in doubt, the stricter reading (as Istio treats HTTP fields of a rule on TCP traffic).
 */

export type MtlsMode = 'strict' | 'permissive';
export type DefaultAction = 'allow' | 'deny';

/** What the inbound knows of the caller. Absent: not known (plain text, or not seen). */
export interface CallerFacts {
  /** The SPIFFE ID of the caller's verified certificate, never a header. */
  identity?: string;
  /** The cluster whose CA issued the caller's certificate. */
  cluster?: string;
}

/** The request, once its path is normalised (request-path.ts); absent for a TCP connection. */
export interface RequestFacts {
  method: string;
  path: string;
  /** A header's value by lower-case name (several values joined with ", "). */
  header(name: string): string | undefined;
}

type IdentityMatcher = { exact: string } | { prefix: string };

export interface CompiledRule {
  /** Which document and rule: `AuthorizationPolicy demo/ledger-access allow rule 0 (readers)`. */
  name: string;
  identities?: readonly IdentityMatcher[];
  namespaces?: ReadonlySet<string>;
  /** `<ns>/<sa>` pairs (a TrafficTarget's sources), in any trust domain. */
  serviceAccounts?: ReadonlySet<string>;
  clusters?: ReadonlySet<string>;
  methods?: ReadonlySet<string>;
  paths?: readonly PathMatch[];
  pathRegex?: RegExp;
  /** Lower-case names, exact values. */
  headers?: readonly (readonly [string, string])[];
}

export interface ServiceAuthorization {
  namespace: string;
  service: string;
  allows: readonly CompiledRule[];
  denies: readonly CompiledRule[];
  /** Some policy gives the service an allow list: what no allow rule matches is denied. */
  allowList: boolean;
  /** The documents in force, `<Kind> <ns>/<name>`. */
  policies: readonly string[];
  /** What could not be honoured (a TrafficTarget naming a missing HTTPRouteGroup): it allows nothing. */
  problems: readonly string[];
}

export interface NamespaceSettings {
  defaultAction: DefaultAction;
  mtls: MtlsMode;
  /** The MeshNamespace that says so; absent: the defaults. */
  policy?: string;
}

export interface AuthorizationTable {
  /** By `<ns>/<service>`. */
  services: ReadonlyMap<string, ServiceAuthorization>;
  namespaces: ReadonlyMap<string, NamespaceSettings>;
}

export interface Decision {
  allowed: boolean;
  /** The rule that decided; absent when a default did. */
  rule?: string;
  /** One sentence: why. */
  reason: string;
}

export const emptyAuthorization: AuthorizationTable = { services: new Map(), namespaces: new Map() };
export const defaultNamespaceSettings: NamespaceSettings = Object.freeze({ defaultAction: 'allow', mtls: 'strict' });

export function namespaceSettings(table: AuthorizationTable, namespace: string): NamespaceSettings {
  return table.namespaces.get(namespace) ?? defaultNamespaceSettings;
}

/** Whether requests to the service are checked at all (and so their paths normalised). */
export function authorizationApplies(table: AuthorizationTable, namespace: string, service: string): boolean {
  return table.services.has(`${namespace}/${service}`) || namespaceSettings(table, namespace).defaultAction === 'deny';
}

export function compileAuthorization(records: readonly PolicyRecord[]): AuthorizationTable {
  const namespaces = new Map<string, NamespaceSettings>();
  const groups = new Map<string, HttpRouteGroupSpec>();
  const services = new Map<string, { namespace: string; service: string; allows: CompiledRule[]; denies: CompiledRule[]; allowList: boolean; policies: string[]; problems: string[] }>();
  const entry = (namespace: string, service: string) => {
    const key = `${namespace}/${service}`;
    let e = services.get(key);
    if (!e) services.set(key, (e = { namespace, service, allows: [], denies: [], allowList: false, policies: [], problems: [] }));
    return e;
  };
  const ordered = [...records].sort((a, b) => compareText(`${a.kind}/${a.namespace}/${a.name}`, `${b.kind}/${b.namespace}/${b.name}`));
  for (const r of ordered) {
    if (r.kind === 'HTTPRouteGroup' && Value.Check(HttpRouteGroupSpecSchema, r.spec)) groups.set(`${r.namespace}/${r.name}`, r.spec);
    if (r.kind === 'MeshNamespace' && Value.Check(MeshNamespaceSpecSchema, r.spec) && !namespaces.has(r.namespace)) {
      namespaces.set(r.namespace, { defaultAction: r.spec.authorization?.default ?? 'allow', mtls: r.spec.mtls?.mode ?? 'strict', policy: `MeshNamespace ${r.name}` });
    }
  }
  for (const r of ordered) {
    const policy = `${r.kind} ${r.namespace}/${r.name}`;
    if (r.kind === 'AuthorizationPolicy' && Value.Check(AuthorizationPolicySpecSchema, r.spec)) {
      const e = entry(r.namespace, r.spec.service);
      e.policies.push(policy);
      if (r.spec.allow) e.allowList = true;
      r.spec.allow?.forEach((rule, i) => e.allows.push(compileRule(rule, `${policy} allow rule ${i}`)));
      r.spec.deny?.forEach((rule, i) => e.denies.push(compileRule(rule, `${policy} deny rule ${i}`)));
    } else if (r.kind === 'TrafficTarget' && Value.Check(TrafficTargetSpecSchema, r.spec)) {
      const spec = r.spec;
      const e = entry(r.namespace, spec.destination.name);
      e.policies.push(policy);
      e.allowList = true;
      const serviceAccounts = new Set(spec.sources.map((s) => `${s.namespace ?? r.namespace}/${s.name}`));
      for (const ruleRef of spec.rules) {
        const group = ruleRef.kind === 'HTTPRouteGroup' ? groups.get(`${r.namespace}/${ruleRef.name}`) : undefined;
        if (!group) {
          e.problems.push(`${policy} names ${ruleRef.kind} ${r.namespace}/${ruleRef.name}, which is not applied: that rule allows nothing`);
          continue;
        }
        const wanted = ruleRef.matches ?? group.matches.map((m) => m.name);
        for (const name of wanted) {
          const m = group.matches.find((x) => x.name === name);
          if (!m) {
            e.problems.push(`${policy} names match ${name} of HTTPRouteGroup ${r.namespace}/${ruleRef.name}, which has none of that name: it allows nothing`);
            continue;
          }
          const methods = m.methods?.includes('*') ? undefined : m.methods;
          e.allows.push({
            name: `${policy} route ${ruleRef.name}/${name}`,
            serviceAccounts,
            ...(methods ? { methods: new Set(methods) } : {}),
            ...(m.pathRegex !== undefined ? { pathRegex: new RegExp(`^(?:${m.pathRegex})$`, 'u') } : {}),
            ...(m.headers ? { headers: Object.entries(m.headers).map(([n, v]) => [n.toLowerCase(), v] as const) } : {}),
          });
        }
      }
    }
  }
  return { services, namespaces };
}

function compileRule(rule: AuthorizationRule, fallbackName: string): CompiledRule {
  const from = rule.from;
  const to = rule.to;
  return {
    name: rule.name ? `${fallbackName} (${rule.name})` : fallbackName,
    ...(from?.identities ? { identities: from.identities.map((id) => (id.endsWith('*') ? { prefix: id.slice(0, -1) } : { exact: id })) } : {}),
    ...(from?.namespaces ? { namespaces: new Set(from.namespaces) } : {}),
    ...(from?.clusters ? { clusters: new Set(from.clusters) } : {}),
    ...(to?.methods ? { methods: new Set(to.methods) } : {}),
    ...(to?.paths ? { paths: to.paths } : {}),
    ...(to?.headers ? { headers: to.headers.map((h) => [h.name.toLowerCase(), h.value] as const) } : {}),
  };
}

export function authorize(table: AuthorizationTable, namespace: string, service: string, caller: CallerFacts, request: RequestFacts | undefined): Decision {
  const name = `${namespace}/${service}`;
  const entry = table.services.get(name);
  for (const rule of entry?.denies ?? []) {
    if (ruleMatches(rule, caller, request, 'deny')) return { allowed: false, rule: rule.name, reason: `denied by ${rule.name}` };
  }
  if (entry?.allowList) {
    for (const rule of entry.allows) {
      if (ruleMatches(rule, caller, request, 'allow')) return { allowed: true, rule: rule.name, reason: `allowed by ${rule.name}` };
    }
    return { allowed: false, reason: `no rule allows it (${name} has an allow list: ${entry.policies.join(', ')})` };
  }
  const settings = namespaceSettings(table, namespace);
  if (settings.defaultAction === 'deny') return { allowed: false, reason: `no rule allows it (namespace ${namespace} denies by default: ${settings.policy ?? 'MeshNamespace'})` };
  return { allowed: true, reason: entry ? `allowed: no deny rule matches and ${name} has no allow list` : `allowed: no authorization policy applies to ${name}` };
}

type Truth = 'yes' | 'no' | 'unknown';

/** Every condition of the rule: an allow rule needs each to be yes; a deny rule only that none is no. */
function ruleMatches(rule: CompiledRule, caller: CallerFacts, request: RequestFacts | undefined, kind: 'allow' | 'deny'): boolean {
  for (const truth of conditions(rule, caller, request)) {
    if (truth === 'no' || (truth === 'unknown' && kind === 'allow')) return false;
  }
  return true;
}

function* conditions(rule: CompiledRule, caller: CallerFacts, request: RequestFacts | undefined): Generator<Truth> {
  const id = caller.identity;
  const workload = id === undefined ? undefined : workloadOf(id);
  if (rule.identities) yield id === undefined ? 'unknown' : truth(rule.identities.some((m) => ('exact' in m ? id === m.exact : id.startsWith(m.prefix))));
  if (rule.namespaces) yield id === undefined ? 'unknown' : truth(workload !== undefined && rule.namespaces.has(workload.namespace));
  if (rule.serviceAccounts) yield id === undefined ? 'unknown' : truth(workload !== undefined && rule.serviceAccounts.has(`${workload.namespace}/${workload.serviceAccount}`));
  if (rule.clusters) yield caller.cluster === undefined ? 'unknown' : truth(rule.clusters.has(caller.cluster));
  if (rule.methods) yield request === undefined ? 'unknown' : truth(rule.methods.has(request.method.toUpperCase()));
  if (rule.paths) yield request === undefined ? 'unknown' : truth(rule.paths.some((p) => pathMatches(p, request.path)));
  if (rule.pathRegex) yield request === undefined ? 'unknown' : truth(rule.pathRegex.test(request.path));
  if (rule.headers) yield request === undefined ? 'unknown' : truth(rule.headers.every(([n, v]) => request.header(n) === v));
}

const truth = (b: boolean): Truth => (b ? 'yes' : 'no');

function pathMatches(p: PathMatch, path: string): boolean {
  if ('exact' in p) return path === p.exact;
  if ('prefix' in p) return path.startsWith(p.prefix);
  return path.endsWith(p.suffix);
}

const workloadPattern = /^spiffe:\/\/[^/]+\/ns\/([^/]+)\/sa\/([^/]+)$/;

/** `spiffe://<td>/ns/<ns>/sa/<sa>` → its namespace and service account; other IDs have none. */
export function workloadOf(identity: string): { namespace: string; serviceAccount: string } | undefined {
  const m = workloadPattern.exec(identity);
  return m ? { namespace: m[1] as string, serviceAccount: m[2] as string } : undefined;
}
