import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { IsthmusError } from '../core/errors.js';
import { benchArgsOrExit, benchFlags, integerFlag, pointFlags, type PointFlags } from './args.js';
import { startBenchMesh, type BenchMesh } from './bench-mesh.js';
import { runOpenLoop, type OpenLoopResult } from './open-loop.js';
import { ourProxyProcesses, proxiesSpent, readProcesses, type ProxyProcess } from './proxy-processes.js';
import { columns, median } from './side-by-side.js';
import { sourceState } from './source-state.js';
import { targetClient, waitUntilServing, type TargetClient } from './target-client.js';
import type { Destination, Target } from './targets.js';

/**
 * `npm run bench:pair -- --against <checkout>`: two builds of Isthmus measured at the same time,
 * for a change too small to see between runs one after the other (on these shared machines a
 * build's CPU per request moves by ±10% from run to run). Each build runs a dev mesh of its own
 * (`isthmus dev up --processes`), both are loaded at once with the same same-cluster requests, and
 * each round gives the CPU per request of each mesh's sidecars on that chain, each mesh's p50
 * latency, and their ratios: what the machine does to one round it does to both. Which mesh starts second, and its addresses,
 * bias the ratio a little; `--against .` (this build twice) measures that bias.
 */

const usage = `usage: node dist/bench/pair.js --against <checkout> [options]   (npm run bench:pair -- --against <checkout> [options])
This checkout's sidecars against another build's, measured at the same time: each in a dev mesh of its
own, both loaded at once with same-cluster requests (east client → east hello, 1 KiB answers); prints
each round's CPU per request of each mesh's client and hello sidecars and each mesh's p50 latency, the
ratios this/other and their medians.
  --against <dir>   a checkout of isthmus with dist/ built (npm ci there); "." measures the setup's own bias
  --rate <n>        requests per second to each mesh (default 500; 1..5000)
  --seconds <n>     measured seconds per round (default 30; 1..60)
  --warmup <n>      unmeasured seconds at the same rate before each round (default 5; 0..10)
  --rounds <n>      rounds (default 8; 1..30)
  --host-base <n>   the other build's mesh on 127.0.<n>.1 and <n+1>, this one's on <n+2> and <n+3> (default 81)
  -o, --output table|json
  -h, --help`;

export interface PairBenchArgs extends PointFlags { against: string; hostBase: number; output: 'table' | 'json' }

const invalid = (message: string) => new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `${message}\n${usage}`);

export function parsePairBenchArgs(argv: string[]): PairBenchArgs | 'help' {
  const flags = benchFlags(argv, { against: '', rate: '500', seconds: '30', warmup: '5', rounds: '8', 'host-base': '81' }, invalid);
  if (flags === 'help') return 'help';
  const v = flags.values;
  if (v.against === '') throw invalid('--against <checkout> is required: the build to compare this one with ("." for this one)');
  return { ...pointFlags(v, 30, invalid), against: v.against, hostBase: integerFlag('host-base', v['host-base'], 1, 250, invalid), output: flags.output };
}

/**
 * One round: the CPU per request, µs, of each mesh's sidecars on the chain, and ours over theirs;
 * and each mesh's p50 latency, ms, from the scheduled send to the answer's last byte (the app's
 * time included, the same in both), and ours over theirs.
 */
export interface PairRound { round: number; oursMicros: number; theirsMicros: number; ratio: number; oursP50Ms: number; theirsP50Ms: number; p50Ratio: number; failed: number }

/** Pure. A round from the CPU seconds each side's sidecars spent and the answers (and their latencies) each side got. */
export function pairRound(round: number, ours: { cpuSeconds: number; result: OpenLoopResult }, theirs: { cpuSeconds: number; result: OpenLoopResult }): PairRound {
  const perRequest = (cpu: number, r: OpenLoopResult) => (r.ok > 0 ? (cpu / r.ok) * 1e6 : Number.NaN);
  const oursMicros = perRequest(ours.cpuSeconds, ours.result);
  const theirsMicros = perRequest(theirs.cpuSeconds, theirs.result);
  const oursP50Ms = ours.result.latency.percentile(50);
  const theirsP50Ms = theirs.result.latency.percentile(50);
  return {
    round, oursMicros, theirsMicros, ratio: oursMicros / theirsMicros, oursP50Ms, theirsP50Ms, p50Ratio: oursP50Ms / theirsP50Ms, failed: ours.result.failed + theirs.result.failed,
  };
}

export function formatPairRounds(rounds: PairRound[]): string {
  const n = (v: number, digits: number) => (Number.isFinite(v) ? v.toFixed(digits) : '—');
  const lines = [['round', 'this build µs/request', 'other build µs/request', 'this / other', 'this p50 ms', 'other p50 ms', 'p50 this / other', 'failed']];
  for (const r of rounds) lines.push([String(r.round), n(r.oursMicros, 1), n(r.theirsMicros, 1), n(r.ratio, 3), n(r.oursP50Ms, 3), n(r.theirsP50Ms, 3), n(r.p50Ratio, 3), String(r.failed)]);
  const m = (pick: (r: PairRound) => number, digits: number) => n(median(rounds.map(pick)), digits);
  lines.push(['median', m((r) => r.oursMicros, 1), m((r) => r.theirsMicros, 1), m((r) => r.ratio, 3), m((r) => r.oursP50Ms, 3), m((r) => r.theirsP50Ms, 3), m((r) => r.p50Ratio, 3), '']);
  return columns(lines);
}

