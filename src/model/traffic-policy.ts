import { Value } from '../core/typebox.js';
import { gatewayDurationMs, HttpRouteSpecSchema, type HttpRouteSpec, type RouteMatchSpec, type RouteRuleSpec } from './http-route-spec.js';
import type { PolicyRecord } from './policy-records.js';
import { ServiceSubsetSpecSchema, type ServiceSubsetSpec } from './resilience-spec.js';
import { TrafficSplitSpecSchema, type TrafficSplitSpec } from './traffic-split-spec.js';

/**
 * Stored traffic policies → one routing table per service: an ordered list of (match → action)
 * entries, where the action is weighted backends (a service, or a subset of one by instance
 * labels), a request timeout and header changes. Pure, and compiled once per policy snapshot:
 * matching a request walks the list and allocates nothing unless a query parameter is matched.
 *
 * The order follows Gateway API v1's HTTPRouteRule `matches` field, which says how matches rank
 * across all rules of all routes attached to one parent: an Exact path first, then the longest
 * PathPrefix, then a method match, then the most header matches, then the most query-parameter
 * matches; remaining ties go to the oldest route (creation time), then by "<ns>/<name>", then to
 * the first rule and match in list order. A TrafficSplit (which has no matches) comes after every
 * HTTPRoute entry of its service; of several splits on one service the oldest wins.
 */

export interface Backend {
  namespace: string;
  service: string;
  /** A ServiceSubset backend: only instances with all these labels (docs/traffic-policy.md, "Subsets"). */
  subset?: { name: string; labels: Readonly<Record<string, string>> };
  weight: number;
}

export interface HeaderChanges {
  set: readonly (readonly [string, string])[];
  add: readonly (readonly [string, string])[];
  remove: readonly string[];
}

export interface RuleAction {
  /** Which document and rule decided: "HTTPRoute demo/hello-split rule 0". */
  policy: string;
  backends: readonly Backend[];
  totalWeight: number;
  timeoutMs?: number;
  headers?: HeaderChanges;
}

export interface CompiledMatch {
  exactPath?: string;
  /** PathPrefix without its trailing '/': '' matches every path. */
  prefix?: string;
  method?: string;
  /** Lower-case names, exact values. */
  headers: readonly (readonly [string, string])[];
  query: readonly (readonly [string, string])[];
}

export interface RoutingEntry { match: CompiledMatch; action: RuleAction }

export interface ServiceRoutes {
  namespace: string;
  service: string;
  entries: readonly RoutingEntry[];
  /** An HTTPRoute is attached: a request no entry matches is answered 404 (Gateway API), not routed plainly. */
  routeAttached: boolean;
}

/** What matching needs of a request: Node's own header object (lower-case names) will do. */
export interface RequestFacts {
  method: string;
  /** The request target's path, with its query string if any. */
  path: string;
  headers: Readonly<Record<string, string | string[] | undefined>>;
}

interface Ranked extends RoutingEntry { rank: readonly (number | string)[] }

/** Every service that has a routing policy, by `<ns>/<service>`. Records that do not check out are skipped. */
export function compileTrafficPolicies(records: readonly PolicyRecord[]): Map<string, ServiceRoutes> {
  const subsets = new Map<string, ServiceSubsetSpec>();
  for (const r of records) if (r.kind === 'ServiceSubset' && Value.Check(ServiceSubsetSpecSchema, r.spec)) subsets.set(`${r.namespace}/${r.name}`, r.spec);
  const ranked = new Map<string, Ranked[]>();
  const attached = new Set<string>();
  const add = (namespace: string, service: string, entry: Ranked) => {
    const key = `${namespace}/${service}`;
    ranked.set(key, [...(ranked.get(key) ?? []), entry]);
  };
  for (const record of records) {
    const age = Date.parse(record.createdAt) || 0;
    const id = `${record.namespace}/${record.name}`;
    if (record.kind === 'HTTPRoute' && Value.Check(HttpRouteSpecSchema, record.spec)) {
      const spec = record.spec as HttpRouteSpec;
      spec.rules.forEach((rule, r) => {
        const action = ruleAction(`HTTPRoute ${id} rule ${r}`, rule, record.namespace, subsets);
        const matches: RouteMatchSpec[] = rule.matches && rule.matches.length > 0 ? rule.matches : [{}];
        matches.forEach((m, i) => {
          const match = compileMatch(m);
          for (const parent of new Set(spec.parentRefs.map((p) => p.name))) {
            attached.add(`${record.namespace}/${parent}`);
            add(record.namespace, parent, { match, action, rank: [0, ...matchRank(match), age, id, r, i] });
          }
        });
      });
    } else if (record.kind === 'TrafficSplit' && Value.Check(TrafficSplitSpecSchema, record.spec)) {
      const spec = record.spec as TrafficSplitSpec;
      const backends = spec.backends.map((b) => ({ namespace: record.namespace, service: b.service, weight: b.weight }));
      const action: RuleAction = { policy: `TrafficSplit ${id}`, backends, totalWeight: sum(backends) };
      add(record.namespace, spec.service, { match: { prefix: '', headers: [], query: [] }, action, rank: [1, 0, 0, 0, 0, 0, age, id, 0, 0] });
    }
  }
  const out = new Map<string, ServiceRoutes>();
  for (const [key, entries] of ranked) {
    const [namespace = '', service = ''] = key.split('/');
    entries.sort((a, b) => compareRanks(a.rank, b.rank));
    out.set(key, { namespace, service, routeAttached: attached.has(key), entries: entries.map(({ match, action }) => ({ match, action })) });
  }
  return out;
}

