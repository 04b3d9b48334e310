import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, onTestFinished, test } from 'vitest';
import { checkDirectory, ensureDirectory, readUserFile, writeTextAtomic, writeTextAtomicAsync } from './user-paths.js';

/** A directory of the running test's own, removed when it finishes. */
const scratch = () => {
  const dir = mkdtempSync(join(tmpdir(), 'isthmus-user-paths-'));
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
};

test.each([
  ['/proc/isthmus-nope', 'ISTHMUS_ERR_CONFIG_PATH_UNUSABLE', /accepts no new files/],
  ['/proc/isthmus-nope/a/b', 'ISTHMUS_ERR_CONFIG_PATH_UNUSABLE', /accepts no new files/],
  ['/proc', 'ISTHMUS_ERR_CONFIG_PATH_UNUSABLE', /is a directory files cannot be written in/],
  ['/sys/isthmus-nope', 'ISTHMUS_ERR_CONFIG_PATH_UNUSABLE', /permission denied/],
])('ensureDirectory(%s) is refused at once with %s', (path, code, message) => {
  // Node's recursive mkdir never returns for these; ours must throw.
  expect(() => ensureDirectory(path, '--out')).toThrow(expect.objectContaining({ code, message: expect.stringMatching(message) }));
  expect(() => checkDirectory(path, '--out')).toThrow(expect.objectContaining({ code }));
});

test('a file where a directory is expected, or below it, is refused and left alone', () => {
  const dir = scratch();
  const file = join(dir, 'f');
  writeFileSync(file, 'x');
  expect(() => ensureDirectory(file, '--out')).toThrow(/a file of that name exists/);
  expect(() => ensureDirectory(join(file, 'sub'), '--out')).toThrow(/a part of the path is a file/);
  expect(statSync(file).isFile()).toBe(true);
});

test('missing parents are created with the mode asked for; checkDirectory creates nothing; the probe leaves nothing', () => {
  const dir = scratch();
  const target = join(dir, 'a', 'b', 'c');
  checkDirectory(target, '--out');
  expect(existsSync(join(dir, 'a'))).toBe(false);
  expect(ensureDirectory(target, '--out', 0o700)).toBe(target);
  expect(statSync(target).mode & 0o777).toBe(0o700);
  expect(ensureDirectory(target, '--out')).toBe(target); // exists: fine
  expect(readdirSync(target)).toEqual([]);
  expect(readdirSync(dir)).toEqual(['a']);
});

test('readUserFile names a directory, a missing file and a file below a file', () => {
  const dir = scratch();
  writeFileSync(join(dir, 'f'), 'hello');
  expect(readUserFile(join(dir, 'f'), '--config')).toBe('hello');
  expect(() => readUserFile(dir, '--config')).toThrow(expect.objectContaining({ code: 'ISTHMUS_ERR_CONFIG_UNREADABLE', message: expect.stringMatching(/is a directory, and a file is needed/) }));
  expect(() => readUserFile(join(dir, 'nope'), '--config')).toThrow(/does not exist/);
  expect(() => readUserFile(join(dir, 'f', 'g'), '--config')).toThrow(/a part of the path is a file/);
});

test.each([
  ['writeTextAtomic', async (path: string, text: string) => writeTextAtomic(path, text)],
  ['writeTextAtomicAsync', writeTextAtomicAsync],
])('%s replaces the whole file, mode 0600, and leaves no temp file', async (_name, write) => {
  const dir = scratch();
  const path = join(dir, 'catalog.json');
  writeFileSync(path, 'old content that is longer than the new\n', { mode: 0o644 });
  await write(path, '{"revision":2}\n');
  expect(readFileSync(path, 'utf8')).toBe('{"revision":2}\n');
  expect(statSync(path).mode & 0o777).toBe(0o600);
  expect(readdirSync(dir)).toEqual(['catalog.json']);
});

test('writeTextAtomicAsync into a directory that is gone rejects, naming the file', async () => {
  const dir = scratch();
  await expect(writeTextAtomicAsync(join(dir, 'gone', 'catalog.json'), 'x')).rejects.toThrow(/catalog\.json/);
});
