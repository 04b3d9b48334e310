import { Type, type Static } from '../core/typebox.js';
import { dnsLabelPattern } from '../core/names.js';

/**
 * The schemas of the authorization kinds (docs/authorization.md): Isthmus's own
 * `AuthorizationPolicy` and `MeshNamespace` (isthmus.dev/v1alpha1), and SMI's `TrafficTarget`
 * (access.smi-spec.io/v1alpha3) with the `HTTPRouteGroup` its rules name
 * (specs.smi-spec.io/v1alpha4). Checked at apply time; the inbound sidecar compiles them
 * (authorization.ts).
 */
const strict = { additionalProperties: false } as const;
const label = (description: string) => Type.String({ pattern: dnsLabelPattern, description });
const httpMethod = Type.String({ pattern: '^[A-Z]+$', description: 'an HTTP method in capitals, such as GET' });

/** `spiffe://...`, optionally ending in `*` (any ID that starts with what comes before it), or `*` alone (any caller with a mesh certificate). */
export const identityPattern = '^(\\*|spiffe://[^*\\s]+\\*?)$';

export const PathMatchSchema = Type.Union([
  Type.Object({ exact: Type.String({ pattern: '^/', description: 'the whole normalised path' }) }, strict),
  Type.Object({ prefix: Type.String({ pattern: '^/', description: 'the path starts with this (a plain string prefix: /admin also matches /administrator; write /admin/ for the directory)' }) }, strict),
  Type.Object({ suffix: Type.String({ minLength: 1, description: 'the path ends with this, such as .json' }) }, strict),
]);
export type PathMatch = Static<typeof PathMatchSchema>;

const HeaderMatchSchema = Type.Object({
  name: Type.String({ pattern: '^[A-Za-z0-9!#$%&\'*+.^_`|~-]+$', description: 'a header name (any case)' }),
  value: Type.String({ description: 'the exact value' }),
}, strict);

export const AuthorizationRuleSchema = Type.Object({
  name: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9][-A-Za-z0-9_.]{0,62}$', description: 'a name for the rule, shown in denials and `isthmus can`' })),
  from: Type.Optional(Type.Object({
    identities: Type.Optional(Type.Array(Type.String({ pattern: identityPattern, description: 'a SPIFFE ID; a trailing * matches every ID starting with what comes before it; * alone any mesh identity' }), { minItems: 1 })),
    namespaces: Type.Optional(Type.Array(label('the caller\'s namespace (the /ns/<ns>/ part of its SPIFFE ID)'), { minItems: 1 })),
    clusters: Type.Optional(Type.Array(label('the cluster whose CA issued the caller\'s certificate'), { minItems: 1 })),
  }, strict)),
  to: Type.Optional(Type.Object({
    methods: Type.Optional(Type.Array(httpMethod, { minItems: 1 })),
    paths: Type.Optional(Type.Array(PathMatchSchema, { minItems: 1 })),
    headers: Type.Optional(Type.Array(HeaderMatchSchema, { minItems: 1, description: 'every one must be present with exactly this value' })),
  }, strict)),
}, strict);
export type AuthorizationRule = Static<typeof AuthorizationRuleSchema>;

export const AuthorizationPolicySpecSchema = Type.Object({
  service: label('the service (a DNS label) in metadata.namespace whose inbound enforces this'),
  allow: Type.Optional(Type.Array(AuthorizationRuleSchema, { description: 'requests matching any of these are allowed; once a service has an allow list, every other request is denied (an empty list denies all)' })),
  deny: Type.Optional(Type.Array(AuthorizationRuleSchema, { description: 'requests matching any of these are denied, whatever the allow rules say' })),
}, strict);
export type AuthorizationPolicySpec = Static<typeof AuthorizationPolicySpecSchema>;