/** Smaller ranks win: the kind (routes before splits), then Gateway API's criteria, each negated where more wins. */
function matchRank(m: CompiledMatch): number[] {
  const exact = m.exactPath !== undefined ? 0 : 1;
  // A match without a path is a PathPrefix "/" (Gateway API's default), one character long.
  const prefixLength = m.exactPath !== undefined ? 0 : -Math.max(1, (m.prefix ?? '').length + 1);
  return [exact, prefixLength, m.method !== undefined ? 0 : 1, -m.headers.length, -m.query.length];
}

function compareRanks(a: readonly (number | string)[], b: readonly (number | string)[]): number {
  for (let i = 0; i < a.length; i += 1) {
    const x = a[i] as number | string;
    const y = b[i] as number | string;
    if (x === y) continue;
    return x < y ? -1 : 1;
  }
  return 0;
}

function compileMatch(m: RouteMatchSpec): CompiledMatch {
  const type = m.path?.type ?? 'PathPrefix';
  const value = m.path?.value ?? '/';
  return {
    // Gateway API's PathPrefix matches whole path elements, and a trailing '/' in it is ignored.
    ...(type === 'Exact' ? { exactPath: value } : { prefix: value.replace(/\/+$/, '') }),
    ...(m.method !== undefined ? { method: m.method } : {}),
    headers: (m.headers ?? []).map((h) => [h.name.toLowerCase(), h.value] as const),
    query: (m.queryParams ?? []).map((q) => [q.name, q.value] as const),
  };
}

function ruleAction(policy: string, rule: RouteRuleSpec, namespace: string, subsets: ReadonlyMap<string, ServiceSubsetSpec>): RuleAction {
  const backends: Backend[] = [];
  for (const ref of rule.backendRefs) {
    const weight = ref.weight ?? 1;
    if (ref.kind === 'ServiceSubset') {
      const subset = subsets.get(`${namespace}/${ref.name}`);
      // An unknown subset gets no traffic; if it was the only backend, the rule answers 500.
      if (subset) backends.push({ namespace, service: subset.service, subset: { name: ref.name, labels: subset.labels }, weight });
    } else {
      backends.push({ namespace, service: ref.name, weight });
    }
  }
  const timeout = rule.timeouts?.request === undefined ? undefined : gatewayDurationMs(rule.timeouts.request);
  const mods = (rule.filters ?? []).map((f) => f.requestHeaderModifier);
  const headers: HeaderChanges | undefined = mods.length === 0 ? undefined : {
    set: mods.flatMap((m) => (m.set ?? []).map((h) => [h.name.toLowerCase(), h.value] as const)),
    add: mods.flatMap((m) => (m.add ?? []).map((h) => [h.name.toLowerCase(), h.value] as const)),
    remove: mods.flatMap((m) => (m.remove ?? []).map((h) => h.toLowerCase())),
  };
  // Gateway API: a request timeout of 0s means none.
  return { policy, backends, totalWeight: sum(backends), ...(timeout ? { timeoutMs: timeout } : {}), ...(headers ? { headers } : {}) };
}

function sum(backends: readonly { weight: number }[]): number {
  return backends.reduce((n, b) => n + b.weight, 0);
}

/** The first entry (in precedence order) whose match the request meets. */
export function matchRequest(routes: ServiceRoutes, request: RequestFacts): RoutingEntry | undefined {
  const { path } = request;
  const q = path.indexOf('?');
  const end = q < 0 ? path.length : q;
  let query: URLSearchParams | undefined;
  for (const entry of routes.entries) {
    const m = entry.match;
    if (m.exactPath !== undefined && !(end === m.exactPath.length && path.startsWith(m.exactPath))) continue;
    if (m.prefix !== undefined && m.prefix.length > 0 && !(m.prefix.length <= end && path.startsWith(m.prefix) && (end === m.prefix.length || path.charCodeAt(m.prefix.length) === 47))) continue;
    if (m.method !== undefined && m.method !== request.method) continue;
    if (!headersMatch(m.headers, request)) continue;
    if (m.query.length > 0) {
      query ??= new URLSearchParams(q < 0 ? '' : path.slice(q + 1));
      if (!m.query.every(([name, value]) => query?.get(name) === value)) continue;
    }
    return entry;
  }
  return undefined;
}

function headersMatch(headers: CompiledMatch['headers'], request: RequestFacts): boolean {
  for (const [name, value] of headers) {
    const held = request.headers[name];
    if (held !== value && !(Array.isArray(held) && held.includes(value))) return false;
  }
  return true;
}

/**
 * A backend by weight, `u` uniform in [0, 1). Zero-weight backends never win, so a 0/100
 * blue-green rule sends everything to one side. `undefined` when every weight is 0.
 */
export function pickBackend(action: RuleAction, u: number): Backend | undefined {
  if (action.totalWeight <= 0) return undefined;
  const point = u * action.totalWeight;
  let cumulative = 0;
  for (const backend of action.backends) {
    cumulative += backend.weight;
    if (point < cumulative) return backend;
  }
  // Only float rounding lands here: the last backend with any weight.
  for (let i = action.backends.length - 1; i >= 0; i -= 1) if ((action.backends[i] as Backend).weight > 0) return action.backends[i];
  return undefined;
}

/** Applies a rule's RequestHeaderModifier to the headers about to be forwarded (lower-case names). */
export function applyHeaderChanges(headers: Record<string, string | string[] | undefined>, changes: HeaderChanges): void {
  for (const [name, value] of changes.set) headers[name] = value;
  for (const [name, value] of changes.add) {
    const held = headers[name];
    headers[name] = held === undefined ? value : Array.isArray(held) ? [...held, value] : [held, value];
  }
  for (const name of changes.remove) delete headers[name];
}
