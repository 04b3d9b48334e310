import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IsthmusError } from '../core/errors.js';
import { benchArgsOrExit, benchFlags, integerFlag, pointFlags, type PointFlags } from './args.js';
import type { FloorRole } from './floor-chain.js';
import { runOpenLoop, type OpenLoopResult } from './open-loop.js';
import { peerVersions } from './peer-chain.js';
import { startReporting } from './node-floor-process.js';
import { writePeerCertificates } from './peer-certs.js';
import { idleCarrierShare, idleCarriers, proxiesSpent, readProcesses, withoutCarriers, type ProxyProcess } from './proxy-processes.js';
import { columns, median, startSideBySide } from './side-by-side.js';
import { sourceState } from './source-state.js';
import { targetClient, waitUntilServing, type TargetClient } from './target-client.js';
import type { Destination, Target } from './targets.js';

/**
 * `npm run bench:floor`: where Node itself stands against the peer chain on the same-cluster
 * chain, so that our ratio can be read against what any Node proxy pays. Four chains to east's
 * hello app, interleaved, at the same rate: the peer chain (nginx → nginx with mutual TLS), ours
 * (east's client sidecar → hello's sidecar), and two chains of bare Node processes in the
 * sidecars' places (floor-chain.ts): one that only relays bytes over the same kind of mutual TLS,
 * and one that also parses each head with Node's HTTP/1.1 parser and writes it anew. Each chain's
 * figure is the CPU of its two processes per request, and its added p50; the ratios are to the
 * peer chain's in the same run. Exits non-zero only when a chain could not be started.
 */

const usage = `usage: node dist/bench/floor.js [options]   (npm run bench:floor -- [options])
Same-cluster requests (east client → east hello, 1 KiB answers) through the peer chain (nginx → nginx),
through ours (client sidecar → hello's sidecar), and through two bare Node chains in the sidecars'
places (bytes relayed over mutual TLS; and heads parsed and rewritten too), interleaved; prints each
chain's CPU per request and added p50, and their ratios to the peer chain's.
  --rate <n>        requests per second (default 1000; 1..5000)
  --seconds <n>     measured seconds per point (default 10; 1..60)
  --warmup <n>      unmeasured seconds at the same rate before each point (default 2; 0..10)
  --rounds <n>      the chains measured this many times in turn (default 3; 1..9)
  --host-base <n>   the dev mesh's clusters on 127.0.<n>.1 and 127.0.<n+1>.1 (default 66)
  -o, --output table|json
  -h, --help`;

export interface FloorBenchArgs extends PointFlags { hostBase: number; output: 'table' | 'json' }

const invalid = (message: string) => new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `${message}\n${usage}`);

export function parseFloorBenchArgs(argv: string[]): FloorBenchArgs | 'help' {
  const flags = benchFlags(argv, { rate: '1000', seconds: '10', warmup: '2', rounds: '3', 'host-base': '66' }, invalid);
  if (flags === 'help') return 'help';
  const v = flags.values;
  return {
    ...pointFlags(v, 9, invalid),
    hostBase: integerFlag('host-base', v['host-base'], 1, 250, invalid),
    output: flags.output,
  };
}

/** The chains, in the order they are measured each round. */
export type FloorChain = 'baseline' | 'peer' | 'isthmus' | 'node relay' | 'node http';

const destination: Destination = { service: 'hello', cluster: 'east' };
const host = 'hello.demo.mesh';
const path = `http://${host}/?size=1024`;

/** One point: a chain's requests over `seconds`, and the CPU its proxies spent meanwhile. */
export interface FloorPoint { chain: FloorChain; round: number; result: OpenLoopResult; cpuSeconds: number }

export interface FloorRow {
  chain: FloorChain;
  /** CPU of the chain's two proxies per request, µs: the median over the rounds. */
  cpuMicrosPerRequest: number;
  /** p50 minus the app's own in the same round, ms: the median over the rounds. */
  addedP50Ms: number;
  /** The two above over the peer chain's; NaN for the peer and the baseline. */
  cpuRatio: number;
  addedP50Ratio: number;
  errors: number;
  requests: number;
}

