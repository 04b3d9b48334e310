import { Type, type Static } from '../core/typebox.js';
import { dnsLabelPattern } from '../core/names.js';

/**
 * The part of Gateway API's `HTTPRoute` (gateway.networking.k8s.io/v1) that Isthmus carries out,
 * attached to a Service as the GAMMA mesh profile does (parentRefs of group "" and kind Service).
 * The published schema is checked first (src/cli/policy-documents.ts); this schema then refuses,
 * with the field's path, whatever is valid Gateway API but not done by Isthmus, so that nothing
 * applied is silently ignored. docs/traffic-policy.md lists the fields.
 */
const name = Type.String({ pattern: dnsLabelPattern, description: 'a service name (a DNS label)' });
const unsupported = (what: string) => ({ description: `Isthmus does not carry out ${what} yet` });

export const ServiceParentRefSchema = Type.Object({
  group: Type.Optional(Type.Literal('', { description: 'a Service parent has group "" (the GAMMA mesh profile); Gateway parents are not supported' })),
  kind: Type.Literal('Service', { description: 'Isthmus attaches routes to Services (the GAMMA mesh profile); a Gateway parent is not supported' }),
  name,
  namespace: Type.Optional(Type.String({ pattern: dnsLabelPattern })),
  port: Type.Optional(Type.Integer()),
}, { additionalProperties: false });

/** A backend is a Service (a whole service, such as `hello-v2`), or an Isthmus ServiceSubset. */
export const BackendRefSchema = Type.Object({
  group: Type.Optional(Type.Union([Type.Literal(''), Type.Literal('isthmus.dev')], { description: 'group "" (a Service) or isthmus.dev (a ServiceSubset)' })),
  kind: Type.Optional(Type.Union([Type.Literal('Service'), Type.Literal('ServiceSubset')], { description: 'Service, or ServiceSubset with group isthmus.dev' })),
  name,
  namespace: Type.Optional(Type.String({ pattern: dnsLabelPattern })),
  port: Type.Optional(Type.Integer()),
  weight: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000 })),
}, { additionalProperties: false });

const HeaderMatchSchema = Type.Object({
  type: Type.Optional(Type.Literal('Exact', unsupported('RegularExpression header matches'))),
  name: Type.String(),
  value: Type.String(),
}, { additionalProperties: false });

export const RouteMatchSchema = Type.Object({
  path: Type.Optional(Type.Object({
    type: Type.Optional(Type.Union([Type.Literal('Exact'), Type.Literal('PathPrefix')], unsupported('RegularExpression path matches'))),
    value: Type.Optional(Type.String({ pattern: '^/', description: 'a path starting with /' })),
  }, { additionalProperties: false })),
  headers: Type.Optional(Type.Array(HeaderMatchSchema)),
  queryParams: Type.Optional(Type.Array(HeaderMatchSchema)),
  method: Type.Optional(Type.String()),
}, { additionalProperties: false });

const HeaderListSchema = Type.Array(Type.Object({ name: Type.String(), value: Type.String() }, { additionalProperties: false }));

export const HeaderModifierSchema = Type.Object({
  set: Type.Optional(HeaderListSchema),
  add: Type.Optional(HeaderListSchema),
  remove: Type.Optional(Type.Array(Type.String())),
}, { additionalProperties: false });

const FilterSchema = Type.Object({
  type: Type.Literal('RequestHeaderModifier', unsupported('filters other than RequestHeaderModifier')),
  requestHeaderModifier: HeaderModifierSchema,
}, { additionalProperties: false });

export const RouteRuleSchema = Type.Object({
  name: Type.Optional(Type.String()),
  matches: Type.Optional(Type.Array(RouteMatchSchema)),
  filters: Type.Optional(Type.Array(FilterSchema)),
  backendRefs: Type.Array(BackendRefSchema, { minItems: 1, description: 'a rule needs at least one backendRef: Isthmus has no rule that answers by itself' }),
  timeouts: Type.Optional(Type.Object({
    request: Type.Optional(Type.String()),
  }, { additionalProperties: false })),
}, { additionalProperties: false });

export const HttpRouteSpecSchema = Type.Object({
  parentRefs: Type.Array(ServiceParentRefSchema, { minItems: 1, description: 'the Service(s) the route attaches to' }),
  rules: Type.Array(RouteRuleSchema, { minItems: 1 }),
}, { additionalProperties: false });
export type HttpRouteSpec = Static<typeof HttpRouteSpecSchema>;
export type RouteRuleSpec = Static<typeof RouteRuleSchema>;
export type RouteMatchSpec = Static<typeof RouteMatchSchema>;
export type BackendRefSpec = Static<typeof BackendRefSchema>;

/** Gateway API durations: 1 to 4 groups of a number and h, m, s or ms ("1m30s", "500ms"). */
export const gatewayDurationPattern = /^([0-9]{1,5}(h|m|s|ms)){1,4}$/;

/** "1m30s" → 90000; undefined for a string that is not a Gateway API duration. */
export function gatewayDurationMs(text: string): number | undefined {
  if (!gatewayDurationPattern.test(text)) return undefined;
  let total = 0;
  for (const [, amount, unit] of text.matchAll(/([0-9]+)(ms|h|m|s)/g)) {
    total += Number(amount) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[unit as 'ms' | 's' | 'm' | 'h'];
  }
  return total;
}
