import { priorityLevels, type Endpoint, type Priority, type ServiceLocalities } from './localities.js';
import { loadCost } from './peak-ewma.js';

/**
 * Which endpoint gets a request, given the service's localities and the priority load computed
 * from them (priority-load.ts). Two steps, as Envoy: choose a priority by its load, then a
 * healthy endpoint of that priority. Within the priority, when the endpoints carry their load
 * (peak-ewma.ts) and `now` is given: power of two choices, two endpoints drawn by weight and
 * the one with the lower cost (latency × outstanding requests) taken, as Linkerd's Peak-EWMA and
 * Envoy's least-request balancers do; otherwise one endpoint by weight. Locality priorities
 * are untouched: latency chooses only among endpoints (local pods, or the gateways of clusters)
 * of the same priority. Randomness is a parameter so tests can seed it and the sidecar can pass
 * Math.random.
 */
export interface PickedEndpoint extends Endpoint {
  priority: Priority;
  region: string;
  zone: string;
  cluster: string;
}

/** A uniform number in [0, 1), like Math.random. */
export type Random = () => number;

/**
 * Never returns an unhealthy, zero-weight or excluded endpoint. When the chosen priority has
 * none left (all excluded by earlier attempts, or health changed since the load was computed),
 * falls to the next lower priority, then wraps to the higher ones: any healthy endpoint is better
 * than failing the request. `undefined` only when no eligible endpoint exists at all.
 */
export function pickEndpoint(
  service: ServiceLocalities,
  priorityLoads: readonly number[],
  random: Random,
  exclude: ReadonlySet<string> = noneExcluded,
  now?: number,
): PickedEndpoint | undefined {
  if (exclude.size === 0) return pickPrepared(prepareEndpoints(service), priorityLoads, random, now);
  const chosen = choosePriority(priorityLoads, random());
  for (const priority of fallbackOrder(chosen, priorityLevels(service).length)) {
    const picked = pickWithin(eligible(service, priority, exclude), random(), random, now);
    if (picked) return picked;
  }
  return undefined;
}

const noneExcluded: ReadonlySet<string> = new Set();

/** Each priority's eligible endpoints (healthy, weight above 0), index = priority. */
export type PreparedEndpoints = readonly (readonly PickedEndpoint[])[];

/**
 * The eligible endpoints of every priority, worked out once per routing decision (when health
 * or the catalog changes) so that picking for a request allocates nothing.
 */
export function prepareEndpoints(service: ServiceLocalities): PreparedEndpoints {
  return priorityLevels(service).map((priority) => eligible(service, priority, noneExcluded));
}

/** pickEndpoint with nothing excluded, over prepared endpoints: the same choice, no allocation. */
export function pickPrepared(prepared: PreparedEndpoints, priorityLoads: readonly number[], random: Random, now?: number): PickedEndpoint | undefined {
  const chosen = choosePriority(priorityLoads, random());
  for (let i = 0; i < prepared.length; i += 1) {
    // The fallback order: chosen, the lower priorities, then the higher ones (as fallbackOrder).
    const priority = (chosen + i) % prepared.length;
    const items = prepared[priority];
    // One draw per priority tried, as pickEndpoint makes: seeded callers see the same sequence.
    const u = random();
    if (items && items.length > 0) return pickWithin(items, u, random, now);
  }
  return undefined;
}

/**
 * One endpoint of a priority: the first drawn by weight with `u`; with loads and `now`, a second
 * drawn by weight among the others (one more draw) and the cheaper of the two. O(endpoints of the
 * priority) as the weighted draw already was, and allocation-free.
 */
function pickWithin(items: readonly PickedEndpoint[], u: number, random: Random, now: number | undefined): PickedEndpoint | undefined {
  const first = weightedPick(items, u);
  if (now === undefined || items.length < 2 || !first?.load) return first;
  const second = weightedPickOther(items, first, random());
  if (!second?.load) return first;
  return loadCost(second.load, second.weight, now) < loadCost(first.load, first.weight, now) ? second : first;
}

/** weightedPick among `items` without `skip`. */
function weightedPickOther<T extends { weight: number }>(items: readonly T[], skip: T, u: number): T | undefined {
  let total = 0;
  for (const item of items) if (item !== skip) total += item.weight;
  const point = u * total;
  let cumulative = 0;
  let last: T | undefined;
  for (const item of items) {
    if (item === skip) continue;
    cumulative += item.weight;
    last = item;
    if (point < cumulative) return item;
  }
  return last;
}

/**
 * Where to retry after `failed` could not be reached: the other endpoints of its priority
 * first (a connect error says little about its neighbours, and they are as close), then the
 * next lower priorities, then the higher ones. Each priority's endpoints come in weighted random
 * order, so retries of many callers spread instead of all hitting the same next endpoint.
 */
export function retryOrder(
  service: ServiceLocalities,
  failed: { address: string; priority: Priority },
  random: Random,
  exclude: ReadonlySet<string> = new Set(),
): PickedEndpoint[] {
  const skip = new Set(exclude).add(failed.address);
  return fallbackOrder(failed.priority, priorityLevels(service).length).flatMap((priority) => weightedShuffle(eligible(service, priority, skip), random));
}

/** The priority whose cumulative load first exceeds `u` × total; P0 when every load is 0. */
export function choosePriority(priorityLoads: readonly number[], u: number): Priority {
  const total = priorityLoads.reduce((a, b) => a + b, 0);
  if (total <= 0) return 0;
  const point = u * total;
  let cumulative = 0;
  let lastWithLoad = 0;
  for (let priority = 0; priority < priorityLoads.length; priority += 1) {
    const load = priorityLoads[priority] ?? 0;
    cumulative += load;
    if (point < cumulative) return priority;
    if (load > 0) lastWithLoad = priority;
  }
  // u is below 1, so only float rounding lands here: the last priority with any load.
  return lastWithLoad;
}

/** `start`, the levels below it, then the ones above it, over `levels` levels. */
function fallbackOrder(start: Priority, levels: number): Priority[] {
  return Array.from({ length: levels }, (_, i) => (start + i) % levels);
}

function eligible(service: ServiceLocalities, priority: Priority, exclude: ReadonlySet<string>): PickedEndpoint[] {
  const result: PickedEndpoint[] = [];
  for (const locality of service.localities) {
    if (locality.priority !== priority) continue;
    for (const endpoint of locality.endpoints) {
      if (!endpoint.healthy || !(endpoint.weight > 0) || exclude.has(endpoint.address)) continue;
      result.push({ ...endpoint, priority, region: locality.region, zone: locality.zone, cluster: locality.cluster });
    }
  }
  return result;
}

function weightedPick<T extends { weight: number }>(items: readonly T[], u: number): T | undefined {
  const total = items.reduce((sum, item) => sum + item.weight, 0);
  const point = u * total;
  let cumulative = 0;
  for (const item of items) {
    cumulative += item.weight;
    if (point < cumulative) return item;
  }
  return items.at(-1);
}

/** Weighted sampling without replacement: each draw picks by weight among those left. */
function weightedShuffle<T extends { weight: number }>(items: readonly T[], random: Random): T[] {
  const left = [...items];
  const order: T[] = [];
  while (left.length > 0) {
    const picked = weightedPick(left, random());
    if (!picked) break;
    order.push(picked);
    left.splice(left.indexOf(picked), 1);
  }
  return order;
}
