import type { Locality, Priority, ServiceLocalities } from './localities.js';
import { compareText } from '../core/compare-text.js';

/**
 * A FailoverPolicy's `order`: an explicit list of clusters to fail over to, in turn, once the
 * caller's own cluster has no healthy endpoint left. Replaces the default ranking of the other
 * clusters (P2 same region, P3 the rest: localities.ts) with one level per listed cluster:
 *
 *   P0  the caller's zone                      (unchanged)
 *   P1  the other zones of the caller's cluster (unchanged)
 *   P2… each listed cluster that serves the service, in the listed order, one level each
 *   then the unlisted clusters, keeping the default ranking between them (same region first)
 *
 * Unlisted clusters stay reachable, last: `order` says who comes first, not who may be used
 * (the schema's "tried in this order after the caller's own cluster"); `scope` is what forbids,
 * and it is applied before the order (failover-scope.ts), on the default levels it is defined
 * by. The caller's own cluster in `order` is ignored: it always comes first. Listed clusters
 * that do not serve the service take no level, so the levels stay dense and Envoy's priority
 * load (priority-load.ts) spills from one listed cluster to the next exactly as from P2 to P3.
 * Pure.
 */
export function withClusterOrder(service: ServiceLocalities, order: readonly string[], callerCluster: string): ServiceLocalities {
  if (order.length === 0) return service;
  const ranked = order.filter((cluster) => cluster !== callerCluster);
  const present = new Set(service.localities.map((l) => l.cluster));
  const listed = ranked.filter((cluster) => present.has(cluster));
  const firstRemote = 2;
  const levelOf = new Map(listed.map((cluster, i) => [cluster, firstRemote + i] as const));
  // The unlisted remote clusters keep their default levels' relative order (2 before 3) after the listed ones.
  const unlistedLevels = [...new Set(service.localities
    .filter((l) => l.cluster !== callerCluster && !levelOf.has(l.cluster))
    .map((l) => l.priority))].sort((a, b) => a - b);
  const afterListed = firstRemote + listed.length;

  const localities = service.localities.map((l): Locality => {
    const priority: Priority = l.cluster === callerCluster
      ? l.priority
      : levelOf.get(l.cluster) ?? afterListed + unlistedLevels.indexOf(l.priority);
    return { ...l, priority };
  });
  localities.sort((x, y) => x.priority - y.priority || compareText(x.cluster, y.cluster) || compareText(x.zone, y.zone));
  return { localities };
}
