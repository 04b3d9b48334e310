import { Type, type Static } from '../core/typebox.js';
import { dnsLabelPattern } from '../core/names.js';

/**
 * SMI `TrafficSplit` (split.smi-spec.io/v1alpha4): requests to `spec.service` (the root service)
 * go to `spec.backends` by weight. Isthmus has no HTTPRouteGroup, so `spec.matches` is refused
 * with a pointer to HTTPRoute, which does matches. A split acts as one rule without matches,
 * after every HTTPRoute rule of the same service (docs/traffic-policy.md, "Precedence").
 */
const service = Type.String({ pattern: dnsLabelPattern, description: 'a service name (a DNS label) in metadata.namespace' });

export const TrafficSplitSpecSchema = Type.Object({
  service,
  backends: Type.Array(Type.Object({
    service,
    weight: Type.Integer({ minimum: 0, maximum: 1_000_000, description: 'a whole number; shares are weight / sum of weights' }),
  }, { additionalProperties: false }), { minItems: 1 }),
}, { additionalProperties: false });
export type TrafficSplitSpec = Static<typeof TrafficSplitSpecSchema>;
