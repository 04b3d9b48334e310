// `npm run build`, second step: bundles the compiled CLI (dist/cli/main.js) into dist/bundle/,
// which bin/isthmus.js runs. Every sidecar and gateway is a process of this CLI, and a bundle
// costs them less memory and start-up than hundreds of separate modules: one parse per chunk,
// and only the parts of TypeBox, undici, prom-client and yaml that Isthmus reaches
// (docs/benchmark-history.md, "Memory results"). Each command stays its own chunk, so
// `isthmus sidecar` loads no etcd, dashboard or CA code. Packages that read their own files at
// run time, or that only the control plane or optional features load, stay in node_modules.
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = fileURLToPath(new URL('..', import.meta.url));
const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));

/** Bundled: what every proxy process loads, with its own dependencies. */
const bundled = new Set(['undici', '@sinclair/typebox', 'prom-client', 'yaml', 'commander', 'node-forge', 'pino']);
// etcd3 and gRPC read .proto files beside their code, pino-pretty and the OpenTelemetry SDK are
// loaded only when asked for, fastify and ws serve the control plane and dev tools.
const external = Object.keys(pkg.dependencies).filter((name) => !bundled.has(name)).flatMap((name) => [name, `${name}/*`]);

const outdir = `${root}dist/bundle`;
rmSync(outdir, { recursive: true, force: true });
const result = await build({
  entryPoints: [`${root}dist/cli/main.js`],
  outdir,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external,
  // Smaller source text to keep in memory; names stay, so stack traces in logs still read.
  minifyWhitespace: true,
  minifySyntax: true,
  metafile: true,
  logLevel: 'warning',
  // The CommonJS packages inside call require() for Node's own modules.
  banner: { js: "import { createRequire as isthmusCreateRequire } from 'node:module'; const require = isthmusCreateRequire(import.meta.url);" },
});
// Which input went into which chunk: the module-graph test reads it to tell what a sidecar loads.
writeFileSync(`${outdir}/meta.json`, JSON.stringify(result.metafile));
