// The V8 flags `isthmus <verb>` sets before anything else loads (bin/isthmus.js). Kept apart so
// that the memory bench's module-graph reading (src/bench/loaded-modules.ts) starts the same way.
// V8 honours them set at run time like this; given on node's command line, the growth factor
// below did not hold (Node 20.20).

/** @param {string | undefined} verb the command's first word: `sidecar`, `gateway`, `dev`, ... */
export function startFlags(verb) {
  return [
    // undici's client parses HTTP/1.1 with llhttp compiled to WebAssembly. By default V8 also
    // compiles that module with its optimising tier in the background just after start-up, which
    // lifted a process to about 107 MB of RSS for a moment (and left more behind). Its baseline
    // compiler alone avoids that peak (docs/benchmark-history.md, "Memory results"). Sidecars
    // and gateways no longer load undici's client (they use Node's own parser); the federation and
    // the CLI's control-plane commands still do. It must be set before undici loads.
    '--liftoff-only',
    // A sidecar or gateway starts with a young generation that does not grow: what survives loading
    // and the warm-up goes to the old space instead of doubling the semi-spaces, about 7 MB less RSS
    // at rest. Each sets V8's default growth back once it serves (src/core/young-generation.ts).
    ...(verb === 'sidecar' || verb === 'gateway' ? ['--semi-space-growth-factor=1'] : []),
  ];
}