/** Pure. One row per chain measured: the median over the rounds, and each chain's ratios to the peer's. */
export function floorRows(points: FloorPoint[]): FloorRow[] {
  const order: FloorChain[] = ['baseline', 'peer', 'isthmus', 'node relay', 'node http'];
  const baseline = (round: number) => points.find((p) => p.chain === 'baseline' && p.round === round)?.result.latency.percentile(50) ?? Number.NaN;
  const figures = order.flatMap((chain) => {
    const mine = points.filter((p) => p.chain === chain);
    if (mine.length === 0) return [];
    return [{
      chain,
      cpuMicrosPerRequest: chain === 'baseline' ? Number.NaN : median(mine.map((p) => (p.cpuSeconds / Math.max(1, p.result.ok + p.result.failed)) * 1e6)),
      addedP50Ms: chain === 'baseline' ? Number.NaN : median(mine.map((p) => p.result.latency.percentile(50) - baseline(p.round))),
      errors: mine.reduce((sum, p) => sum + p.result.failed, 0),
      requests: mine.reduce((sum, p) => sum + p.result.ok + p.result.failed, 0),
    }];
  });
  const peer = figures.find((f) => f.chain === 'peer');
  return figures.map((f) => ({
    ...f,
    cpuRatio: f.chain === 'peer' || !peer ? Number.NaN : f.cpuMicrosPerRequest / peer.cpuMicrosPerRequest,
    addedP50Ratio: f.chain === 'peer' || !peer ? Number.NaN : f.addedP50Ms / peer.addedP50Ms,
  }));
}

export function formatFloorRows(rows: FloorRow[]): string {
  const n = (v: number, digits = 2) => (Number.isNaN(v) ? '—' : v.toFixed(digits));
  const lines = [['chain', 'CPU µs/request', '÷ peer', 'added p50 ms', '÷ peer', 'errors/requests']];
  for (const r of rows) {
    const tally = `${r.errors}/${r.requests}`;
    if (r.chain === 'baseline') lines.push(['baseline (the app)', '—', '', '—', '', tally]);
    else lines.push([r.chain, n(r.cpuMicrosPerRequest, 0), r.chain === 'peer' ? '1' : `${n(r.cpuRatio)}×`, n(r.addedP50Ms), r.chain === 'peer' ? '1' : `${n(r.addedP50Ratio)}×`, tally]);
  }
  return columns(lines);
}

const say = (line: string) => process.stderr.write(`${line}\n`);

/** Starts one floor-chain.js process; resolves with it and where it listens. */
export async function startFloorHop(role: FloorRole, args: { host: string; to: string; ca: string; cert: string; key: string }, script = new URL('./floor-chain.js', import.meta.url)): Promise<{ child: ChildProcess; listen: string }> {
  const { child, first } = await startReporting<{ listen: string }>(script, ['--role', role, '--host', args.host, '--to', args.to, '--ca', args.ca, '--cert', args.cert, '--key', args.key], 'floor-chain');
  return { child, listen: first.listen };
}

