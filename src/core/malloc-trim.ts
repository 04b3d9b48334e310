/**
 * Gives the pages of freed malloc memory back to the system: glibc's `malloc_trim(0)`, through a
 * native module of a dozen lines (native/malloc-trim.c, compiled by `npm run build` into
 * dist/native/malloc-trim.node, scripts/native.mjs).
 *
 * Node allocates Buffers, TLS records, parsers and V8's compiler zones with malloc. glibc keeps
 * what is freed for reuse and returns to the system only what is free at the very top of a heap,
 * so a sidecar that once needed more (its warm-up, a catalog of 1000 services, a burst of large
 * gRPC messages) goes on holding it: at rest, a client sidecar's main arena held 8.0 MB of which
 * 4.7 MB was in use. `malloc_trim(0)` walks every arena and returns each whole free page
 * (docs/benchmark-history.md, "2026-12-07 04:40 UTC"). Node has no binding for it. Envoy has
 * an overload action for the same (`envoy.overload_actions.shrink_heap`).
 *
 * It runs where a process has just let go of memory and is about to go on at rest: after the
 * sidecar's warm-up, after each heap trim (core/heap-trim.ts), and when a sidecar or gateway
 * goes idle after collections (core/young-generation.ts, onIdle). It pauses the thread that
 * calls it for as long as the walk takes: 0.5–0.8 ms in a process with little to return, 24 ms
 * when it returned 60 MB (src/core/malloc-trim.test.ts's case).
 *
 * Where the module could not be built (no C compiler, no Node headers, a libc without
 * `malloc_trim` such as musl) every call reports `unavailable` and the process runs on with the
 * memory glibc keeps.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Logger } from './log.js';

/** dist/native/malloc-trim.node, from dist/core, dist/bundle or src/core alike. */
export const mallocTrimModule = fileURLToPath(new URL('../../dist/native/malloc-trim.node', import.meta.url));

export type MallocTrimResult =
  /** `released`: whether glibc gave any memory back. */
  | { released: boolean }
  | { unavailable: string };

/**
 * Loads the native module at `path` (once per path and process, as Node loads a native module):
 * a function that calls `malloc_trim(0)`, or one that says why it cannot.
 */
export function loadMallocTrim(path: string = mallocTrimModule): () => MallocTrimResult {
  const unavailable = (why: string) => () => ({ unavailable: why });
  if (!existsSync(path)) {
    return unavailable(`${path} was not built (it needs a C compiler and Node's headers: install gcc, then npm run build)`);
  }
  try {
    const mod = { exports: {} as { trim?: unknown } };
    process.dlopen(mod, path);
    const { trim } = mod.exports;
    if (typeof trim !== 'function') return unavailable(`${path} has no trim(); rebuild it with npm run build`);
    return () => ({ released: (trim as () => boolean)() });
  } catch (err) {
    return unavailable(`${path} could not be loaded (${(err as Error).message.split('\n')[0]}); rebuild it with npm run build`);
  }
}

let loaded: (() => MallocTrimResult) | undefined;

/** `malloc_trim(0)` through dist/native/malloc-trim.node, or why it cannot run here. */
export function mallocTrim(): MallocTrimResult {
  loaded ??= loadMallocTrim();
  return loaded();
}

/** How a result reads in a log line: `released`, `nothing to release` or `unavailable`. */
export function mallocTrimOutcome(result: MallocTrimResult): 'released' | 'nothing to release' | 'unavailable' {
  return 'unavailable' in result ? 'unavailable' : result.released ? 'released' : 'nothing to release';
}

/**
 * The trim a sidecar or gateway runs once it has started (its warm-up's and start-up's memory
 * freed), and where it cannot run, one line at start that says why.
 */
export function mallocTrimAtStart(logger: Logger): MallocTrimResult {
  const result = mallocTrim();
  if ('unavailable' in result) logger.info({ why: result.unavailable }, 'malloc_trim is not available: memory freed after bursts stays with the process');
  return result;
}

/**
 * For YoungGeneration's onIdle: a process gone quiet after collections trims, and says so in a
 * debug line with how long the walk took.
 */
export function mallocTrimWhenIdle(logger: Logger): () => void {
  return () => {
    const started = performance.now();
    const result = mallocTrim();
    logger.debug({ mallocTrim: mallocTrimOutcome(result), ms: Math.round((performance.now() - started) * 100) / 100 }, 'idle after collections: gave malloc\'s free pages back');
  };
}
