import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { countLines } from './line-count.js';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describeError } from '../core/errors.js';
import { ensureDirectory } from '../core/user-paths.js';
import { parseBenchArgs, usage, type BenchArgs } from './args.js';
import { startBenchMesh, type BenchMesh } from './bench-mesh.js';
import { compareRows, formatComparisons, ratioTargets } from './comparison.js';
import { coldRows, coldSlowAboveMs, formatColdRows, gatewayBytes, inboundRequests, requestsCarried, type ColdPoint } from './cold-start.js';
import { cpuSnapshot, cpuSpent } from './cpu-snapshot.js';
import { runOpenLoop } from './open-loop.js';
import { peerVersions, startPeerChain, type PeerChain } from './peer-chain.js';
import { idleCarrierShare, idleCarriers, ourProxyProcesses, proxiesSpent, readProcesses, withoutCarriers, type InboundCounts, type ProxyProcess } from './proxy-processes.js';
import { buildRows, formatProxyCpu, formatRows, type MeasuredPoint } from './report.js';
import { sourceState } from './source-state.js';
import { sentinelTickMs, StallSentinel, stallThresholdMs } from './stall-sentinel.js';
import { raisePriority } from './priority.js';
import { targetClient, waitUntilServing, type ProbeResult, type TargetClient } from './target-client.js';
import { benchTargets, chainDestinations, chainOrigins, clientCluster, responseBytes, sameDestination, targetLabel, type Destination, type Target } from './targets.js';

/**
 * `npm run bench`: the data plane's added latency, CPU and memory at fixed arrival rates, beside
 * the peer chain's (nginx → HAProxy → nginx) measured in the same run, on loopback. Method as in
 * the team's measurements: open loop, latency from the scheduled send, "added" = chain minus
 * direct-to-origin at the same rate. Exits non-zero only when the mesh or the peer chain could
 * not be set up; errors under load are results and go in the table.
 */
const say = (line: string) => process.stderr.write(`${line}\n`);
const requestTimeoutMs = 5_000;
const readyTimeoutMs = 30_000;
const namespace = 'demo';
const destinations: Destination[] = [chainDestinations['same-cluster'], chainDestinations['cross-cluster']];

