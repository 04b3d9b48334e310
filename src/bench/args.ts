import { parseArgs } from 'node:util';
import { describeError, IsthmusError } from '../core/errors.js';
import { isRelayKind, type RelayKind } from '../core/native-relay.js';
import type { MeshMode } from './bench-mesh.js';

export interface BenchArgs {
  rates: number[];
  seconds: number;
  warmup: number;
  output: 'table' | 'json';
  mesh: MeshMode;
  /** `dev up --processes`: every sidecar and gateway its own process (child mode only; on by default, as the peers run). */
  processes: boolean;
  /** `--quick`: one rate (1000/s), short points; the whole run in well under 3 minutes. */
  quick: boolean;
  hostBase: number;
  connections: number;
  /** Write a CPU profile of the mesh process (child mode) into this directory. */
  cpuProf: string | undefined;
  /** Cold start: this rate, cross-cluster, on the fresh chains before anything warms them (0: skip). */
  coldRate: number;
  coldSeconds: number;
  /** Only the cold-start points: the mesh and the peers are started, measured cold, and stopped. */
  coldOnly: boolean;
  /** Scheduling priority for every process measured (both chains, etcd, the generator); 0 leaves it alone. */
  nice: number;
  /** Both chains write a line per request: ours `dev up --access-log`, the peer's nginx a JSON access log on both sides. */
  accessLog: boolean;
  /** Our sidecars carry HTTP/1.1 requests between them as HTTP/2 streams (`dev up --upgrade-to-http2`). */
  upgradeToHttp2: boolean;
  /** What copies bytes in our gateways (`dev up --gateway-relay`): native by default, node for a comparison. */
  gatewayRelay: RelayKind;
}

export const usage = `usage: node dist/bench/run.js [options]   (npm run bench -- [options])
Runs our chains and the peer chain (nginx → HAProxy → nginx) interleaved, each chain's app asked directly
just before them (its baseline, which "added" figures subtract), and prints ours/peer ratios.
  --rates <list>        fixed arrival rates in requests/s, comma-separated (default 1000,2000; each 1..5000, at most 6)
  --seconds <n>         measured seconds per point (default 10; 1..60)
  --warmup <n>          unmeasured seconds at the same rate before each point (default 2; 0..10)
  --quick               --rates 1000 --seconds 5 --warmup 2 unless given: the whole run in under 3 minutes
  --mesh child|in-process
                        run the mesh in its own process (default) or inside this one (CPU then includes the generator)
  --processes [true|false], --no-processes
                        child mode: every sidecar, gateway, federation service and sample app in a process of
                        its own (isthmus dev up --processes), one process per proxy as the peers run (default);
                        --no-processes: the whole mesh and the sample apps in dev up's one process
  --host-base <n>       dev mesh clusters on 127.0.<n>.1, 127.0.<n+1>.1 (default 60)
  --connections <n>     keep-alive connections per first hop (default 128; 1..1024)
  --cold-rate <n>       cold start: requests/s sent cross-cluster to each fresh chain before any warm-up,
                        measured from the first request; no probe crosses ours before it, only the
                        request dev up's own readiness check sent (default 500; 0 skips it)
  --cold-seconds <n>    how long the cold-start point lasts (default 5; 1..30)
  --cold-only           measure only the cold start (no priming, no points at --rates): about a minute
  --nice <n>            as root on a shared machine: give every measured process (ours, the peers', etcd,
                        the generator) nice <n> and the same for their scheduling groups, e.g. --nice=-15 (default 0: unchanged)
  --access-log          both chains write a line per request, to see what logging costs: every sidecar of ours
                        (isthmus dev up --access-log, JSON lines) and the peer's nginx outbound and inbounds
                        (a JSON log_format with the same kind of fields); neither gateway logs (both splice TLS)
  --upgrade-to-http2    our sidecars carry the generator's HTTP/1.1 requests between them as HTTP/2 streams
                        (isthmus dev up --upgrade-to-http2); the peer chain is unchanged
  --gateway-relay R     native (default) or node: what copies bytes in our gateways (dev up --gateway-relay),
                        node to compare with the relay in JavaScript
  --cpu-prof <dir>      write a V8 CPU profile of the mesh process into <dir> (child mode; open it in Chrome DevTools)
  -o, --output table|json`;

