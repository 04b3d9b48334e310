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
    // No Sparkplug (V8's baseline compiler) in a sidecar. V8 keeps a function's baseline code for
    // the life of the process, beside its optimised code once it has that (it drops bytecode that
    // has not run for a while, never baseline code), and a sidecar's warm-up and start give
    // hundreds of functions some. Without it a dev mesh's sidecars held 1.6-1.8 MB less each at
    // rest and the memory bench's at rest with 1003 services read 59.4 and 59.8 MB against
    // 60.9-62.0; the request path is optimised by TurboFan either way, and the CPU per request
    // did not move. Gateways keep it: without it, the code each new connection runs there (a
    // few times per connection, never enough for TurboFan) ran interpreted, and a fresh mesh's
    // cold start missed its target in three runs of eight against none of eight
    // (docs/benchmark-history.md, "2026-12-07 09:51 UTC"). It is set here, before the code loads;
    // V8 takes it at run time this way, but `--sparkplug` given later does not turn it back on.
    ...(verb === 'sidecar' ? ['--no-sparkplug'] : []),
  ];
}
