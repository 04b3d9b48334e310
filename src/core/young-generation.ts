import { setFlagsFromString } from 'node:v8';

/**
 * The young generation of a sidecar or gateway, kept small while it starts.
 *
 * V8 doubles a semi-space whenever many objects survive a scavenge, which loading a module
 * graph and a sidecar's warm-up both do: a client sidecar sat at rest with a new space of
 * 8 MB committed (74 MB of RSS) until an idle collection gave it back later. Started with a
 * growth factor of 1, the same sidecar holds a new space of 1 MB and 67 MB of RSS at rest; the
 * objects that survive start-up are promoted to the old space, where they live anyway.
 *
 * bin/isthmus.js sets the factor to 1 for `isthmus sidecar` and `isthmus gateway` before anything
 * loads; `allowYoungGenerationGrowth()` sets V8's default (2) back once the process serves, so
 * that under load the young generation grows as before: kept at 1 it cost ~5% more CPU per
 * request at 1000 requests/s (docs/benchmarks.md, "What still holds the memory").
 */
/** V8's default `--semi-space-growth-factor`. */
const servingGrowthFactor = 2;

export function allowYoungGenerationGrowth(): void {
  setFlagsFromString(`--semi-space-growth-factor=${servingGrowthFactor}`);
}
