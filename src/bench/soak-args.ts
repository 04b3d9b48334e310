import { parseArgs } from 'node:util';
import { IsthmusError } from '../core/errors.js';
import { integerFlag } from './args.js';

export const soakUsage = `usage: npm run soak [-- options]   (node dist/bench/soak-run.js [options] after a build)
A two-cluster dev mesh with one process per proxy, under steady traffic for --seconds: prints each
process's memory and open descriptors at the start and the end, their growth, the errors it
logged, and the requests sent and failed. Exits 1 when a request failed or a process died or
logged an error, 2 on a bad flag (docs/reliability.md).
  --seconds <n>     how long the traffic runs after the warm-up (default 600; 10..86400)
  --rps <n>         requests a second from each cluster's client sidecar (default 20; 1..500)
  --warm-up <n>     seconds of traffic before the first reading (default 15; 0..600)
  --host-base <n>   the clusters on 127.0.<n>.1 and 127.0.<n+1>.1 (default 145; 1..250)
  -o, --output table|json
  -h, --help`;

export interface SoakArgs {
  seconds: number;
  rps: number;
  warmUpSeconds: number;
  hostBase: number;
  output: 'table' | 'json';
}

const invalid = (message: string) => new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `${message}\n${soakUsage}`);

/** The soak's flags, each bounded; throws ISTHMUS_ERR_CONFIG_INVALID naming the flag, `help` when asked. */
export function parseSoakArgs(argv: string[]): SoakArgs | 'help' {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      options: {
        seconds: { type: 'string', default: '600' },
        rps: { type: 'string', default: '20' },
        'warm-up': { type: 'string', default: '15' },
        'host-base': { type: 'string', default: '145' },
        output: { type: 'string', short: 'o', default: 'table' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (err) {
    throw invalid((err as Error).message);
  }
  if (values.help) return 'help';
  const bounded = (name: 'seconds' | 'rps' | 'warm-up' | 'host-base', min: number, max: number) => integerFlag(name, values[name], min, max, invalid);
  if (values.output !== 'table' && values.output !== 'json') throw invalid(`--output must be "table" or "json", not "${values.output}"`);
  return { seconds: bounded('seconds', 10, 86_400), rps: bounded('rps', 1, 500), warmUpSeconds: bounded('warm-up', 0, 600), hostBase: bounded('host-base', 1, 250), output: values.output };
}
