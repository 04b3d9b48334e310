import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { proxyMallocArenaMax } from '../src/core/malloc-arenas.js';
import { dockerfileStages, dockerignore } from './helpers/dockerfile.js';
import { root } from './helpers/manifests.js';

/*
 * No container engine runs here, so the Dockerfile cannot be built in the tests. These checks
 * catch what breaks it without a build (dockerfile-build.test.ts replays its steps): a COPY of a path that does not exist or that
 * .dockerignore leaves out of the context, a final stage that runs as root or lacks what
 * bin/isthmus.js needs at run time.
 */

const ignored = dockerignore();
const stages = dockerfileStages();
const final = stages.at(-1);

describe('Dockerfile', () => {
  it('is multi-stage: a Node 20 build stage, then a distroless or slim Node 20 run stage', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    expect(stages[0]?.from).toMatch(/^node:20/);
    expect(final?.from).toMatch(/distroless\/nodejs20|node:20-.*slim/);
  });

  it('copies from the build context only paths that exist and that .dockerignore keeps', () => {
    const copies = stages.flatMap((s) => s.lines).filter((i) => i.word === 'COPY' && !i.args.some((a) => a.startsWith('--from')));
    expect(copies.length).toBeGreaterThan(0);
    for (const { args } of copies) {
      for (const source of args.slice(0, -1)) {
        expect(existsSync(join(root, source)), source).toBe(true);
        expect(ignored.some((pattern) => source === pattern || source.startsWith(`${pattern}/`)), `${source} is in .dockerignore`).toBe(false);
      }
    }
    for (const pattern of ['node_modules', 'dist', '.git']) expect(ignored).toContain(pattern);
  });

  it('runs bin/isthmus.js as a non-root user, with everything it loads at run time', () => {
    const user = final?.lines.filter((i) => i.word === 'USER').at(-1)?.args[0] ?? 'root';
    expect(user).not.toMatch(/^(root|0)(:|$)/);
    expect(final?.lines.find((i) => i.word === 'ENTRYPOINT')?.args.join(' ')).toContain('/app/bin/isthmus.js');
    const copied = final?.lines.filter((i) => i.word === 'COPY').map((i) => i.args.at(-2)) ?? [];
    // bin/isthmus.js loads dist/; version.ts reads package.json; the dashboard serves its assets.
    for (const path of ['package.json', 'node_modules', 'bin', 'dist', 'src/dashboard/assets']) expect(copied).toContain(`/src/${path}`);
  });

  it('builds the malloc_trim binding: a C compiler and native/ in the build stage before npm run build', () => {
    const build = stages[0]?.lines ?? [];
    const runIndex = (pattern: RegExp) => build.findIndex((i) => i.word === 'RUN' && pattern.test(i.args.join(' ')));
    const compiler = runIndex(/apt-get install .*\bgcc\b/);
    const copyNative = build.findIndex((i) => i.word === 'COPY' && i.args[0] === 'native');
    const npmBuild = runIndex(/npm run build/);
    expect(compiler, 'apt-get install gcc in the build stage').toBeGreaterThanOrEqual(0);
    expect(copyNative, 'COPY native in the build stage').toBeGreaterThanOrEqual(0);
    expect(npmBuild).toBeGreaterThan(Math.max(compiler, copyNative));
  });

  it('starts every process of the image with the proxies\' number of malloc arenas', () => {
    const env = final?.lines.filter((i) => i.word === 'ENV').map((i) => i.args.join(' ')) ?? [];
    expect(env).toContain(`MALLOC_ARENA_MAX=${proxyMallocArenaMax}`);
  });
});
