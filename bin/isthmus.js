#!/usr/bin/env node
// The `isthmus` command. The TypeScript sources are compiled to dist/ by `npm ci` (prepare).
import { existsSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';

// undici's client parses HTTP/1.1 with llhttp compiled to WebAssembly. By default V8 also
// compiles that module with its optimising tier in the background just after start-up, which
// lifted a process to about 107 MB of RSS for a moment (and left more behind). Its baseline
// compiler alone avoids that peak (docs/benchmark-history.md, "Memory results"). Sidecars
// and gateways no longer load undici's client (they use Node's own parser); the federation and
// the CLI's control-plane commands still do. It must be set before undici loads.
setFlagsFromString('--liftoff-only');
// A sidecar or gateway starts with a young generation that does not grow: what survives loading
// and the warm-up goes to the old space instead of doubling the semi-spaces, about 7 MB less RSS
// at rest. Each sets V8's default growth back once it serves (src/core/young-generation.ts).
if (process.argv[2] === 'sidecar' || process.argv[2] === 'gateway') setFlagsFromString('--semi-space-growth-factor=1');

const compiled = new URL('../dist/cli/main.js', import.meta.url);
const bundled = new URL('../dist/bundle/main.js', import.meta.url);
if (!existsSync(fileURLToPath(compiled))) {
  process.stderr.write('isthmus: dist/ is missing; run `npm run build` (or `npm ci`) in the isthmus checkout first\n');
  process.exit(1);
}
// `npm run build` compiles dist/ and then bundles it into dist/bundle/ (scripts/bundle.mjs),
// which costs each sidecar and gateway less memory. A bundle older than the compiled code (tsc
// run alone) would run stale code, so then the compiled modules run instead.
const mtime = (url) => (existsSync(fileURLToPath(url)) ? statSync(url).mtimeMs : -1);
const entry = mtime(bundled) >= mtime(compiled) ? bundled : compiled;
const { main } = await import(entry.href);
await main(process.argv);
// The command is done (long-running ones return only after their shutdown). Whatever handle a
// library left open must not keep the process alive: give output a moment to flush, then exit.
setTimeout(() => process.exit(), 1000).unref();
