import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** dist/ of this checkout, whether this file runs from src/ (vitest) or dist/. */
const dist = new URL('../../dist/', import.meta.url);
const traceEntry = fileURLToPath(new URL('bench/module-trace.js', dist));
const root = new URL('../', dist);
const bundleMeta = new URL('bundle/meta.json', dist);
/** The V8 flags bin/isthmus.js sets at start, per command. */
const startFlagsUrl = new URL('bin/start-flags.js', root);

interface BundleMeta {
  outputs: Record<string, { entryPoint?: string; inputs: Record<string, unknown> }>;
}

/**
 * The bundle bin/isthmus.js runs (scripts/bundle.mjs), when it is there and not older than the
 * compiled modules (the same rule bin/isthmus.js follows); otherwise the compiled modules run.
 */
function currentBundle(): BundleMeta | undefined {
  const main = new URL('cli/main.js', dist);
  if (!existsSync(bundleMeta) || statSync(new URL('bundle/main.js', dist)).mtimeMs < statSync(main).mtimeMs) return undefined;
  return JSON.parse(readFileSync(bundleMeta, 'utf8')) as BundleMeta;
}

/** The chunk that holds compiled module `entry` (e.g. `sidecar/sidecar.js`) as an entry point. */
function chunkOf(meta: BundleMeta, entry: string): URL {
  const found = Object.entries(meta.outputs).find(([, o]) => o.entryPoint === `dist/${entry}`);
  if (!found) throw new Error(`dist/bundle/meta.json has no chunk for dist/${entry}; run npm run build`);
  return new URL(found[0], root);
}

/** Bundle chunks replaced by the modules they were built from, so callers see the same graph either way. */
function unbundled(meta: BundleMeta, modules: string[]): string[] {
  return modules.flatMap((m) => {
    const output = m.startsWith(root.href) ? meta.outputs[m.slice(root.href.length)] : undefined;
    return output ? [m, ...Object.keys(output.inputs).map((input) => new URL(input, root).href)] : [m];
  });
}

/**
 * What a long-running command loads before it starts serving: the CLI for that verb and the
 * module its action imports, the way bin/isthmus.js and the action run them, without starting it.
 */
export const processEntries = {
  bare: [],
  sidecar: [{ program: 'sidecar' }, 'sidecar/sidecar.js'],
  gateway: [{ program: 'gateway' }, 'gateway/run.js'],
} as const satisfies Record<string, readonly ({ program: string } | string)[]>;
export type ProcessKind = keyof typeof processEntries;

export interface LoadedModules {
  /**
   * Every module URL the process loaded (file: URLs and node: builtins), sorted; empty without
   * `trace`. From the bundle, each chunk loaded is listed with the modules it was built from.
   */
  modules: string[];
  /** npm packages among them (`@scope/name` or `name`), sorted. */
  packages: string[];
  /**
   * Node's own modules the process has loaded, by any path (`import`, `require`, or Node's
   * internals), as `process.moduleLoadList` names them: `http2`, `internal/http2/core`, ...
   */
  builtins: string[];
  /**
   * The process's VmRSS and VmHWM in kB once everything was imported (after a GC). With `trace`
   * the loader hooks' own thread is in them too (about 13 MB): read memory from a run without.
   */
  rssKb: number;
  hwmKb: number;
  heapUsedBytes: number;
  /** The size of V8's new space once everything was imported. */
  newSpaceBytes: number;
}

/** The npm package a module URL or path belongs to (the last node_modules/ segment), if any. */
export function packageOf(module: string): string | undefined {
  const at = module.lastIndexOf('node_modules/');
  if (at < 0) return undefined;
  const [first, second] = module.slice(at + 'node_modules/'.length).split('/');
  return first?.startsWith('@') ? `${first}/${second}` : first;
}

/** `VmRSS` and `VmHWM` (kB) from the text of /proc/<pid>/status. */
export function parseProcStatus(status: string): { rssKb: number; hwmKb: number } {
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN);
  return { rssKb: field('VmRSS'), hwmKb: field('VmHWM') };
}

/**
 * Runs a fresh `node` that imports what process `kind` imports at start, lists the modules it
 * loaded (with `trace`, the default), and reads its memory. The environment is this one's minus
 * every OTEL_* variable unless `env` sets them.
 */
export async function loadedModules(kind: ProcessKind, opts: { env?: Record<string, string>; trace?: boolean } = {}): Promise<LoadedModules> {
  const trace = opts.trace ?? true;
  const dir = mkdtempSync(join(tmpdir(), 'isthmus-modules-'));
  const traceFile = join(dir, 'modules.txt');
  const meta = currentBundle();
  const moduleUrl = (entry: string) => (meta ? chunkOf(meta, entry) : new URL(entry, dist)).href;
  const steps = processEntries[kind].map((entry) => (typeof entry === 'string'
    ? `await import(${JSON.stringify(moduleUrl(entry))});`
    : `await (await import(${JSON.stringify(meta ? new URL('bundle/main.js', dist).href : new URL('cli/main.js', dist).href)})).buildProgram(${JSON.stringify(entry.program)});`));
  // A sidecar's or gateway's graph is read with the V8 flags bin/isthmus.js sets for it before
  // anything loads; without them the import alone doubled the young generation to 8 MB, and the
  // reading moved with V8's semi-spaces rather than with the modules.
  const flags = kind === 'bare' ? [] : [
    `const { startFlags } = await import(${JSON.stringify(startFlagsUrl.href)});`,
    `for (const flag of startFlags(${JSON.stringify(kind)})) require('node:v8').setFlagsFromString(flag);`,
  ];
  // Node's own modules through require(), as bin/isthmus.js reaches them: an imported built-in's
  // facade reads every export (fs.promises, tls.rootCertificates) and would load more than the
  // process does.
  const script = `const require = (await import('node:module')).createRequire(${JSON.stringify(startFlagsUrl.href)});
${[...flags, ...steps].join('\n')}
globalThis.gc?.();
const status = require('node:fs').readFileSync('/proc/self/status', 'utf8');
const newSpaceBytes = require('node:v8').getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? 0;
const builtins = process.moduleLoadList.filter((m) => m.startsWith('NativeModule ')).map((m) => m.slice('NativeModule '.length));
process.stdout.write(JSON.stringify({ status, heapUsedBytes: process.memoryUsage().heapUsed, builtins, newSpaceBytes }));`;
  const childEnv: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('OTEL_')));
  try {
    const stdout = await new Promise<string>((resolve, reject) => {
      const child = spawn(process.execPath, ['--expose-gc', ...(trace ? ['--import', traceEntry] : []), '--input-type=module', '-e', script], {
        env: { ...childEnv, ...opts.env, ...(trace ? { ISTHMUS_MODULE_TRACE: traceFile } : {}) }, stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
      child.stderr.on('data', (c: Buffer) => { err += c.toString(); });
      child.once('error', reject);
      child.once('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`node exited ${code} importing the ${kind} module graph: ${err.trim()}`))));
    });
    const { status, heapUsedBytes, builtins, newSpaceBytes } = JSON.parse(stdout) as { status: string; heapUsedBytes: number; builtins: string[]; newSpaceBytes: number };
    const traced = trace ? readFileSync(traceFile, 'utf8').split('\n').filter(Boolean) : [];
    const modules = [...new Set(meta ? unbundled(meta, traced) : traced)].sort();
    const packages = [...new Set(modules.map(packageOf).filter((p): p is string => p !== undefined))].sort();
    return { modules, packages, builtins: [...new Set(builtins)].sort(), ...parseProcStatus(status), heapUsedBytes, newSpaceBytes };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