const say = (line: string) => process.stderr.write(`${line}\n`);
const destination: Destination = { service: 'hello', cluster: 'east' };
const host = 'hello.demo.mesh';

interface Side { mesh: BenchMesh; stateDir: string; client: TargetClient; sidecars: ProxyProcess[] }

async function startSide(name: string, binPath: string | undefined, hostBase: number): Promise<Side> {
  const stateDir = mkdtempSync(join(tmpdir(), `isthmus-bench-pair-${name}-`));
  say(`starting ${name}'s dev mesh on 127.0.${hostBase}.1 and 127.0.${hostBase + 1}.1`);
  const mesh = await startBenchMesh({
    mode: 'child', stateDir, hostBase, clusters: ['east', 'west'], trustDomain: 'pair.isthmus', gateways: 1, processes: true,
    ...(binPath === undefined ? {} : { binPath }), say: () => undefined,
  });
  const east = mesh.file.clusters.east;
  if (!east) throw new Error(`${name}'s mesh has no east cluster`);
  const target: Target = { scenario: 'same-cluster', side: 'isthmus', route: name, firstHop: east.client.proxy, path: `http://${host}/?size=1024`, host, expect: destination };
  await waitUntilServing(target, 30_000);
  // The client sidecar and every hello sidecar in east: a hello sidecar the client does not use costs next to nothing.
  const sidecars = ourProxyProcesses(mesh, [destination], 'east').filter((p) => p.carries.some((d) => d.service === destination.service && d.cluster === destination.cluster));
  return { mesh, stateDir, client: targetClient(target, 128), sidecars };
}

async function main(argv: string[]): Promise<number> {
  const args = benchArgsOrExit(parsePairBenchArgs, argv, usage, say);
  if ('exit' in args) return args.exit;
  const againstBin = join(resolve(args.against), 'bin', 'isthmus.js');
  if (!existsSync(againstBin) || !existsSync(join(resolve(args.against), 'dist', 'cli', 'main.js'))) {
    say(`${args.against} is not a built checkout of isthmus (no bin/isthmus.js or dist/): run npm ci there first`);
    return 1;
  }
  const sides: Side[] = [];
  try {
    // The other build first, this one second: `--against .` reads the bias of that order.
    const theirs = await startSide('the other build', againstBin, args.hostBase);
    sides.push(theirs);
    const ours = await startSide('this build', undefined, args.hostBase + 2);
    sides.push(ours);
    const loop = { rate: args.rate, maxInFlight: Math.max(256, args.rate * 2), drainMs: 6_000 };
    const both = (seconds: number) => Promise.all([runOpenLoop({ ...loop, seconds, send: () => ours.client.send() }), runOpenLoop({ ...loop, seconds, send: () => theirs.client.send() })]);
    const pids = [...ours.sidecars, ...theirs.sidecars].map((p) => p.pid);
    const rounds: PairRound[] = [];
    for (let round = 1; round <= args.rounds; round += 1) {
      if (args.warmup > 0) await both(args.warmup);
      const before = readProcesses(pids);
      const [ourResult, theirResult] = await both(args.seconds);
      const after = readProcesses(pids);
      const spent = (side: Side) => proxiesSpent(side.sidecars, 'isthmus', destination, before, after).cpuSeconds;
      rounds.push(pairRound(round, { cpuSeconds: spent(ours), result: ourResult }, { cpuSeconds: spent(theirs), result: theirResult }));
      const last = rounds.at(-1) as PairRound;
      say(`  round ${round}: this/other CPU ${last.ratio.toFixed(3)}, p50 ${last.p50Ratio.toFixed(3)}`);
    }
    const source = sourceState();
    if (args.output === 'json') {
      const medians = { medianRatio: median(rounds.map((r) => r.ratio)), medianP50Ratio: median(rounds.map((r) => r.p50Ratio)) };
      process.stdout.write(`${JSON.stringify({ date: new Date().toISOString(), source, settings: args, rounds, ...medians }, null, 2)}\n`);
    } else {
      process.stdout.write(`\nThis build against ${args.against}, at once: ${args.rate} requests/s to each mesh's east client → east hello, ${args.seconds} s per round\n\n${formatPairRounds(rounds)}\n`);
      process.stdout.write('- CPU = utime + stime over the round of each mesh\'s east client sidecar and east hello sidecars, per answered request\n');
      process.stdout.write('- p50 = the median answer\'s time from its scheduled send to its last byte, through the app too (the same app in both meshes); both meshes share the machine, so it reads higher than alone\n');
      process.stdout.write(`- this build: ${source ? `commit ${source.commit}${source.uncommitted.length ? ' plus uncommitted changes' : ''}` : 'unknown'}; compare with --against . for the setup's own bias\n`);
    }
    return 0;
  } catch (err) {
    say(`the pair bench failed: ${(err as Error).message}`);
    return 1;
  } finally {
    for (const side of sides) {
      await side.client.close().catch(() => undefined);
      await side.mesh.stop();
      rmSync(side.stateDir, { recursive: true, force: true });
    }
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.exitCode = await main(process.argv.slice(2));
  setTimeout(() => process.exit(), 500).unref();
}
