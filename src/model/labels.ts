/**
 * Instance labels (`isthmus register --label k=v`) and the ServiceSubsets that select by them.
 * Pure: the sidecar (its own cluster's instances), the federation (which label sets it exports)
 * and the gateway (which instances a `<subset>.` SNI may reach) decide with the same functions.
 */
import { Value } from '../core/typebox.js';
import type { PolicyRecord } from './policy-records.js';
import { ServiceSubsetSpecSchema } from './resilience-spec.js';
import { compareText } from '../core/compare-text.js';

export type Labels = Readonly<Record<string, string>>;

/** Whether an instance with `held` labels belongs to a subset that wants `wanted`: every label, same value. */
export function hasLabels(held: Labels | undefined, wanted: Labels): boolean {
  for (const name in wanted) if (held?.[name] !== wanted[name]) return false;
  return true;
}

export interface LabelSet { labels: Record<string, string>; healthy: number; total: number }

/**
 * The distinct label sets among `instances`, with how many carry each and how many of those are
 * healthy, sorted by their labels: what an export record says of a cluster's subsets (counts,
 * never addresses). Instances without labels are left out; none labelled gives an empty list.
 */
export function labelSets(instances: readonly { labels?: Labels | undefined; healthy: boolean }[]): LabelSet[] {
  const sets = new Map<string, LabelSet>();
  for (const instance of instances) {
    if (!instance.labels || Object.keys(instance.labels).length === 0) continue;
    const labels = Object.fromEntries(Object.entries(instance.labels).sort(([a], [b]) => compareText(a, b)));
    const key = JSON.stringify(labels);
    let set = sets.get(key);
    if (!set) {
      set = { labels, healthy: 0, total: 0 };
      sets.set(key, set);
    }
    set.total += 1;
    if (instance.healthy) set.healthy += 1;
  }
  return [...sets.entries()].sort(([a], [b]) => compareText(a, b)).map(([, set]) => set);
}

/** Healthy and total instances of `sets` that belong to the subset wanting `wanted`. */
export function subsetCounts(sets: readonly LabelSet[] | undefined, wanted: Labels): { healthy: number; total: number } {
  let healthy = 0;
  let total = 0;
  for (const set of sets ?? []) {
    if (!hasLabels(set.labels, wanted)) continue;
    healthy += set.healthy;
    total += set.total;
  }
  return { healthy, total };
}

/** Every ServiceSubset by the service it selects from (`<ns>/<service>`): subset name → labels. Records that do not check out are skipped. */
export function subsetsByService(records: readonly PolicyRecord[]): Map<string, Record<string, Record<string, string>>> {
  const out = new Map<string, Record<string, Record<string, string>>>();
  for (const r of records) {
    if (r.kind !== 'ServiceSubset' || !Value.Check(ServiceSubsetSpecSchema, r.spec)) continue;
    const key = `${r.namespace}/${r.spec.service}`;
    const held = out.get(key) ?? {};
    held[r.name] = { ...r.spec.labels };
    out.set(key, held);
  }
  return out;
}
