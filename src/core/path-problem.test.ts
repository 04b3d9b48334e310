import { expect, test } from 'vitest';
import { describePathProblem, type PathUse } from './path-problem.js';

const cases: [PathUse, string | undefined, string][] = [
  ['create-directory', 'ENOENT', '--out /x cannot be created as a directory: the file system there accepts no new files or directories (as /proc and /sys do); choose a path on an ordinary writable disk.'],
  ['read-file', 'ENOENT', '--out /x cannot be read: it does not exist; check the path.'],
  ['create-directory', 'ENOTDIR', '--out /x cannot be created as a directory: a part of the path is a file, not a directory; give a path whose parents are directories.'],
  ['create-directory', 'EEXIST', '--out /x cannot be created as a directory: a file of that name exists, and a directory is needed; give a directory, or move the file away.'],
  ['read-file', 'EISDIR', '--out /x cannot be read: it is a directory, and a file is needed; give the path of the file itself.'],
  ['write-in-directory', 'EACCES', '--out /x is a directory files cannot be written in: permission denied; choose a path on an ordinary writable disk, or change the owner or mode of the directory.'],
  ['write-file', 'EPERM', '--out /x cannot be written: permission denied; choose a path on an ordinary writable disk, or change the owner or mode of the directory.'],
  ['write-file', 'EROFS', '--out /x cannot be written: the file system is read-only; choose a path on an ordinary writable disk.'],
  ['write-file', 'ENOSPC', '--out /x cannot be written: the disk is full; free some space or choose another disk.'],
  ['write-file', 'EDQUOT', '--out /x cannot be written: the disk is full; free some space or choose another disk.'],
  ['create-directory', 'ENAMETOOLONG', '--out /x cannot be created as a directory: the path is too long; choose a shorter path.'],
  ['read-file', 'ELOOP', '--out /x cannot be read: it has too many symbolic links in a loop; fix the links or give another path.'],
  ['write-file', 'EIO', '--out /x cannot be written: the file system answered EIO; choose a path on an ordinary writable disk.'],
  ['write-file', undefined, '--out /x cannot be written: the file system refused it; choose a path on an ordinary writable disk.'],
];

test.each(cases)('%s refused with %s', (use, errno, message) => {
  expect(describePathProblem({ path: '/x', given: '--out', use, errno })).toBe(message);
});
