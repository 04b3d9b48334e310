import { closeSync, openSync, readSync } from 'node:fs';

/** The lines of a file (its newline bytes), read in chunks: a bench's logs can run to hundreds of megabytes. 0 for a file that cannot be read. */
export function countLines(file: string): number {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch {
    return 0;
  }
  const chunk = Buffer.allocUnsafe(1 << 20);
  let lines = 0;
  try {
    for (let read = readSync(fd, chunk); read > 0; read = readSync(fd, chunk)) {
      for (let at = chunk.indexOf(10); at !== -1 && at < read; at = chunk.indexOf(10, at + 1)) lines += 1;
    }
  } finally {
    closeSync(fd);
  }
  return lines;
}
