import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { formatSoak, runSoak } from './soak.js';

/**
 * `npm run soak [-- --seconds 600] [--rps 20] [--host-base 145] [-o json]`: the soak of
 * docs/reliability.md. Prints one row per process (memory and open descriptors at the start
 * and end, growth, errors logged) and the requests sent and failed; exits 1 when a request
 * failed, a process died or logged an error.
 */
const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '600' },
    rps: { type: 'string', default: '20' },
    'host-base': { type: 'string', default: '145' },
    'warm-up': { type: 'string', default: '15' },
    output: { type: 'string', short: 'o', default: 'table' },
  },
});
const stateDir = mkdtempSync(join(tmpdir(), 'isthmus-soak-'));
try {
  const result = await runSoak({
    seconds: Number(args.seconds), rps: Number(args.rps), hostBase: Number(args['host-base']), warmUpSeconds: Number(args['warm-up']),
    stateDir, progress: (line) => process.stderr.write(`${line}\n`),
  });
  process.stdout.write(args.output === 'json' ? `${JSON.stringify(result, null, 2)}\n` : `${formatSoak(result)}\n`);
  if (result.failed > 0 || result.rows.some((r) => !r.end || r.errors > 0)) process.exitCode = 1;
} finally {
  rmSync(stateDir, { recursive: true, force: true });
}
