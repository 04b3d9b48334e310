#!/usr/bin/env node
// The `isthmus` command. The TypeScript sources are compiled to dist/ by `npm ci` (prepare).
import { createRequire } from 'node:module';
import { startFlags } from './start-flags.js';

// Node's own modules through require(), as the bundle reaches them (scripts/bundle.mjs): an
// imported built-in gets a facade that reads every export, and `fs.promises` then loads the
// whole promise API into every sidecar.
const require = createRequire(import.meta.url);
const { existsSync, statSync } = require('node:fs');
const { fileURLToPath } = require('node:url');
const { setFlagsFromString } = require('node:v8');

for (const flag of startFlags(process.argv[2])) setFlagsFromString(flag);

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
