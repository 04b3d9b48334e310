import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describeError } from '../core/errors.js';
import { parseBenchArgs, usage, type BenchArgs } from './args.js';
import { startBenchMesh, type BenchMesh } from './bench-mesh.js';
import { cpuSnapshot, cpuSpent } from './cpu-snapshot.js';
import { runOpenLoop } from './open-loop.js';
import { buildRows, formatRows, peerReference, referenceLines, type MeasuredPoint } from './report.js';
import { sourceState } from './source-state.js';
import { targetClient, waitUntilServing, type ProbeResult, type TargetClient } from './target-client.js';
import { benchTargets } from './targets.js';

/**
 * `npm run bench`: the data plane's added latency and CPU at fixed arrival rates, measured the way
 * PERF-NOTES.md measures the peer chain (open loop, latency from the scheduled send, "added" =
 * chain minus direct-to-origin in the same run), against a dev mesh on loopback. Exits non-zero
 * only when the mesh could not be set up; errors under load are results and go in the table.
 */
const say = (line: string) => process.stderr.write(`${line}\n`);
const requestTimeoutMs = 5_000;
const readyTimeoutMs = 30_000;

async function main(argv: string[]): Promise<number> {
  let args: BenchArgs;
  try {
    const parsed = parseBenchArgs(argv);
    if (parsed === 'help') {
      process.stdout.write(`${usage}\n`);
      return 0;
    }
    args = parsed;
  } catch (err) {
    say(describeError(err));
    return 1;
  }

  const stateDir = mkdtempSync(join(tmpdir(), 'isthmus-bench-'));
  let mesh: BenchMesh | undefined;
  let clients: TargetClient[] = [];
  let cleaned: Promise<void> | undefined;
  const cleanup = () => {
    cleaned ??= (async () => {
      await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
      if (mesh) {
        say('stopping the mesh...');
        await mesh.stop().catch((err: unknown) => say(`could not stop the mesh cleanly: ${describeError(err)}`));
      }
      rmSync(stateDir, { recursive: true, force: true });
    })();
    return cleaned;
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      say(`${signal}: stopping`);
      void cleanup().finally(() => process.exit(130));
    });
  }

  const probes: ProbeResult[] = [];
  let idleCpuPerSecond = Number.NaN;
  let idleOtherPerSecond = Number.NaN;
  try {
    const hosts = `127.0.${args.hostBase}.1 and 127.0.${args.hostBase + 1}.1`;
    const where = args.mesh === 'in-process' ? 'inside this process'
      : args.processes ? 'in child processes (isthmus dev up --processes: every sidecar and gateway a process of its own)' : 'in a child process (isthmus dev up, every proxy in its one process)';
    say(`starting the dev mesh ${where} on ${hosts}, state in ${stateDir}`);
    mesh = await startBenchMesh({
      mode: args.mesh, processes: args.processes, stateDir, hostBase: args.hostBase, clusters: ['east', 'west'], trustDomain: 'bench.isthmus', gateways: 1,
      cpuProfileDir: args.cpuProf === undefined ? undefined : resolve(args.cpuProf),
      say: args.mesh === 'child' ? say : () => undefined,
    });
    const targets = benchTargets(mesh.file);
    for (const target of targets) probes.push(await waitUntilServing(target, readyTimeoutMs));
    clients = targets.map((t) => targetClient(t, args.connections));
    const before = cpuSnapshot(mesh);
    await sleep(1000);
    const idle = cpuSpent(before, cpuSnapshot(mesh), inside(mesh));
    idleCpuPerSecond = idle.mesh / idle.seconds;
    idleOtherPerSecond = idle.other / idle.seconds;
  } catch (err) {
    say(`setup failed: ${describeError(err)}`);
    await cleanup();
    return 1;
  }

  // Once per scenario at the highest rate before anything is measured: JIT-compiled hot paths and
  // every keep-alive mTLS connection the sidecars' pools will need (a handshake is ~3 ms of CPU,
  // and in one event loop a burst of them stalls every request behind it).
  if (args.warmup > 0) {
    const top = Math.max(...args.rates);
    say(`priming: each scenario at ${top} rps for ${args.warmup} s (not measured)`);
    for (const client of clients) await runOpenLoop({ rate: top, seconds: args.warmup, send: client.send, maxInFlight: Math.max(256, top * 2), drainMs: requestTimeoutMs + 1_000 });
  }

  const points: MeasuredPoint[] = [];
  // Scenarios interleave within each rate so the baseline and its chains share the machine's state.
  for (const rate of args.rates) {
    for (const client of clients) {
      const scenario = client.target.scenario;
      const loop = { rate, send: client.send, maxInFlight: Math.max(256, rate * 2), drainMs: requestTimeoutMs + 1_000 };
      say(`  ${scenario} at ${rate} rps: ${args.warmup} s warm-up, ${args.seconds} s measured`);
      if (args.warmup > 0) await runOpenLoop({ ...loop, seconds: args.warmup });
      const before = cpuSnapshot(mesh);
      const result = await runOpenLoop({ ...loop, seconds: args.seconds });
      points.push({ scenario, result, cpu: cpuSpent(before, cpuSnapshot(mesh), inside(mesh)) });
    }
  }

  const rows = buildRows(points);
  const machine = { cpus: cpus().length, model: cpus()[0]?.model ?? 'unknown', node: process.version, loadavg: loadavg().map((l) => Number(l.toFixed(2))) };
  const scenarios = clients.map((c, i) => ({ scenario: c.target.scenario, route: c.target.route, responseBodyBytes: probes[i]?.bytes ?? Number.NaN }));
  const source = sourceState();
  const generatorPer1000 = rows.reduce((sum, r) => sum + r.generatorCpuSecondsPer1000, 0) / Math.max(1, rows.length);
  const notes = [
    `mesh: ${mesh.mode === 'in-process' ? 'startDevMesh INSIDE the bench process' : mesh.processes ? 'isthmus dev up --processes: each sidecar and gateway its own process, one event loop per proxy (as the peers ran)' : 'isthmus dev up in a child process, every proxy in that one process (--no-processes)'}; "CPU s/1k req" covers ${mesh.cpuCovers}`,
    ...(mesh.processes ? [`only ${cpus().length} cores: the load generator, dev up, etcd and every proxy process compete for them, so a hop can wait for a core as well as for its own event loop`] : []),
    '"added CPU s/1k" = chain minus baseline at the same rate: roughly the proxies\' own CPU (the baseline pays for the app and the mesh\'s background work)',
    `idle before load: mesh ${idleCpuPerSecond.toFixed(3)} CPU s/s, other processes on the machine ${idleOtherPerSecond.toFixed(2)} CPU s/s`,
    '"other CPU/s" = CPU seconds per second used during the point by processes that are neither the mesh, its etcd nor the generator: on a shared 2-core machine, anything well above 0.1 competes with the proxies and inflates the tail',
    `response bodies: ${scenarios.map((s) => `${s.scenario} ${s.responseBodyBytes} B`).join(', ')} (the sample app's small JSON, not the 1 KiB PERF-NOTES uses; through the mesh it also echoes x-forwarded-client-cert)`,
    `latency from the scheduled send (open loop), keep-alive HTTP/1.1 (undici Pool of ${args.connections}) to the first hop, ${args.seconds} s per point after ${args.warmup} s warm-up at the same rate; "gen lag p99" = how late the generator's timer fired (inside every latency, mostly cancels out of "added")`,
    `source tree when the run started: ${source ? `commit ${source.commit}${source.uncommitted.length ? ` plus uncommitted changes in ${source.uncommitted.join(', ')}` : ', clean'}` : 'unknown (not a git checkout)'}; what ran is dist/, which \`npm run bench\` builds from it just before`,
    `load generator: ${generatorPer1000.toFixed(3)} CPU s/1k req on average, in its own process${mesh.mode === 'child' ? '' : ' (the same one as the mesh)'}; machine: ${machine.cpus} × ${machine.model}, Node ${machine.node}`,
  ];

  if (args.output === 'json') {
    process.stdout.write(`${JSON.stringify({
      date: new Date().toISOString(), machine, source, settings: args, mesh: { mode: mesh.mode, processes: mesh.processes, cpuCovers: mesh.cpuCovers, idleCpuPerSecond, idleOtherPerSecond },
      scenarios, rows, reference: peerReference, notes,
    }, null, 2)}\n`);
  } else {
    process.stdout.write(`\nIsthmus data plane, ${new Date().toISOString()}\n`);
    for (const s of scenarios) process.stdout.write(`  ${s.scenario}: ${s.route}\n`);
    process.stdout.write(`\n${formatRows(rows)}\n\n`);
    for (const line of referenceLines()) process.stdout.write(`${line}\n`);
    process.stdout.write('\n');
    for (const line of notes) process.stdout.write(`- ${line}\n`);
  }
  await cleanup();
  return 0;
}

const inside = (mesh: BenchMesh) => ({ generator: mesh.mode === 'in-process', etcd: mesh.etcdInsideMesh });

process.exitCode = await main(process.argv.slice(2));
// undici or a timer may still hold the loop for a moment; the work is done and reported.
setTimeout(() => process.exit(), 500).unref();