export const MeshNamespaceSpecSchema = Type.Object({
  authorization: Type.Optional(Type.Object({
    default: Type.Union([Type.Literal('allow'), Type.Literal('deny')], { description: 'what a service of this namespace without an allow rule does: allow (the default) or deny every request' }),
  }, strict)),
  mtls: Type.Optional(Type.Object({
    mode: Type.Union([Type.Literal('strict'), Type.Literal('permissive')], { description: 'strict (the default): only callers with a mesh certificate; permissive: plain-text callers too, while the namespace migrates' }),
  }, strict)),
}, strict);
export type MeshNamespaceSpec = Static<typeof MeshNamespaceSpecSchema>;

const ServiceAccountRef = Type.Object({
  kind: Type.Literal('ServiceAccount'),
  name: label('a service account: in Isthmus, the service name'),
  namespace: Type.Optional(label('its namespace; default the TrafficTarget\'s')),
}, strict);

export const TrafficTargetSpecSchema = Type.Object({
  destination: ServiceAccountRef,
  sources: Type.Array(ServiceAccountRef, { minItems: 1 }),
  rules: Type.Array(Type.Object({
    kind: Type.String({ description: 'HTTPRouteGroup (TCPRoute and UDPRoute are not carried out)' }),
    name: label('the HTTPRouteGroup, in the TrafficTarget\'s namespace'),
    matches: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { description: 'names of the group\'s matches; all of them when left out' })),
  }, strict), { minItems: 1 }),
}, strict);
export type TrafficTargetSpec = Static<typeof TrafficTargetSpecSchema>;

export const HttpRouteGroupSpecSchema = Type.Object({
  matches: Type.Array(Type.Object({
    name: Type.String({ minLength: 1 }),
    pathRegex: Type.Optional(Type.String({ description: 'a regular expression the whole normalised path must match' })),
    methods: Type.Optional(Type.Array(Type.String({ pattern: '^([A-Z]+|\\*)$' }), { minItems: 1, description: 'HTTP methods in capitals, or * for any' })),
    headers: Type.Optional(Type.Record(Type.String(), Type.String(), { description: 'header name → exact value' })),
  }, strict), { minItems: 1 }),
}, strict);
export type HttpRouteGroupSpec = Static<typeof HttpRouteGroupSpecSchema>;

/**
 * Rules no schema can say, for `policy apply`: the path of each offending field and why. A
 * TrafficTarget rule Isthmus cannot honour is refused here rather than ignored (ignoring an
 * allow rule would deny; ignoring it silently would mislead).
 */
export function authorizationProblems(kind: string, spec: Record<string, unknown>, namespace: string): { path: string; message: string }[] {
  const problems: { path: string; message: string }[] = [];
  if (kind === 'TrafficTarget') {
    const s = spec as TrafficTargetSpec;
    if ((s.destination.namespace ?? namespace) !== namespace) problems.push({ path: '/spec/destination/namespace', message: `the destination must be in the TrafficTarget's namespace (${namespace}), as SMI requires` });
    s.rules.forEach((r, i) => {
      if (r.kind !== 'HTTPRouteGroup') problems.push({ path: `/spec/rules/${i}/kind`, message: `Isthmus carries out TrafficTarget rules of kind HTTPRouteGroup only, not ${JSON.stringify(r.kind)}: for a TCP service, write an AuthorizationPolicy whose rules have only "from"` });
    });
  }
  if (kind === 'HTTPRouteGroup') {
    const s = spec as HttpRouteGroupSpec;
    const seen = new Set<string>();
    s.matches.forEach((m, i) => {
      if (seen.has(m.name)) problems.push({ path: `/spec/matches/${i}/name`, message: `the match name ${m.name} is used twice` });
      seen.add(m.name);
      if (m.pathRegex !== undefined) {
        try {
          new RegExp(m.pathRegex, 'u');
        } catch (err) {
          problems.push({ path: `/spec/matches/${i}/pathRegex`, message: `not a regular expression: ${(err as Error).message}` });
        }
      }
    });
  }
  if (kind === 'AuthorizationPolicy') {
    const s = spec as AuthorizationPolicySpec;
    if (s.allow === undefined && s.deny === undefined) problems.push({ path: '/spec', message: 'give spec.allow, spec.deny, or both' });
  }
  return problems;
}
