// `npm run build`, second step: bundles the compiled CLI (dist/cli/main.js) into dist/bundle/,
// which bin/isthmus.js runs. Every sidecar and gateway is a process of this CLI, and a bundle
// costs them less memory and start-up than hundreds of separate modules: one parse per chunk,
// and only the parts of TypeBox, undici, prom-client and yaml that Isthmus reaches
// (docs/benchmark-history.md, "Memory results"). Each command stays its own chunk, so
// `isthmus sidecar` loads no etcd, dashboard or CA code. Packages that read their own files at
// run time, or that only the control plane or optional features load, stay in node_modules.
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { builtinModules, createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = fileURLToPath(new URL('..', import.meta.url));
const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));

/** Bundled: what every proxy process loads, with its own dependencies. */
const bundled = new Set(['undici', '@sinclair/typebox', 'prom-client', 'yaml', 'commander', 'node-forge', 'pino']);
// etcd3 and gRPC read .proto files beside their code, pino-pretty and the OpenTelemetry SDK are
// loaded only when asked for, fastify and ws serve the control plane and dev tools.
const external = Object.keys(pkg.dependencies).filter((name) => !bundled.has(name)).flatMap((name) => [name, `${name}/*`]);

// Node's own modules are reached through require() rather than `import`. Node gives an imported
// built-in an ES module facade, and building it reads every export, lazy getters included:
// `tls.rootCertificates` turns Node's 140 root certificates into strings, `fs.promises` loads
// the promise API, and so on, whether or not anything uses them. Through require() they stay
// lazy; in a fresh node, importing the dozen built-ins a sidecar uses held 2 MB more RSS than
// requiring them (docs/benchmark-history.md, "2026-12-07 04:40 UTC"). Each built-in becomes a
// small module that requires it once and exports its plain values by name (read when the
// bundle loads, so a call costs what it did), its getters left alone.
const builtin = new Set(builtinModules);
const requireHere = createRequire(import.meta.url);
const identifier = /^[A-Za-z_$][\w$]*$/;
function builtinStandIn(specifier) {
  const exported = Object.entries(Object.getOwnPropertyDescriptors(requireHere(specifier)))
    .filter(([name, d]) => 'value' in d && name !== 'default' && identifier.test(name))
    .map(([name], i) => `const v${i} = m[${JSON.stringify(name)}]; export { v${i} as ${name} };`);
  return [`const m = require(${JSON.stringify(specifier)});`, 'export default m;', ...exported].join('\n');
}
const builtinsThroughRequire = {
  name: 'builtins-through-require',
  setup(b) {
    b.onResolve({ filter: /^[a-z_:/]+$/ }, (args) => {
      if (!builtin.has(args.path.replace(/^node:/, ''))) return undefined;
      // The stand-in's own require() is the real one (the banner's).
      if (args.namespace === 'node-builtin') return { path: args.path, external: true };
      // CommonJS packages already require() their built-ins.
      if (args.kind === 'require-call') return { path: args.path, external: true };
      return { path: args.path, namespace: 'node-builtin' };
    });
    b.onLoad({ filter: /.*/, namespace: 'node-builtin' }, (args) => ({ contents: builtinStandIn(args.path), loader: 'js' }));
  },
};

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
  plugins: [builtinsThroughRequire],
  logLevel: 'warning',
  // The CommonJS packages inside call require() for Node's own modules.
  banner: { js: "import { createRequire as isthmusCreateRequire } from 'node:module'; const require = isthmusCreateRequire(import.meta.url);" },
});
// Which input went into which chunk: the module-graph test reads it to tell what a sidecar loads.
writeFileSync(`${outdir}/meta.json`, JSON.stringify(result.metafile));
