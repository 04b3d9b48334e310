/**
 * Directories and files a user names, made usable or refused at once with a clear error.
 *
 * Node 20's `mkdirSync(dir, { recursive: true })` loops forever when a parent exists but refuses
 * new entries with ENOENT (`/proc/nope`): it keeps climbing to the parent and back. So directories
 * are made here one level at a time, each step bounded by the number of path components.
 */
import { closeSync, fsyncSync, mkdirSync, mkdtempSync, openSync, readFileSync, renameSync, rmdirSync, statSync, writeSync, type Stats } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { IsthmusError } from './errors.js';
import { describePathProblem, type PathUse } from './path-problem.js';

const errnoOf = (err: unknown): string | undefined => (err as NodeJS.ErrnoException | undefined)?.code;

export function pathError(err: unknown, path: string, use: PathUse, given: string): IsthmusError {
  const code = use === 'read-file' ? 'ISTHMUS_ERR_CONFIG_UNREADABLE' : 'ISTHMUS_ERR_CONFIG_PATH_UNUSABLE';
  return new IsthmusError(code, describePathProblem({ path, given, use, errno: errnoOf(err) }), { cause: err, details: { path, use } });
}

function statOrUndefined(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return undefined;
    throw err;
  }
}

/** Refuses (without creating anything) a directory that cannot be made or written; returns the directories still to create, outermost first. */
function plan(target: string, given: string): string[] {
  const missing: string[] = [];
  let current = target;
  try {
    for (let stat = statOrUndefined(current); stat === undefined; stat = statOrUndefined(current)) {
      missing.unshift(current);
      if (dirname(current) === current) break;
      current = dirname(current);
    }
    const stat = statSync(current);
    if (!stat.isDirectory()) throw Object.assign(new Error(`${current} is not a directory`), { code: current === target ? 'EEXIST' : 'ENOTDIR' });
  } catch (err) {
    throw pathError(err, target, 'create-directory', given);
  }
  // The nearest directory that exists must take a new entry: /proc, /sys and read-only mounts do not.
  try {
    rmdirSync(mkdtempSync(join(current, '.isthmus-probe-')));
  } catch (err) {
    throw pathError(err, target, missing.length === 0 ? 'write-in-directory' : 'create-directory', given);
  }
  return missing;
}

/** Checks that `dir` exists and is writable, or could be created; creates nothing. */
export function checkDirectory(dir: string, given: string): void {
  plan(resolve(dir), given);
}

/** Creates `dir` (and its parents) unless it exists, and checks files can be written in it; returns it resolved. */
export function ensureDirectory(dir: string, given: string, mode = 0o755): string {
  const target = resolve(dir);
  for (const step of plan(target, given)) {
    try {
      mkdirSync(step, { mode });
    } catch (err) {
      if (errnoOf(err) === 'EEXIST' && statOrUndefined(step)?.isDirectory()) continue; // made by someone else meanwhile
      throw pathError(err, target, 'create-directory', given);
    }
  }
  return target;
}

/** Reads a file the user named; a directory, a missing file or a refused read is one clear error. */
export function readUserFile(path: string, given: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw pathError(err, resolve(path), 'read-file', given);
  }
}

/**
 * Temp file, fsync, rename: a crash leaves the old file or the new one, never half of one.
 * Mode 0600 from the moment the file exists: it may hold a private key.
 */
export function writeTextAtomic(path: string, text: string): void {
  const temp = `${path}.${process.pid}.tmp`;
  const fd = openSync(temp, 'w', 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temp, path);
}

/**
 * `writeTextAtomic` off the event loop: the write and the fsync run on libuv's thread pool, so a
 * slow disk does not hold up a proxy's requests. Callers that write one file more than once
 * must not run two at a time (they share the temp file).
 */
export async function writeTextAtomicAsync(path: string, text: string): Promise<void> {
  const temp = `${path}.${process.pid}.tmp`;
  const file = await open(temp, 'w', 0o600);
  try {
    await file.writeFile(text);
    await file.sync();
  } finally {
    await file.close();
  }
  await rename(temp, path);
}
