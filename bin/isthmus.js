#!/usr/bin/env node
// The `isthmus` command. The TypeScript sources are compiled to dist/ by `npm ci` (prepare).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

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