/** Worst case the bench will agree to run, so a typo cannot keep a shared machine busy for an hour. */
const maxTotalSeconds = 600;
/** For each of the two chains: its app's baseline, then ours and the peers'. */
const scenarioCount = 6;

const invalid = (message: string) => new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `${message}\n${usage}`);

/** A bench script's integer flag within [min, max]; otherwise the error `invalid` makes of a message naming the flag. */
export function integerFlag(name: string, value: string | undefined, min: number, max: number, invalid: (message: string) => Error): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) throw invalid(`--${name} must be an integer from ${min} to ${max}, not "${value}"`);
  return n;
}

const integer = (name: string, value: string, min: number, max: number) => integerFlag(name, value, min, max, invalid);

/** What the open-loop companions (`bench:grpc`, `bench:floor`) measure each point with. */
export interface PointFlags { rate: number; seconds: number; warmup: number; rounds: number }

/** Pure. --rate (1..5000), --seconds (1..60), --warmup (0..10) and --rounds (1..maxRounds), read as integerFlag reads them. */
export function pointFlags(v: Record<'rate' | 'seconds' | 'warmup' | 'rounds', string>, maxRounds: number, invalid: (message: string) => Error): PointFlags {
  return {
    rate: integerFlag('rate', v.rate, 1, 5000, invalid),
    seconds: integerFlag('seconds', v.seconds, 1, 60, invalid),
    warmup: integerFlag('warmup', v.warmup, 0, 10, invalid),
    rounds: integerFlag('rounds', v.rounds, 1, maxRounds, invalid),
  };
}

/**
 * `--processes` is a boolean that also takes `true`/`false` and has a `--no-` form; node 20's
 * parseArgs knows neither, so they become `--processes=<value>` first.
 */
function normaliseProcessesFlag(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i] as string;
    if (arg === '--no-processes') out.push('--processes=false');
    else if (arg === '--processes') {
      const next = argv[i + 1];
      if (next === 'true' || next === 'false') {
        out.push(`--processes=${next}`);
        i += 1;
      } else out.push('--processes=true');
    } else out.push(arg);
  }
  return out;
}