async function main(argv: string[]): Promise<number> {
  let args: BenchArgs;
  try {
    const parsed = parseBenchArgs(argv);
    if (parsed === 'help') {
      process.stdout.write(`${usage}\n`);
      return 0;
    }
    args = parsed;
    // Before the mesh starts: node would only fail at the end, when it writes the profile.
    if (args.cpuProf !== undefined) ensureDirectory(args.cpuProf, '--cpu-prof');
  } catch (err) {
    say(describeError(err));
    return 1;
  }

  const stateDir = mkdtempSync(join(tmpdir(), 'isthmus-bench-'));
  const peerDir = mkdtempSync(join(tmpdir(), 'isthmus-bench-peers-'));
  let mesh: BenchMesh | undefined;
  let peers: PeerChain | undefined;
  let clients: TargetClient[] = [];
  let sentinel: StallSentinel | undefined;
  let cleaned: Promise<void> | undefined;
  const cleanup = () => {
    cleaned ??= (async () => {
      await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
      await sentinel?.stop();
      if (peers) {
        say('stopping the peer chain...');
        await peers.stop().catch((err: unknown) => say(`could not stop the peer chain cleanly: ${describeError(err)}`));
      }
      if (mesh) {
        say('stopping the mesh...');
        await mesh.stop().catch((err: unknown) => say(`could not stop the mesh cleanly: ${describeError(err)}`));
      }
      rmSync(stateDir, { recursive: true, force: true });
      rmSync(peerDir, { recursive: true, force: true });
    })();
    return cleaned;
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      say(`${signal}: stopping`);
      void cleanup().finally(() => process.exit(130));
    });
  }

  const probes = new Map<Target, ProbeResult>();
  let proxies: ProxyProcess[] = [];
  let peerPids: number[] = [];
  /** Our processes the naming counted for a chain but that carried none of it (proxy-processes.ts, idleCarriers). */
  const uncounted: string[] = [];
  const idle = { mesh: Number.NaN, other: Number.NaN, isthmusProxies: Number.NaN, peerProxies: Number.NaN };
  try {
    const hosts = `127.0.${args.hostBase}.1 and 127.0.${args.hostBase + 1}.1`;
    const where = args.mesh === 'in-process' ? 'inside this process'
      : args.processes ? 'in child processes (isthmus dev up --processes: every sidecar and gateway a process of its own)' : 'in a child process (isthmus dev up --no-processes, every proxy in its one process)';
    say(`starting the dev mesh ${where} on ${hosts}, state in ${stateDir}`);
    mesh = await startBenchMesh({
      mode: args.mesh, processes: args.processes, stateDir, hostBase: args.hostBase, clusters: ['east', 'west'], trustDomain: 'bench.isthmus', gateways: 1,
      cpuProfileDir: args.cpuProf === undefined ? undefined : resolve(args.cpuProf),
      accessLog: args.accessLog,
      upgradeToHttp2: args.upgradeToHttp2,
      gatewayRelay: args.gatewayRelay,
      say: args.mesh === 'child' ? say : () => undefined,
    });
    const origins = chainOrigins(mesh.file);
    const peerHosts = { east: `127.0.${args.hostBase}.2`, west: `127.0.${args.hostBase + 1}.2` };
    say(`starting the peer chain on ${peerHosts.east} and ${peerHosts.west} (nginx outbound → HAProxy gateway → nginx inbound, one process each), files in ${peerDir}`);
    const services = [
      { name: chainDestinations['same-cluster'].service, cluster: chainDestinations['same-cluster'].cluster, origin: origins['same-cluster'] },
      { name: chainDestinations['cross-cluster'].service, cluster: chainDestinations['cross-cluster'].cluster, origin: origins['cross-cluster'] },
    ];
    // nginx closes an upstream connection beyond `keepalive` idle ones after its request, and a new
    // one costs an RSA handshake: a pool that keeps as many as the generator can have in flight
    // never churns (ours keeps up to 32 per upstream and queues beyond that).
    peers = await startPeerChain({ dir: peerDir, trustDomain: 'bench.isthmus', namespace, clientCluster, hosts: peerHosts, services, keepalive: args.connections, requestLogs: args.accessLog });
    for (const p of peers.processes) say(`  peer: ${p.name} (pid ${p.pid}) carries ${p.services.join(', ')}`);
    peerPids = peers.processes.map((p) => p.pid);
    const destinationOf = (service: string) => destinations.filter((d) => d.service === service);
    proxies = [
      ...ourProxyProcesses({ pid: mesh.pid, processes: mesh.processes, mode: mesh.mode }, destinations, clientCluster),
      ...peers.processes.map((p): ProxyProcess => ({ side: 'peer', name: p.name, pid: p.pid, carries: p.services.flatMap(destinationOf), includesOrigin: false })),
    ];

    if (args.nice !== 0) {
      const failed = raisePriority([mesh.pid, ...peerPids, process.pid], args.nice);
      say(`priority: nice ${args.nice} for the mesh, the peers, etcd and the generator${failed.length ? `; not changed: ${failed.slice(0, 3).join('; ')}${failed.length > 3 ? ` and ${failed.length - 3} more` : ''}` : ''}`);
    }
    const targets = benchTargets(mesh.file, peers.outbound);
    // With a cold-start point, our chains get no probe before it. The only request through them
    // before it is dev up's own check that every client reaches every sample service, as on a mesh
    // a user has just started; the cold point's rows say how many there were. Probed after it.
    for (const target of targets) {
      if (args.coldRate > 0 && target.side === 'isthmus') continue;
      probes.set(target, await waitUntilServing(target, readyTimeoutMs));
    }
    clients = targets.map((t) => targetClient(t, args.connections));
    sentinel = await StallSentinel.start();
    const before = cpuSnapshot(mesh, peerPids);
    const beforeProxies = readProcesses(proxies.map((p) => p.pid));
    await sleep(1000);
    const spent = cpuSpent(before, cpuSnapshot(mesh, peerPids), inside(mesh));
    const afterProxies = readProcesses(proxies.map((p) => p.pid));
    const idleOf = (side: ProxyProcess['side']) => proxies.filter((p) => p.side === side)
      .reduce((sum, p) => sum + (afterProxies.get(p.pid)?.cpuSeconds ?? Number.NaN) - (beforeProxies.get(p.pid)?.cpuSeconds ?? Number.NaN), 0) / spent.seconds;
    Object.assign(idle, { mesh: spent.mesh / spent.seconds, other: spent.other / spent.seconds, isthmusProxies: idleOf('isthmus'), peerProxies: idleOf('peer') });
  } catch (err) {
    say(`setup failed: ${describeError(err)}`);
    await cleanup();
    return 1;
  }

  // Cold start comes first, while every proxy is as fresh as dev up and the peers' start left it.
  // Only dev up's own readiness request has crossed our chains (counted in the rows); the peers'
  // had their readiness probe (nginx has nothing to compile, and its first handshakes are part of
  // its own figure either way).
  const cold: ColdPoint[] = [];
  if (args.coldRate > 0) {
    // The generator must be warm and only the chain cold: its own first requests (undici,
    // the open loop, new connections) would otherwise be charged to whichever chain goes first,
    // which is ours. It warms up against the app both cold chains end at, directly, which
    // crosses no proxy and warms that app too: ours goes first, and must not meet a colder app
    // than the peer's does after it.
    const origin = clients.find((c) => c.target.side === 'origin' && sameDestination(c.target.expect, chainDestinations['cross-cluster']));
    if (origin) {
      say(`warming the load generator up: ${args.coldRate} rps for 2 s straight to the ${origin.target.expect.service} app`);
      await runOpenLoop({ rate: args.coldRate, seconds: 2, send: origin.send, maxInFlight: Math.max(256, args.coldRate * 2), drainMs: requestTimeoutMs + 1_000 });
    }
    const clientAdmin = mesh.file.clusters[clientCluster]?.client.admin;
    for (const client of clients.filter((c) => c.target.scenario === 'cross-cluster')) {
      const label = targetLabel(client.target);
      const { service } = client.target.expect;
      const carriedBefore = client.target.side === 'isthmus' && clientAdmin ? await requestsCarried(clientAdmin, `${namespace}/${service}`) : undefined;
      say(`cold start: ${label} at ${args.coldRate} rps for ${args.coldSeconds} s, measured from the first request`);
      const result = await runOpenLoop({
        rate: args.coldRate, seconds: args.coldSeconds, send: client.send, maxInFlight: Math.max(256, args.coldRate * 2), drainMs: requestTimeoutMs + 1_000,
        slowAboveMs: coldSlowAboveMs,
      });
      cold.push({ label, side: client.target.side, result, ...(carriedBefore === undefined ? {} : { carriedBefore }) });
    }
  }
  const coldStart = coldRows(cold);
  try {
    for (const client of clients) {
      if (!probes.has(client.target)) probes.set(client.target, await waitUntilServing(client.target, readyTimeoutMs));
    }
  } catch (err) {
    say(`after the cold start: ${describeError(err)}`);
    await cleanup();
    return 1;
  }
  if (args.coldOnly) {
    if (args.output === 'json') process.stdout.write(`${JSON.stringify({ date: new Date().toISOString(), source: sourceState(), settings: args, coldStart }, null, 2)}\n`);
    else process.stdout.write(`\n${formatColdRows(coldStart)}\n`);
    await cleanup();
    return 0;
  }

  // Once per scenario at the highest rate before anything is measured: JIT-compiled hot paths and
  // every keep-alive mTLS connection the sidecars' pools will need (a handshake is ~3 ms of CPU,
  // and a burst of them stalls every request behind it). The peers' pools are filled the same way.
  if (args.warmup > 0) {
    const top = Math.max(...args.rates);
    say(`priming: each scenario at ${top} rps for ${args.warmup} s (not measured)`);
    for (const client of clients) {
      const ours = client.target.side === 'isthmus';
      const inbound: InboundCounts = { before: ours ? await inboundCounts(proxies) : new Map(), after: new Map() };
      const before = readProcesses(proxies.map((p) => p.pid));
      await runOpenLoop({ rate: top, seconds: args.warmup, send: client.send, maxInFlight: Math.max(256, top * 2), drainMs: requestTimeoutMs + 1_000 });
      if (!ours) continue;
      const after = readProcesses(proxies.map((p) => p.pid));
      inbound.after = await inboundCounts(proxies);
      // Count for a chain only the processes that carried it (proxy-processes.ts, idleCarriers).
      const unused = idleCarriers(proxies, client.target.expect, before, after, idleCarrierShare, inbound);
      for (const { process: p, cpuSeconds, busiestCpuSeconds, by } of unused) {
        const why = by === 'requests'
          ? `${p.carried === 'gateway-bytes' ? 'it carried no byte' : 'its inbound answered no request'} while that chain was primed (it used ${(cpuSeconds * 1000).toFixed(0)} ms of CPU, the busiest of ours ${(busiestCpuSeconds * 1000).toFixed(0)} ms)`
          : `it used ${(cpuSeconds * 1000).toFixed(0)} ms of CPU while that chain was primed, the busiest of ours ${(busiestCpuSeconds * 1000).toFixed(0)} ms, under ${idleCarrierShare * 100}% of it`;
        const line = `${p.name} is not counted for ${client.target.expect.service}: ${why}: it carried none of that chain's requests (a sidecar in another zone than the client's, for instance, while the client's zone has a healthy instance)`;
        say(`  ${line}`);
        uncounted.push(line);
      }
      proxies = withoutCarriers(proxies, unused.map((i) => i.process), client.target.expect);
    }
  }

  const points: MeasuredPoint[] = [];
  const pids = proxies.map((p) => p.pid);
  const oursIncludeOrigin = proxies.some((p) => p.side === 'isthmus' && p.includesOrigin);
  // Scenarios interleave within each rate (the hello app's baseline, ours and the peers'
  // same-cluster, the ledger app's baseline, ours and the peers' cross-cluster) so that each chain
  // shares the machine's state with its own baseline and its peer as closely as it can.
  for (const rate of args.rates) {
    for (const client of clients) {
      const { scenario, side, expect } = client.target;
      const loop = { rate, send: client.send, maxInFlight: Math.max(256, rate * 2), drainMs: requestTimeoutMs + 1_000 };
      say(`  ${targetLabel(client.target)} at ${rate} rps: ${args.warmup} s warm-up, ${args.seconds} s measured`);
      if (args.warmup > 0) await runOpenLoop({ ...loop, seconds: args.warmup });
      const before = cpuSnapshot(mesh, peerPids);
      const beforeProxies = readProcesses(pids);
      const windowStart = Date.now();
      const result = await runOpenLoop({ ...loop, seconds: args.seconds });
      const windowEnd = Date.now();
      const afterProxies = readProcesses(pids);
      const cpu = cpuSpent(before, cpuSnapshot(mesh, peerPids), inside(mesh));
      // The baseline records our proxies too: with the whole mesh in one process, that process
      // also serves the apps, and its baseline share is subtracted from our chains' figure.
      const proxySide = side === 'peer' ? 'peer' : 'isthmus';
      points.push({
        scenario, side, expect, result, cpu,
        proxies: proxiesSpent(proxies, proxySide, expect, beforeProxies, afterProxies),
        proxiesIncludeOrigin: proxySide === 'isthmus' && oursIncludeOrigin,
        stalls: sentinel?.between(windowStart, windowEnd),
      });
    }
  }

  const rows = buildRows(points);
  const comparisons = compareRows(rows);
  const machine = { cpus: cpus().length, model: cpus()[0]?.model ?? 'unknown', node: process.version, loadavg: loadavg().map((l) => Number(l.toFixed(2))) };
  const scenarios = clients.map((c) => ({ scenario: targetLabel(c.target), route: c.target.route, responseBodyBytes: probes.get(c.target)?.bytes ?? Number.NaN }));
  const source = sourceState();
  const versions = peerVersions();
  const generatorPer1000 = rows.reduce((sum, r) => sum + r.generatorCpuSecondsPer1000, 0) / Math.max(1, rows.length);
  const counted = (side: ProxyProcess['side']) => proxies.filter((p) => p.side === side).map((p) => `${p.name} (${p.carries.map((d) => d.service).join('+')})`).join(', ');
  const notes = [
    `isthmus: ${mesh.mode === 'in-process' ? 'startDevMesh INSIDE the bench process (proxies, apps and the load generator share one event loop)' : mesh.processes ? 'isthmus dev up --processes: each sidecar, gateway, federation service and sample app its own process, as the peers run' : 'isthmus dev up --no-processes: every proxy and the sample apps in that one process'}${args.upgradeToHttp2 ? '; --upgrade-to-http2: HTTP/1.1 requests cross between our sidecars as HTTP/2 streams' : ''}${args.gatewayRelay === 'node' ? '; --gateway-relay node: our gateways copy bytes in JavaScript' : ''}`,
    `peer chain: ${versions.nginx} outbound and inbound sidecars (master_process off: one process each), ${versions.haproxy} east-west gateway (mode tcp, SNI passthrough, nbthread 1); TLS 1.3 mutual TLS with ECDSA P-256 leaves under per-cluster RSA-2048 intermediates from our own CA; keep-alive pools on every hop (up to ${args.connections} idle connections each); it ends at the same apps as ours`,
    `"proxies CPU s/1k" = utime + stime from /proc of the proxy processes on that chain, per 1000 answers; "proxies RSS MB" = the sum of their peak RSS (VmHWM). Counted for isthmus: ${counted('isthmus')}; for the peer: ${counted('peer')}`,
    ...uncounted,
    ...(oursIncludeOrigin ? ['isthmus\'s proxies share a process with the sample apps here: their CPU is the chain\'s minus its app\'s baseline\'s at the same rate, and their RSS includes the apps, federation services and all other proxies'] : []),
    `idle before load: isthmus proxies ${idle.isthmusProxies.toFixed(3)} CPU s/s, peer proxies ${idle.peerProxies.toFixed(3)} CPU s/s, dev up's tree ${idle.mesh.toFixed(3)} CPU s/s, other processes on the machine ${idle.other.toFixed(2)} CPU s/s`,
    `"machine stalls" = how often, and how long at most, an otherwise idle process (pid ${sentinel?.pid ?? '?'}${sentinel?.priorityRaised ? ', nice -20' : ', normal priority'}) found its ${sentinelTickMs} ms timer ${stallThresholdMs} ms late or more during the measured window: the machine itself standing still (a host pause), which alone can set a window's p99; busy cores do not delay it, so a bad tail with 0 here came from contention for the cores`,
    `"other CPU/s" = CPU seconds per second used during the point by processes that are neither the mesh, its etcd, the peer chain nor the generator: on a shared ${machine.cpus}-core machine, anything well above 0.1 competes with the proxies and inflates the tail`,
    `response bodies: ${scenarios.map((s) => `${s.scenario} ${s.responseBodyBytes} B`).join(', ')} (the sample app's JSON answer padded to ${responseBytes} bytes with ?size=, so both chains carry the same size although ours adds a longer x-forwarded-client-cert, which the app echoes)`,
    `latency from the scheduled send (open loop), keep-alive HTTP/1.1 (undici Pool of ${args.connections}) to the first hop, ${args.seconds} s per point after ${args.warmup} s warm-up at the same rate; "gen lag p99" = how late the generator's timer fired (inside every latency, mostly cancels out of "added")`,
    `targets (issue 9) are ratios isthmus/peer at 1000 requests/s: added p50 ≤ ${ratioTargets['added p50 ms']}×, added p99 ≤ ${ratioTargets['added p99 ms']}×, CPU ≤ ${ratioTargets['proxies CPU s/1k req']}×; at 2000 requests/s p50 ≤ ${ratioTargets['p50 ms']}× (no queueing). One run is not a trend: run it again before believing a ratio`,
    `source tree when the run started: ${source ? `commit ${source.commit}${source.uncommitted.length ? ` plus uncommitted changes in ${source.uncommitted.join(', ')}` : ', clean'}` : 'unknown (not a git checkout)'}; what ran is dist/, which \`npm run bench\` builds from it just before`,
    ...(args.accessLog ? [accessLogNote(join(stateDir, 'logs'), peers?.requestLogs ?? {})] : []),
    ...(args.nice !== 0 ? [`priority: every measured process (ours, the peers', etcd, the generator) ran at nice ${args.nice}, its scheduling group too, so other work on the machine took less from both chains alike`] : []),
    `load generator: ${generatorPer1000.toFixed(3)} CPU s/1k req on average, in its own process${mesh.mode === 'child' ? '' : ' (the same one as the mesh)'}; machine: ${machine.cpus} × ${machine.model}, Node ${machine.node}`,
  ];

  if (args.output === 'json') {
    process.stdout.write(`${JSON.stringify({
      date: new Date().toISOString(), machine, source, settings: args,
      mesh: { mode: mesh.mode, processes: mesh.processes, cpuCovers: mesh.cpuCovers, idleCpuPerSecond: idle.mesh, idleOtherPerSecond: idle.other },
      peers: { versions, processes: peers?.processes.map((p) => ({ name: p.name, pid: p.pid, services: p.services })) ?? [] },
      proxies: proxies.map((p) => ({ side: p.side, name: p.name, pid: p.pid, carries: p.carries, includesOrigin: p.includesOrigin })),
      idleProxiesCpuPerSecond: { isthmus: idle.isthmusProxies, peer: idle.peerProxies },
      scenarios, rows, comparisons, coldStart, targets: ratioTargets, notes,
    }, null, 2)}\n`);
  } else {
    process.stdout.write(`\nIsthmus data plane against the peer chain, ${new Date().toISOString()}\n`);
    for (const s of scenarios) process.stdout.write(`  ${s.scenario}: ${s.route}\n`);
    process.stdout.write(`\n${formatRows(rows)}\n\n${formatComparisons(comparisons)}\n\n${formatProxyCpu(rows, oursIncludeOrigin)}\n\n`);
    if (coldStart.length > 0) process.stdout.write(`${formatColdRows(coldStart)}\n\n`);
    for (const line of notes) process.stdout.write(`- ${line}\n`);
  }
  await cleanup();
  return 0;
}

