import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { countLines } from './line-count.js';

const dir = mkdtempSync(join(tmpdir(), 'isthmus-line-count-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test.each([
  ['empty', '', 0],
  ['one line', 'a\n', 1],
  ['no newline at the end', 'a\nb', 1],
  // Across the 1 MiB chunks it reads in, and with stale bytes of a longer chunk after a short last read.
  ['3 MiB of 100-byte lines', `${'x'.repeat(99)}\n`.repeat(3 * 10_486), 3 * 10_486],
  ['a long chunk then a short one', `${'y'.repeat(1 << 20)}\n\n`, 2],
])('%s: %i lines', (name, text, lines) => {
  const file = join(dir, name.replace(/\W+/g, '-'));
  writeFileSync(file, text);
  expect(countLines(file)).toBe(lines);
});

test('a file that cannot be read counts 0', () => {
  expect(countLines(join(dir, 'missing'))).toBe(0);
});