/** Parses and bounds the flags; throws ISTHMUS_ERR_CONFIG_INVALID naming the flag. `help` when asked. */
export function parseBenchArgs(argv: string[]): BenchArgs | 'help' {
  let values;
  try {
    ({ values } = parseArgs({
      args: normaliseProcessesFlag(argv),
      strict: true,
      options: {
        rates: { type: 'string' },
        seconds: { type: 'string' },
        warmup: { type: 'string' },
        quick: { type: 'boolean', default: false },
        mesh: { type: 'string', default: 'child' },
        processes: { type: 'string' },
        'host-base': { type: 'string', default: '60' },
        connections: { type: 'string', default: '128' },
        output: { type: 'string', short: 'o', default: 'table' },
        'cpu-prof': { type: 'string' },
        'cold-rate': { type: 'string', default: '500' },
        'cold-seconds': { type: 'string', default: '5' },
        'cold-only': { type: 'boolean', default: false },
        nice: { type: 'string', default: '0' },
        'access-log': { type: 'boolean', default: false },
        'upgrade-to-http2': { type: 'boolean', default: false },
        'gateway-relay': { type: 'string', default: 'native' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (err) {
    throw invalid((err as Error).message);
  }
  if (values.help) return 'help';
  const quick = values.quick;
  const rates = (values.rates ?? (quick ? '1000' : '1000,2000')).split(',').map((r) => r.trim()).filter(Boolean).map((r) => integer('rates', r, 1, 5000));
  if (rates.length === 0 || rates.length > 6) throw invalid('--rates takes 1 to 6 rates');
  if (values.output !== 'table' && values.output !== 'json') throw invalid(`--output must be "table" or "json", not "${values.output}"`);
  if (values.mesh !== 'child' && values.mesh !== 'in-process') throw invalid(`--mesh must be "child" or "in-process", not "${values.mesh}"`);
  if (!isRelayKind(values['gateway-relay'])) throw invalid(`--gateway-relay must be "native" or "node", not "${values['gateway-relay']}"`);
  if (values.processes !== undefined && values.processes !== 'true' && values.processes !== 'false') throw invalid(`--processes takes true or false, not "${values.processes}"`);
  if (values.processes === 'true' && values.mesh === 'in-process') throw invalid('--processes needs --mesh child: in-process, the mesh runs inside the bench');
  const args: BenchArgs = {
    rates,
    seconds: integer('seconds', values.seconds ?? (quick ? '5' : '10'), 1, 60),
    warmup: integer('warmup', values.warmup ?? '2', 0, 10),
    quick,
    output: values.output,
    mesh: values.mesh,
    processes: values.mesh === 'child' && values.processes !== 'false',
    hostBase: integer('host-base', values['host-base'], 1, 250),
    connections: integer('connections', values.connections, 1, 1024),
    cpuProf: values['cpu-prof'],
    coldRate: integer('cold-rate', values['cold-rate'], 0, 5000),
    coldSeconds: integer('cold-seconds', values['cold-seconds'], 1, 30),
    coldOnly: values['cold-only'],
    nice: integer('nice', values.nice, -20, 19),
    accessLog: values['access-log'],
    upgradeToHttp2: values['upgrade-to-http2'],
    gatewayRelay: values['gateway-relay'],
  };
  if (args.coldOnly && args.coldRate === 0) throw invalid('--cold-only needs a --cold-rate above 0');
  if (args.cpuProf !== undefined && args.mesh !== 'child') throw invalid('--cpu-prof needs --mesh child: in-process, profile the bench itself with node --cpu-prof');
  const total = rates.length * scenarioCount * (args.seconds + args.warmup + 1) + (args.coldRate > 0 ? 2 * args.coldSeconds : 0);
  if (total > maxTotalSeconds) throw invalid(`that is about ${total} s of load; keep rates × ${scenarioCount} scenarios × (seconds + warmup) under ${maxTotalSeconds} s`);
  return args;
}

/**
 * A bench script's flags read, or what to exit with: 0 after printing `usage` for --help, 1
 * after saying what is wrong with them.
 */
export function benchArgsOrExit<T>(parse: (argv: string[]) => T | 'help', argv: string[], usage: string, say: (line: string) => void): T | { exit: number } {
  try {
    const parsed = parse(argv);
    if (parsed !== 'help') return parsed;
    process.stdout.write(`${usage}\n`);
    return { exit: 0 };
  } catch (err) {
    say(describeError(err));
    return { exit: 1 };
  }
}

/**
 * A bench script's flags: each of `defaults` a string flag, plus `-o, --output table|json` and
 * `-h, --help`; unknown flags and a wrong output are errors made by `invalid`.
 */
export function benchFlags<K extends string>(argv: string[], defaults: Record<K, string>, invalid: (message: string) => Error): { values: Record<K, string>; output: 'table' | 'json' } | 'help' {
  const options: Record<string, { type: 'string' | 'boolean'; default?: string; short?: string }> = { output: { type: 'string', short: 'o', default: 'table' }, help: { type: 'boolean', short: 'h' } };
  for (const name in defaults) options[name] = { type: 'string', default: defaults[name] };
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({ args: argv, allowPositionals: false, options }).values as Record<string, string | boolean | undefined>;
  } catch (err) {
    throw invalid((err as Error).message);
  }
  if (values.help) return 'help';
  if (values.output !== 'table' && values.output !== 'json') throw invalid(`--output must be table or json, not "${String(values.output)}"`);
  return { values: values as Record<K, string>, output: values.output };
}
