#!/usr/bin/env node
// The `isthmus` command. The TypeScript sources are compiled to dist/ by `npm ci` (prepare).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';

// undici parses HTTP/1.1 with llhttp compiled to WebAssembly. By default V8 also compiles that
// module with its optimising tier in the background just after start-up, which lifted every
// sidecar and gateway to about 107 MB of RSS for a moment (and left more behind) for a parser
// whose share of a request's CPU is small. Its baseline compiler alone avoids that peak
// (docs/benchmarks.md, "Memory of one sidecar process"). It must be set before undici loads.
setFlagsFromString('--liftoff-only');

const entry = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(entry))) {
  process.stderr.write('isthmus: dist/ is missing; run `npm run build` (or `npm ci`) in the isthmus checkout first\n');
  process.exit(1);
}
const { main } = await import(entry.href);
await main(process.argv);
// The command is done (long-running ones return only after their shutdown). Whatever handle a
// library left open must not keep the process alive: give output a moment to flush, then exit.
setTimeout(() => process.exit(), 1000).unref();
