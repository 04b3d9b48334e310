import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseSoakArgs, soakUsage, type SoakArgs } from './soak-args.js';
import { formatSoak, runSoak } from './soak.js';

/**
 * `npm run soak [-- --seconds 600] [--rps 20] [--host-base 145] [-o json]` (`--help`): the soak of
 * docs/reliability.md. Prints one row per process (memory and open descriptors at the start
 * and end, growth, errors logged) and the requests sent and failed; exits 1 when a request
 * failed, a process died or logged an error.
 */
let args: SoakArgs;
try {
  const parsed = parseSoakArgs(process.argv.slice(2));
  if (parsed === 'help') {
    process.stdout.write(`${soakUsage}\n`);
    process.exit(0);
  }
  args = parsed;
} catch (err) {
  process.stderr.write(`soak: ${(err as Error).message}\n`);
  process.exit(2);
}
const stateDir = mkdtempSync(join(tmpdir(), 'isthmus-soak-'));
try {
  const result = await runSoak({
    seconds: args.seconds, rps: args.rps, hostBase: args.hostBase, warmUpSeconds: args.warmUpSeconds,
    stateDir, progress: (line) => process.stderr.write(`${line}\n`),
  });
  process.stdout.write(args.output === 'json' ? `${JSON.stringify(result, null, 2)}\n` : `${formatSoak(result)}\n`);
  if (result.failed > 0 || result.rows.some((r) => !r.end || r.errors > 0)) process.exitCode = 1;
} finally {
  rmSync(stateDir, { recursive: true, force: true });
}
