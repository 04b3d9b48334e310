import type { Command } from 'commander';
import { flagNames } from '../federation/rollout-input.js';
import { listRollouts, rolloutActions, rolloutStatus, startRolloutFrom } from '../federation/rollouts.js';
import { describeWaiting, stepProgress, type RolloutRecord } from '../model/rollout.js';
import { action, etcdOption, outputOption, withStore, type EtcdFlags } from './common.js';
import { printJson, printTable } from './output.js';

interface RolloutOptions extends EtcdFlags { output: string; namespace: string }

const examples = `
Examples (isthmus dev up runs hello-v1 and hello-v2 in every cluster):
  isthmus policy apply -f <state dir>/hello-v2-slo.yaml   # the objective hello-v2-fast, on demo/hello-v2
  isthmus rollout start hello -n demo --from hello-v1 --to hello-v2 --steps 10,50,100 --interval 1m --objective hello-v2-fast
  isthmus rollout status hello -n demo
  isthmus rollout pause hello -n demo
  isthmus rollout resume hello -n demo
  isthmus rollout abort hello -n demo            # every request back to --from at once

Exit codes: 0 done; 1 refused or failed (the message names why, with its ISTHMUS_ERR_ROLLOUT_* code).`;

function describeRollout(r: RolloutRecord, now = Date.now()): string {
  const progress = stepProgress(r, now);
  const lines = [
    `rollout ${r.namespace}/${r.service}: ${r.phase}`,
    `  from ${r.from} to ${r.to}, steps ${r.steps.join(',')}% every ${r.intervalSeconds}s, gated by ${r.objective}; split trafficsplit ${r.namespace}/${r.split}`,
  ];
  if (progress) {
    lines.push(`  step ${progress.step + 1} of ${progress.of}: ${progress.weight}% to ${r.to}, held ${Math.round(progress.heldMs / 1000)}s of ${r.intervalSeconds}s`);
  }
  const waiting = describeWaiting(r);
  if (waiting) lines.push(`  ${waiting}`);
  if (r.ended) lines.push(`  ${r.ended.reason} (${r.ended.by}, ${r.ended.at})`);
  lines.push('  steps:');
  for (const s of r.history) lines.push(`    ${s.step + 1}. ${s.weight}% to ${r.to} from ${s.startedAt} (${s.by})`);
  return `${lines.join('\n')}\n`;
}

function print(opts: RolloutOptions, record: RolloutRecord): void {
  if (opts.output === 'json') return printJson(record);
  process.stdout.write(describeRollout(record));
}

export function registerRollout(program: Command): void {
  const rollout = program.command('rollout')
    .description('progressive delivery: shift a service\'s requests to a new version step by step, each step held while a service level objective holds, rolled back when it does not (docs/rollouts.md)')
    .addHelpText('after', examples);

  const common = (cmd: Command) => cmd.requiredOption('-n, --namespace <ns>', 'the service\'s namespace').addOption(etcdOption()).addOption(outputOption()).addHelpText('after', examples);

  common(rollout.command('start <service>')
    .description('start a rollout: writes the rollout and the TrafficSplit <service>-rollout it owns, at the first step')
    .requiredOption('--to <backend>', 'the new version: a service (hello-v2) that gets the steps\' share')
    .option('--from <backend>', 'the version that has the traffic now (default: the last succeeded rollout\'s --to, else the service itself)')
    .option('--steps <percents>', 'increasing percents of requests to --to, ending at 100', '10,50,100')
    .option('--interval <duration>', 'how long each step holds (5s, 1m)', '1m')
    .requiredOption('--objective <slo>', 'the ServiceLevelObjective (in the namespace) whose burn rate gates every step'))
    .action(action(async (service: string, opts: RolloutOptions & { to: string; from?: string; steps: string; interval: string; objective: string }) => {
      const record = await withStore(opts, (store) => startRolloutFrom(store, opts.namespace, service, {
        to: opts.to, from: opts.from, steps: opts.steps, interval: opts.interval, objective: opts.objective,
      }, { by: 'cli', names: flagNames }));
      print(opts, record);
    }));

  common(rollout.command('status [service]')
    .description('a rollout\'s phase, current step and every step begun (with when and by which federation); without a service, every rollout of the namespace'))
    .action(action(async (service: string | undefined, opts: RolloutOptions) => {
      if (service) return print(opts, await withStore(opts, (store) => rolloutStatus(store, opts.namespace, service)));
      const all = await withStore(opts, (store) => listRollouts(store, opts.namespace));
      if (opts.output === 'json') return printJson({ rollouts: all });
      printTable(['SERVICE', 'PHASE', 'FROM', 'TO', 'STEP', 'OBJECTIVE'], all.map((r) => [
        `${r.namespace}/${r.service}`, r.phase, r.from, r.to, `${(r.history.at(-1)?.step ?? 0) + 1}/${r.steps.length} (${r.history.at(-1)?.weight ?? 0}%)`, r.objective,
      ]));
    }));

  for (const [verb, description] of [
    ['pause', 'hold the current step until resumed (the pause does not count towards its interval)'],
    ['resume', 'go on with a paused rollout'],
    ['abort', 'end the rollout and send every request back to --from at once'],
  ] as const) {
    common(rollout.command(`${verb} <service>`).description(description))
      .action(action(async (service: string, opts: RolloutOptions) => {
        print(opts, await withStore(opts, (store) => rolloutActions[verb](store, opts.namespace, service, 'cli')));
      }));
  }
}
