/**
 * How many malloc arenas a proxy process may use, given to glibc through `MALLOC_ARENA_MAX`.
 *
 * glibc gives a thread that finds the arenas busy an arena of its own, up to eight per core,
 * and an arena keeps what is freed into it for reuse instead of returning it to the system. A
 * Node proxy allocates from its main thread, V8's worker threads (garbage collection and
 * compilation) and libuv's pool, so a sidecar ends up holding several arenas of freed memory.
 * With two, a client sidecar holding a catalog of 1003 services read 64.7 MB of RSS at rest
 * instead of 67.7, and 77.6 instead of 80.6 MB after requests to 100 of them (two alternated
 * pairs of `npm run bench:memory`, docs/benchmarks.md). One arena took no more off.
 *
 * glibc reads the variable once, when the process starts, so it is set by whoever starts the
 * process: the container image (Dockerfile), `isthmus dev up` for every process it starts, and
 * the bench's Node floor, so that the floor is read under the same malloc as the sidecar. A
 * value already in the environment is kept.
 */
export const proxyMallocArenaMax = '2';

/** `env` with MALLOC_ARENA_MAX set to the proxies' value, unless it names one already. */
export function withProxyMallocArenas(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return env.MALLOC_ARENA_MAX === undefined ? { ...env, MALLOC_ARENA_MAX: proxyMallocArenaMax } : env;
}
