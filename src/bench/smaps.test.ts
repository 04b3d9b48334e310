import { readFileSync, realpathSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { parseProcStatus } from './loaded-modules.js';
import { readRssByMapping, rssByMapping } from './smaps.js';

const mapping = (range: string, inode: number, path: string, rssKb: number) => [
  `${range} r-xp 00000000 fe:00 ${inode}${path ? `                     ${path}` : ''}`,
  'Size:                 64 kB',
  `Rss:                  ${rssKb} kB`,
  `Pss:                  ${Math.floor(rssKb / 2)} kB`,
  `Private_Clean:        ${inode === 0 ? 0 : 10} kB`,
  `Private_Dirty:        ${inode === 0 ? rssKb : 0} kB`,
  'VmFlags: rd ex mr mw me',
].join('\n');

describe('where a process\'s RSS is (smaps)', () => {
  test('each mapping\'s Rss goes to the node binary, other files, the malloc heap or anonymous memory', () => {
    const text = [
      mapping('5600-5700', 260386, '/usr/bin/node', 30_000),
      mapping('5700-5800', 260386, '/usr/bin/node', 2000),
      mapping('5800-5900', 0, '', 700),
      mapping('5900-5a00', 0, '[heap]', 9000),
      mapping('7f00-7f10', 0, '', 12_000),
      mapping('7f10-7f20', 1234, '/usr/lib/x86_64-linux-gnu/libc.so.6', 1500),
      mapping('7f20-7f30', 0, '[stack]', 130),
      mapping('7f30-7f40', 0, '[vdso]', 8),
    ].join('\n');
    expect(rssByMapping(text, '/usr/bin/node')).toEqual({
      nodeBinaryKb: 32_000, otherFilesKb: 1500, mallocHeapKb: 9000, anonymousKb: 12_838,
      // Anonymous mappings all private here, each file mapping 10 kB of it; PSS half of each RSS (rounded down).
      privateKb: 700 + 9000 + 12_000 + 130 + 8 + 3 * 10, pssKb: 15_000 + 1000 + 350 + 4500 + 6000 + 750 + 65 + 4,
    });
  });

  test('this process: the node binary holds pages, and the parts add up to its RSS', () => {
    const parts = readRssByMapping(process.pid, realpathSync(process.execPath));
    const { rssKb } = parseProcStatus(readFileSync('/proc/self/status', 'utf8'));
    expect(parts.nodeBinaryKb).toBeGreaterThan(10_000);
    expect(parts.anonymousKb).toBeGreaterThan(0);
    const sum = parts.nodeBinaryKb + parts.otherFilesKb + parts.mallocHeapKb + parts.anonymousKb;
    // Two reads a moment apart: the process may touch a few pages in between.
    expect(Math.abs(sum - rssKb)).toBeLessThan(rssKb * 0.05);
    // Private pages and PSS lie between nothing and the RSS; the heap is private to this process.
    expect(parts.privateKb).toBeGreaterThan(parts.mallocHeapKb * 0.5);
    expect(parts.privateKb).toBeLessThanOrEqual(parts.pssKb);
    expect(parts.pssKb).toBeLessThanOrEqual(sum);
  });
});