async function main(argv: string[]): Promise<number> {
  const args = benchArgsOrExit(parseFloorBenchArgs, argv, usage, say);
  if ('exit' in args) return args.exit;
  const started = await startSideBySide({ name: 'floor', hostBase: args.hostBase, destination, say });
  if (!started) return 1;
  const certDir = mkdtempSync(join(tmpdir(), 'isthmus-bench-floor-certs-'));
  const floorProcesses: ChildProcess[] = [];
  const clients: TargetClient[] = [];
  const cleanup = async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    for (const child of floorProcesses) child.kill();
    rmSync(certDir, { recursive: true, force: true });
    await started.cleanup();
  };
  try {
    const { peers, east, origin } = started;
    // The floor chains' certificates come from a CA of their own, of the kind the peer chain's come from.
    const certs = writePeerCertificates(certDir, { trustDomain: 'bench.isthmus', namespace: 'demo', clientCluster: 'east', inbounds: [{ service: 'floor', cluster: 'east', sniName: 'floor' }] });
    const inbound = certs.inbound.floor as { certChain: string; key: string };
    const floorHost = `127.0.${args.hostBase}.3`;
    const chain = async (kind: 'relay' | 'http') => {
      const inHop = await startFloorHop(`${kind}-in`, { host: floorHost, to: origin, ca: certs.rootCa, cert: inbound.certChain, key: inbound.key });
      floorProcesses.push(inHop.child);
      const outHop = await startFloorHop(`${kind}-out`, { host: floorHost, to: inHop.listen, ca: certs.rootCa, cert: certs.outbound.certChain, key: certs.outbound.key });
      floorProcesses.push(outHop.child);
      return { first: outHop.listen, pids: [outHop.child.pid as number, inHop.child.pid as number] };
    };
    const relay = await chain('relay');
    const http = await chain('http');
    say(`node relay: ${relay.first} → ${floorHost} (pids ${relay.pids.join(', ')}); node http: ${http.first} (pids ${http.pids.join(', ')})`);

    const target = (chain: FloorChain, firstHop: string, route: string): Target & { chain: FloorChain } => ({
      chain, scenario: 'same-cluster', side: chain === 'peer' ? 'peer' : chain === 'baseline' ? 'origin' : 'isthmus', route, firstHop,
      path: chain === 'baseline' ? '/?size=1024' : path, host: chain === 'baseline' ? origin : host, expect: destination,
    });
    const targets = [
      target('baseline', origin, `direct → east hello app (${origin})`),
      target('peer', peers.outbound, `nginx outbound (${peers.outbound}) → nginx inbound (client certificate required) → app`),
      target('isthmus', east.client.proxy, `east client sidecar (${east.client.proxy}) → hello's sidecar inbound → app`),
      target('node relay', relay.first, `node relay-out (${relay.first}) → node relay-in (mutual TLS) → app: bytes only`),
      target('node http', http.first, `node http-out (${http.first}) → node http-in (mutual TLS) → app: heads parsed and written anew`),
    ];
    for (const t of targets) {
      await waitUntilServing(t, 30_000);
      clients.push(targetClient(t, 128));
    }
    const loop = { rate: args.rate, maxInFlight: Math.max(256, args.rate * 2), drainMs: 6_000 };
    // Our chain counts only the sidecars that carried it: hello runs in both of east's zones, and
    // the client keeps to its own (proxy-processes.ts, idleCarriers).
    let proxies: ProxyProcess[] = started.proxies;
    const ours = clients[2] as TargetClient;
    const before = readProcesses(proxies.map((p) => p.pid));
    await runOpenLoop({ ...loop, send: () => ours.send(), seconds: 2 });
    const idle = idleCarriers(proxies, destination, before, readProcesses(proxies.map((p) => p.pid)), idleCarrierShare);
    proxies = withoutCarriers(proxies, idle.map((i) => i.process), destination);
    for (const i of idle) say(`  ${i.process.name} is not counted: it carried none of the chain while it was primed`);

    const cpuOf = (chain: FloorChain) => {
      if (chain === 'node relay' || chain === 'node http') {
        const pids = chain === 'node relay' ? relay.pids : http.pids;
        return { pids, spent: (b: ReturnType<typeof readProcesses>, a: ReturnType<typeof readProcesses>) => pids.reduce((sum, pid) => sum + ((a.get(pid)?.cpuSeconds ?? Number.NaN) - (b.get(pid)?.cpuSeconds ?? Number.NaN)), 0) };
      }
      const side = chain === 'peer' ? 'peer' : 'isthmus';
      return { pids: proxies.map((p) => p.pid), spent: (b: ReturnType<typeof readProcesses>, a: ReturnType<typeof readProcesses>) => (chain === 'baseline' ? Number.NaN : proxiesSpent(proxies, side, destination, b, a).cpuSeconds) };
    };
    const points: FloorPoint[] = [];
    for (let round = 1; round <= args.rounds; round += 1) {
      for (const [i, t] of targets.entries()) {
        const client = clients[i] as TargetClient;
        say(`  round ${round}: ${t.chain} at ${args.rate} requests/s: ${args.warmup} s warm-up, ${args.seconds} s measured`);
        if (args.warmup > 0) await runOpenLoop({ ...loop, send: () => client.send(), seconds: args.warmup });
        const { pids, spent } = cpuOf(t.chain);
        const b = readProcesses(pids);
        const result = await runOpenLoop({ ...loop, send: () => client.send(), seconds: args.seconds });
        points.push({ chain: t.chain, round, result, cpuSeconds: spent(b, readProcesses(pids)) });
      }
    }
    const rows = floorRows(points);
    const source = sourceState();
    const versions = peerVersions();
    if (args.output === 'json') {
      process.stdout.write(`${JSON.stringify({ date: new Date().toISOString(), source, settings: args, peers: versions, targets: targets.map(({ chain, route }) => ({ chain, route })), rows }, null, 2)}\n`);
    } else {
      process.stdout.write(`\nSame-cluster, east client → east hello (1 KiB answers), ${args.rate} requests/s, ${args.seconds} s per point, ${args.rounds} round(s), ${new Date().toISOString()}\n`);
      for (const t of targets) process.stdout.write(`  ${t.chain}: ${t.route}\n`);
      process.stdout.write(`\n${formatFloorRows(rows)}\n`);
      process.stdout.write(`- peer chain: ${versions.nginx}, one process each; the Node chains: ${process.version}, one process per hop, one mutual-TLS connection per accepted one\n`);
      process.stdout.write('- CPU = utime + stime of the chain\'s two proxies over the measured seconds, per request; each figure the median over the rounds\n');
      process.stdout.write(`- source: ${source ? `commit ${source.commit}${source.uncommitted.length ? ' plus uncommitted changes' : ''}` : 'unknown'}\n`);
    }
    return 0;
  } catch (err) {
    say(`the floor bench failed: ${(err as Error).message}`);
    return 1;
  } finally {
    await cleanup();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.exitCode = await main(process.argv.slice(2));
  setTimeout(() => process.exit(), 500).unref();
}
