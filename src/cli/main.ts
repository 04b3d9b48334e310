import { Command, CommanderError } from 'commander';
import { version } from '../core/version.js';
import { registerCa } from './ca.js';
import { registerFederation } from './federation.js';
import { registerJoin } from './join.js';
import { registerLeave } from './leave.js';
import { registerExport } from './export.js';
import { registerList } from './list.js';
import { registerCheck } from './check.js';
import { registerRegister } from './register.js';
import { registerDev } from './dev.js';
import { registerGateway } from './gateway.js';
import { registerSidecar } from './sidecar.js';
import { registerTrace } from './trace.js';
import { registerDash } from './dash.js';
import { registerPolicy } from './policy.js';
import { registerStat } from './stat.js';

export function buildProgram(): Command {
  const program = new Command('isthmus')
    .description('Isthmus: a multi-cluster service mesh. Join clusters, export services, watch them talk.')
    .version(version, '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    .configureHelp({ sortSubcommands: false })
    // Set before the subcommands exist so they inherit it: usage errors exit 2, not 1.
    .exitOverride();
  registerCa(program);
  registerJoin(program);
  registerLeave(program);
  registerExport(program);
  registerList(program);
  registerRegister(program);
  registerCheck(program);
  registerFederation(program);
  registerGateway(program);
  registerSidecar(program);
  registerTrace(program);
  registerDev(program);
  registerDash(program);
  registerPolicy(program);
  registerStat(program);
  program.addHelpText('after', `
Examples:
  isthmus dev up                      # a whole two-cluster mesh on this machine
  isthmus ca init --trust-domain mesh.example --out ./ca
  isthmus join east --region us-east --zone a --etcd http://127.0.0.1:2379 --ca ./ca --out ./east
  isthmus federation --config ./east/cluster.yaml
  isthmus export hello --namespace demo --cluster east
  isthmus services --output json

The etcd address may also come from ISTHMUS_ETCD.`);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
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
