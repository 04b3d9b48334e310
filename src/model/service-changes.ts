import { compareText } from '../core/compare-text.js';
import { Type, type TArray, type TObject, type TProperties } from '../core/typebox.js';

/**
 * Snapshots the federation can send as changes to the one a reader holds: the catalog, this
 * cluster's endpoints and the gateways' routing table, each a list of services beside a few
 * other fields, served in `<namespace>/<name>` order (by UTF-16 code units).
 */
export interface ServiceList {
  services: readonly { namespace: string; name: string }[];
}

/**
 * What changed since a snapshot the reader holds (`?since=<epoch>.<generation>`), told apart from
 * a whole snapshot by `since`: every field of the snapshot but its services, whole (they are
 * few), the services added or changed (`upserts`, whole), the `<namespace>/<name>` of those gone
 * (`removed`), and how many services the snapshot holds after the changes (`services`).
 */
export type ServiceChanges<T extends ServiceList> = Omit<T, 'services'> & {
  epoch: string;
  generation: number;
  since: number;
  upserts: T['services'][number][];
  removed: string[];
  services: number;
};

export function serviceKey(service: { namespace: string; name: string }): string {
  return `${service.namespace}/${service.name}`;
}

/** The schema of the changes to a snapshot of `schema` (an object whose `services` is an array). */
export function changesSchemaOf(schema: TObject<TProperties & { services: TArray }>): TObject {
  const { services, ...rest } = schema.properties;
  return Type.Object({
    ...rest,
    epoch: Type.String(),
    generation: Type.Integer({ minimum: 0 }),
    since: Type.Integer({ minimum: 0 }),
    upserts: Type.Array(services.items),
    removed: Type.Array(Type.String()),
    services: Type.Integer({ minimum: 0 }),
  });
}

/**
 * The snapshot `changes` make of `last`, in `<namespace>/<name>` order, sharing every unchanged
 * service's object with `last`; or why they do not apply: a count that does not come out as the
 * federation's means the two no longer agree, and the reader asks for the snapshot whole.
 */
export function applyServiceChanges<T extends ServiceList>(last: T, changes: ServiceChanges<T>): { snapshot: T } | { problem: string } {
  const { epoch: _epoch, generation: _generation, since: _since, upserts: changed, removed: gone, services: count, ...rest } = changes;
  const upserts = new Map(changed.map((s) => [serviceKey(s), s]));
  const removed = new Set(gone);
  const services: T['services'][number][] = [];
  for (const service of last.services) {
    const key = serviceKey(service);
    if (removed.has(key)) continue;
    services.push(upserts.get(key) ?? service);
    upserts.delete(key);
  }
  if (upserts.size > 0) {
    // New services: the rest keep their order, so one sort of the whole list places them.
    services.push(...upserts.values());
    const keys = new Map(services.map((s) => [s, serviceKey(s)]));
    services.sort((x, y) => compareText(keys.get(x)!, keys.get(y)!));
  }
  if (services.length !== count) return { problem: `the changes leave ${services.length} services where the federation has ${count}` };
  return { snapshot: { ...rest, services } as unknown as T };
}

/** A long-polled feed's `changes` (core/long-poll.ts) for a snapshot of `schema`. */
export function serviceListChanges(schema: TObject<TProperties & { services: TArray }>) {
  return { schema: changesSchemaOf(schema), apply: applyServiceChanges };
}
