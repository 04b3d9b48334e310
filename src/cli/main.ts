import { Command, CommanderError } from 'commander';
import { version } from '../core/version.js';
import { addEtcdTlsOptions } from './common.js';

type Register = (program: Command) => void;

/**
 * Each top-level command and the module that defines it, in help order. Loaded on demand: a
 * long-running `isthmus sidecar` should not carry the CA, etcd or dashboard code of the other
 * verbs (docs/benchmark-history.md, "Memory results"). Several commands share a
 * module (export and unexport).
 */
const commands: readonly { names: readonly string[]; load: () => Promise<Register> }[] = [
  { names: ['ca'], load: async () => (await import('./ca.js')).registerCa },
  { names: ['join'], load: async () => (await import('./join.js')).registerJoin },
  { names: ['leave'], load: async () => (await import('./leave.js')).registerLeave },
  { names: ['export', 'unexport'], load: async () => (await import('./export.js')).registerExport },
  { names: ['services', 'clusters'], load: async () => (await import('./list.js')).registerList },
  { names: ['register', 'deregister'], load: async () => (await import('./register.js')).registerRegister },
  { names: ['operator'], load: async () => (await import('./operator.js')).registerOperator },
  { names: ['check'], load: async () => (await import('./check.js')).registerCheck },
  { names: ['federation'], load: async () => (await import('./federation.js')).registerFederation },
  { names: ['gateway'], load: async () => (await import('./gateway.js')).registerGateway },
  { names: ['sidecar', 'explain'], load: async () => (await import('./sidecar.js')).registerSidecar },
  { names: ['can'], load: async () => (await import('./can.js')).registerCan },
  { names: ['trace'], load: async () => (await import('./trace.js')).registerTrace },
  { names: ['dev'], load: async () => (await import('./dev.js')).registerDev },
  { names: ['dash'], load: async () => (await import('./dash.js')).registerDash },
  { names: ['policy'], load: async () => (await import('./policy.js')).registerPolicy },
  { names: ['rollout'], load: async () => (await import('./rollout.js')).registerRollout },
  { names: ['stat'], load: async () => (await import('./stat.js')).registerStat },
  { names: ['inject', 'uninject'], load: async () => (await import('./inject.js')).registerInject },
];

/** The command word of argv (`node isthmus <word> ...`): the first argument that is not an option. */
export function commandWord(argv: readonly string[]): string | undefined {
  return argv.slice(2).find((arg) => !arg.startsWith('-'));
}

/**
 * The CLI. With `only` naming a known command, just that command's module is loaded and
 * registered; otherwise every command is (top-level help, `help <cmd>`, unknown commands).
 */
export async function buildProgram(only?: string): Promise<Command> {
  const program = new Command('isthmus')
    .description('Isthmus: a multi-cluster service mesh. Join clusters, export services, watch them talk.')
    .version(version, '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    .configureHelp({ sortSubcommands: false })
    // Set before the subcommands exist so they inherit it: usage errors exit 2, not 1.
    .exitOverride();
  const wanted = commands.filter((c) => only !== undefined && c.names.includes(only));
  for (const command of wanted.length > 0 ? wanted : commands) (await command.load())(program);
  addEtcdTlsOptions(program);
  program.addHelpText('after', `
Examples:
  isthmus dev up                      # a whole two-cluster mesh on this machine
  isthmus ca init --trust-domain mesh.example --out ./ca
  isthmus join east --region us-east --zone a --etcd http://127.0.0.1:2379 --ca ./ca --out ./east
  isthmus federation --config ./east/cluster.yaml
  isthmus export hello --namespace demo --cluster east
  isthmus services --output json

The etcd address may also come from ISTHMUS_ETCD, and etcd's TLS files (--etcd-ca, --etcd-cert,
--etcd-key) from ISTHMUS_ETCD_CA, ISTHMUS_ETCD_CERT and ISTHMUS_ETCD_KEY.`);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  // A reader that went away (`isthmus services | head`, a `| tee` ended by Ctrl-C) is not this
  // command's failure: the write is dropped instead of crashing the process with EPIPE, and a
  // long-running command carries on with its own shutdown.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
    });
  }
  const program = await buildProgram(commandWord(argv));
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version exit 0; usage errors exit 2 (commander already printed why).
      process.exitCode = err.exitCode === 0 ? 0 : 2;
      return;
    }
    throw err;
  }
}
