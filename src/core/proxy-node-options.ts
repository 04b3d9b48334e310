/**
 * Node options for the processes that carry traffic (`isthmus sidecar`, `isthmus gateway`), given
 * by whoever starts them: the dev mesh's process spawner, the injected sidecar container's and the
 * gateway Deployment's `NODE_OPTIONS`. They cannot be set from inside: V8's platform exists
 * before the first line of JavaScript runs.
 *
 * `--v8-pool-size=1`: one V8 worker thread instead of Node's four. A proxy's background work
 * (concurrent marking, sweeping, optimising compiles) is small, and on a node with few cores four
 * helpers per pod only compete with the request path. Each helper that works also keeps a malloc
 * arena and a stack of its own. In two memory-bench runs alternated with two without it, a
 * sidecar holding a catalog of 1003 services read 64.4 and 64.2 MB of RSS at rest (66.1 and 67.2
 * without), 76.2 and 76.7 after requests to 100 of them (78.9 and 80.1), and the bench's CPU per
 * request did not move beyond its noise (docs/benchmarks.md, "One V8 worker thread per proxy").
 */
export const proxyNodeFlags: readonly string[] = ['--v8-pool-size=1'];

/** The same, as a `NODE_OPTIONS` value. */
export const proxyNodeOptions = proxyNodeFlags.join(' ');

/** Whether `isthmus <args>` starts a process that carries traffic. */
export function carriesTraffic(args: readonly string[]): boolean {
  return args[0] === 'sidecar' || args[0] === 'gateway';
}
