import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { loadMallocTrim, mallocTrim, mallocTrimModule, mallocTrimOutcome } from './malloc-trim.js';

const dir = mkdtempSync(join(tmpdir(), 'isthmus-malloc-trim-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('malloc trim', () => {
  it('is built by npm run build and runs here', () => {
    const result = mallocTrim();
    expect(result, `${mallocTrimModule} should be built by npm run build (scripts/native.mjs)`).toHaveProperty('released');
    expect(['released', 'nothing to release']).toContain(mallocTrimOutcome(result));
  });

  it('gives back the pages glibc keeps after Buffers are freed', () => {
    // In a fresh process, so that nothing else in it allocates between the readings: 64 MB of
    // 16 KiB Buffers (malloc'd from the heap, below glibc's mmap threshold), one in sixteen kept
    // so that the heap cannot shrink from its top, the rest collected. They are made inside a
    // function: an array held in a variable of the module's own code can stay reachable from its
    // suspended frame after the variable is cleared, and then nothing is freed at all.
    const script = `
      import { readFileSync } from 'node:fs';
      import { mallocTrim } from ${JSON.stringify(pathToFileURL(join(import.meta.dirname, '..', '..', 'dist', 'core', 'malloc-trim.js')).href)};
      const rss = () => Number(/^VmRSS:\\s+(\\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'))[1]) * 1024;
      const start = rss();
      function fill() {
        const kept = [];
        const dropped = [];
        for (let i = 0; i < 4096; i++) {
          const b = Buffer.allocUnsafeSlow(16 * 1024);
          b.fill(i);
          (i % 16 === 0 ? kept : dropped).push(b);
        }
        return kept;
      }
      const kept = fill();
      const grown = rss();
      gc();
      await new Promise((r) => setTimeout(r, 300));
      gc();
      const freed = rss();
      const result = mallocTrim();
      const trimmed = rss();
      process.stdout.write(JSON.stringify({ start, grown, freed, trimmed, result, kept: kept.length }));
    `;
    const run = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], { encoding: 'utf8', env: { ...process.env, MALLOC_ARENA_MAX: '2' } });
    expect(run.status, run.stderr).toBe(0);
    const r = JSON.parse(run.stdout) as { start: number; grown: number; freed: number; trimmed: number; result: unknown };
    const MB = 1024 * 1024;
    expect(r.result).toEqual({ released: true });
    expect(r.grown - r.start).toBeGreaterThan(48 * MB);
    // Without the trim glibc keeps the freed Buffers' pages: this is what the trim is for.
    expect(r.freed - r.start).toBeGreaterThan(40 * MB);
    // 60 of the 64 MB were freed; the trim returns most of them.
    expect(r.freed - r.trimmed).toBeGreaterThan(40 * MB);
  });

  it('says which file is missing and what to do', () => {
    const result = loadMallocTrim(join(dir, 'absent.node'))();
    expect(result).toEqual({ unavailable: expect.stringContaining(join(dir, 'absent.node')) });
    expect(mallocTrimOutcome(result)).toBe('unavailable');
    expect((result as { unavailable: string }).unavailable).toMatch(/install gcc, then npm run build/);
  });

  it('says so when the file is not a native module', () => {
    const bogus = join(dir, 'bogus.node');
    writeFileSync(bogus, 'not an ELF file');
    const result = loadMallocTrim(bogus)();
    expect((result as { unavailable: string }).unavailable).toMatch(new RegExp(`^${bogus.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} could not be loaded \\(.+\\); rebuild it with npm run build$`));
  });
});
