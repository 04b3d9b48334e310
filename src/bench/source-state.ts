import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** Which code was measured: the commit, and whether src/ held uncommitted changes (outside the bench). */
export interface SourceState {
  commit: string;
  /** Paths under src/ (outside src/bench/) that differ from the commit. */
  uncommitted: string[];
}

const root = fileURLToPath(new URL('../../', import.meta.url));

export function sourceState(): SourceState | undefined {
  try {
    const git = (...args: string[]) => execFileSync('git', args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const commit = git('rev-parse', '--short', 'HEAD').trim();
    const uncommitted = git('status', '--porcelain', '--', 'src')
      .split('\n').map((l) => l.slice(3).trim()).filter((p) => p && !p.startsWith('src/bench/'));
    return { commit, uncommitted };
  } catch {
    return undefined; // not a git checkout (an npm tarball): nothing to say
  }
}
