import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dockerfileStages, dockerignore, type Stage } from './helpers/dockerfile.js';
import { root } from './helpers/manifests.js';

const run = promisify(execFile);

/*
 * No container engine runs here, so the image cannot be built. This replays what its Dockerfile
 * does, step by step, on this machine: the build stage's COPY instructions from the build
 * context (without what .dockerignore leaves out) into a directory standing for its WORKDIR, its
 * RUN instructions there (the package manager's install of the C compiler aside: this machine
 * has one), then the run stage's COPY --from=build into another directory standing for /app, and
 * its ENTRYPOINT with the ENV it sets. What it proves: the build works from exactly what the
 * image gets (no file of the tests or the docs needed), the native modules are built, the
 * pruned node_modules hold what the CLI loads, and the CLI runs from the run stage's files.
 * What it cannot: the base images themselves.
 */

let work: string;
let build: string;
let app: string;
let stages: Stage[];

/** Whether .dockerignore leaves `path` (relative to the context) out: its patterns as this repository writes them. */
function ignoredByContext(path: string, patterns: string[]): boolean {
  const segments = path.split('/');
  return patterns.some((pattern) => {
    if (pattern.startsWith('**/')) return segments.includes(pattern.slice(3));
    const glob = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*')}$`);
    return glob.test(segments[0] ?? '') || glob.test(path);
  });
}

/** COPY <sources...> <dest> from the build context into `dir` (the stage's WORKDIR). */
function copyFromContext(args: string[], dir: string, patterns: string[]): void {
  const dest = args.at(-1) as string;
  for (const source of args.slice(0, -1)) {
    const from = join(root, source);
    const to = dest.endsWith('/') ? join(dir, dest, source.split('/').at(-1) as string) : join(dir, dest);
    if (statSync(from).isDirectory()) {
      cpSync(from, to, { recursive: true, filter: (f) => !ignoredByContext(relative(root, f), patterns) });
    } else {
      mkdirSync(dirname(to), { recursive: true });
      cpSync(from, to);
    }
  }
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'isthmus-image-'));
  build = join(work, 'src');
  app = join(work, 'app');
  mkdirSync(build);
  mkdirSync(app);
  stages = dockerfileStages();
  const patterns = dockerignore();
  const [buildStage, runStage] = [stages[0] as Stage, stages.at(-1) as Stage];
  for (const { word, args, text } of buildStage.lines) {
    if (word === 'COPY') copyFromContext(args, build, patterns);
    else if (word === 'RUN' && !/^apt-get /.test(text)) {
      // As in the image, from the WORKDIR, through a shell; npm may use its cache of this machine.
      await run('sh', ['-c', text], { cwd: build, env: { ...process.env, npm_config_prefer_offline: 'true', npm_config_audit: 'false', npm_config_fund: 'false' }, timeout: 600_000, maxBuffer: 64 * 1024 * 1024 });
    }
  }
  for (const { word, args } of runStage.lines) {
    const from = args.find((a) => a.startsWith('--from='));
    if (word !== 'COPY' || !from) continue;
    const [source, dest] = args.filter((a) => !a.startsWith('--')) as [string, string];
    const inBuild = join(build, relative('/src', source));
    const to = dest === './' ? join(app, source.split('/').at(-1) as string) : join(app, dest);
    cpSync(inBuild, to, { recursive: true });
  }
}, 900_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/** The run stage's ENTRYPOINT with `args`, from /app's stand-in, with its ENV. */
async function entrypoint(args: string[]): Promise<{ stdout: string; stderr: string }> {
  const runStage = stages.at(-1) as Stage;
  const env: Record<string, string> = {};
  for (const { word, args: kv } of runStage.lines) {
    if (word !== 'ENV') continue;
    for (const pair of kv) {
      const at = pair.indexOf('=');
      if (at > 0) env[pair.slice(0, at)] = pair.slice(at + 1);
    }
  }
  const entry = JSON.parse(runStage.lines.find((l) => l.word === 'ENTRYPOINT')?.text ?? '[]') as string[];
  // ["/nodejs/bin/node", "/app/bin/isthmus.js"]: this machine's node, the replayed /app.
  const script = join(app, relative('/app', entry[1] as string));
  return run(process.execPath, [script, ...args], { cwd: app, env: { PATH: process.env.PATH ?? '', HOME: work, ...env }, timeout: 60_000 });
}

describe('the image\'s build, replayed from its Dockerfile', () => {
  it('builds from what the image copies: dist, and both native modules', () => {
    expect(existsSync(join(build, 'dist', 'cli', 'main.js'))).toBe(true);
    for (const module of ['malloc-trim.node', 'relay.node']) expect(existsSync(join(app, 'dist', 'native', module)), module).toBe(true);
  });

  it('keeps only the runtime dependencies after npm prune', () => {
    const kept = readdirSync(join(app, 'node_modules'));
    for (const dev of ['vitest', 'typescript', 'esbuild', 'playwright-core']) expect(kept, dev).not.toContain(dev);
    for (const runtime of ['undici', 'pino', 'commander', 'yaml']) expect(kept, runtime).toContain(runtime);
  });

  it('runs its CMD (--help) and the subcommands deploy/ runs, from the run stage\'s files alone', async () => {
    const runStage = stages.at(-1) as Stage;
    const cmd = JSON.parse(runStage.lines.find((l) => l.word === 'CMD')?.text ?? '[]') as string[];
    const help = await entrypoint(cmd);
    expect(help.stdout).toMatch(/Usage: isthmus/);
    for (const sub of ['federation', 'gateway', 'sidecar']) {
      expect((await entrypoint([sub, '--help'])).stdout, sub).toMatch(new RegExp(`Usage: isthmus ${sub}`));
    }
  });

  it('loads the native relay and malloc_trim from the image\'s dist', async () => {
    const probe = `const r = await import(${JSON.stringify(join(app, 'dist', 'core', 'native-relay.js'))}); const m = await import(${JSON.stringify(join(app, 'dist', 'core', 'malloc-trim.js'))});
      const relay = r.nativeRelay(); console.log(JSON.stringify({ relay: relay instanceof r.NativeRelay ? 'native' : relay.unavailable, trim: m.mallocTrimOutcome(m.mallocTrim()) }));`;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', probe], { cwd: app, timeout: 30_000 });
    const loaded = JSON.parse(stdout) as { relay: string; trim: string };
    expect(loaded.relay).toBe('native');
    expect(loaded.trim).not.toBe('unavailable');
  });
});
