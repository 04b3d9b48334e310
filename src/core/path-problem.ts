/**
 * What to tell a user when a path they gave (an --out or --state-dir directory, a --config file,
 * a registry file) cannot be used. Pure: the caller passes the errno code the file system gave.
 * Every message names the path and says what to do, because "ENOENT" alone helps nobody.
 */
export type PathUse = 'create-directory' | 'write-in-directory' | 'read-file' | 'write-file';

export interface PathProblem {
  /** The path as the user gave it (resolved), e.g. /proc/nope. */
  path: string;
  /** Where it came from, e.g. "--out" or "stateDir in sidecar.yaml". */
  given: string;
  use: PathUse;
  /** errno code, e.g. ENOENT; undefined when the code is unknown. */
  errno: string | undefined;
}

const intent: Record<PathUse, string> = {
  'create-directory': 'cannot be created as a directory',
  'write-in-directory': 'is a directory files cannot be written in',
  'read-file': 'cannot be read',
  'write-file': 'cannot be written',
};

function reason(use: PathUse, errno: string | undefined): { why: string; todo: string } {
  const elsewhere = 'choose a path on an ordinary writable disk';
  switch (errno) {
    case 'ENOENT':
      return use === 'read-file'
        ? { why: 'it does not exist', todo: 'check the path' }
        // mkdir answers ENOENT under a parent that exists only in file systems such as /proc.
        : { why: 'the file system there accepts no new files or directories (as /proc and /sys do)', todo: elsewhere };
    case 'ENOTDIR':
      return { why: 'a part of the path is a file, not a directory', todo: 'give a path whose parents are directories' };
    case 'EEXIST':
      return { why: 'a file of that name exists, and a directory is needed', todo: 'give a directory, or move the file away' };
    case 'EISDIR':
      return { why: 'it is a directory, and a file is needed', todo: 'give the path of the file itself' };
    case 'EACCES':
    case 'EPERM':
      return { why: 'permission denied', todo: `${elsewhere}, or change the owner or mode of the directory` };
    case 'EROFS':
      return { why: 'the file system is read-only', todo: elsewhere };
    case 'ENOSPC':
    case 'EDQUOT':
      return { why: 'the disk is full', todo: 'free some space or choose another disk' };
    case 'ENAMETOOLONG':
      return { why: 'the path is too long', todo: 'choose a shorter path' };
    case 'ELOOP':
      return { why: 'it has too many symbolic links in a loop', todo: 'fix the links or give another path' };
    default:
      return { why: errno === undefined ? 'the file system refused it' : `the file system answered ${errno}`, todo: elsewhere };
  }
}

/** Only the why of describePathProblem ("it does not exist"), for a message that says the rest itself. */
export function pathProblemReason(use: PathUse, errno: string | undefined): string {
  return reason(use, errno).why;
}

export function describePathProblem(problem: PathProblem): string {
  const { why, todo } = reason(problem.use, problem.errno);
  return `${problem.given} ${problem.path} ${intent[problem.use]}: ${why}; ${todo}.`;
}