const inside = (mesh: BenchMesh) => ({ generator: mesh.mode === 'in-process', etcd: mesh.etcdInsideMesh });

process.exitCode = await main(process.argv.slice(2));
// undici or a timer may still hold the loop for a moment; the work is done and reported.
setTimeout(() => process.exit(), 500).unref();

/** What `--access-log` wrote, counted when the notes are made: proof that both chains logged, and how much. */
function accessLogNote(ourLogDir: string, peerLogs: Record<string, string>): string {
  const ours = existsSync(ourLogDir) ? readdirSync(ourLogDir).filter((f) => f.endsWith('.access.log')).map((f) => `${f.replace(/\.access\.log$/, '')} ${countLines(join(ourLogDir, f))}`) : [];
  const peer = Object.entries(peerLogs).map(([name, file]) => `${name} ${countLines(file)}`);
  return `access logs on both chains (--access-log): every sidecar of ours wrote a JSON line per request and TCP connection (isthmus dev up --access-log json), the peer's nginx outbound and inbounds a JSON line per request with the same kind of fields; neither gateway logs. Lines written by the end: ours ${ours.join(', ') || 'none'}; peer ${peer.join(', ') || 'none'}`;
}

/** What each sample sidecar's inbound answered (requests) and each gateway carried (bytes), by pid, where its admin port answers. */
async function inboundCounts(proxies: ProxyProcess[]): Promise<Map<number, number>> {
  const counts = new Map<number, number>();
  await Promise.all(proxies.map(async (p) => {
    if (p.admin === undefined) return;
    const n = p.carried === 'gateway-bytes' ? await gatewayBytes(p.admin) : await inboundRequests(p.admin);
    if (n !== undefined) counts.set(p.pid, n);
  }));
  return counts;
}
