import type { Priority, ServiceLocalities } from './localities.js';
import type { FailoverScope } from './resilience-policy.js';

/**
 * A FailoverPolicy's `scope`: how far a service's traffic may go when nearer endpoints fail.
 * The localities beyond it are dropped before the priority load is computed, so with
 * `region` a service whose region has no healthy endpoint answers 503 NO_HEALTHY_ENDPOINT
 * instead of crossing to another region. Priorities are relative to the caller
 * (localities.ts): P0 its zone, P1 its cluster, P2 its region, P3 the rest of the mesh. Pure.
 */
const farthest: Record<FailoverScope, Priority> = { zone: 0, cluster: 1, region: 2, mesh: 3 };

export function withinScope(service: ServiceLocalities, scope: FailoverScope): ServiceLocalities {
  const limit = farthest[scope];
  if (limit === 3) return service;
  return { localities: service.localities.filter((l) => l.priority <= limit) };
}
