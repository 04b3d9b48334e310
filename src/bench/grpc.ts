import { connect, type ClientHttp2Session } from 'node:http2';
import { IsthmusError } from '../core/errors.js';
import { benchArgsOrExit, benchFlags, integerFlag, pointFlags, type PointFlags } from './args.js';
import { runOpenLoop, type OpenLoopResult, type Outcome } from './open-loop.js';
import { peerServiceHost, peerVersions } from './peer-chain.js';
import { columns, measured, median, startSideBySide, type ChainSpent } from './side-by-side.js';
import { sourceState } from './source-state.js';
import type { Destination } from './targets.js';

/**
 * `npm run bench:grpc`: what a unary gRPC call costs through our mesh across clusters, beside the
 * peer chain carrying the same call (nginx's gRPC proxy as outbound, HAProxy passing TLS through
 * by SNI, nginx's gRPC proxy as inbound), in the same run and measured as `npm run bench`
 * measures HTTP/1.1: open loop, latency from the scheduled send to the call's end (trailers
 * included), "added" = a chain's figure minus the app's own asked directly at the same rate, CPU
 * of the three proxies per 1000 calls. The calls are the dev mesh's gRPC sample (`grpc-echo`,
 * west), unary `Echo` with a 1 KiB message, from east. Exits non-zero only when the mesh or the
 * peer chain could not be started.
 */

const usage = `usage: node dist/bench/grpc.js [options]   (npm run bench:grpc -- [options])
Unary gRPC calls from east to west's grpc-echo: straight to the app (baseline), through our mesh
(east client sidecar → west gateway → grpc-echo's sidecar) and through the peer chain (nginx →
HAProxy → nginx, gRPC proxy with mutual TLS), interleaved; prints each and the ratios ours/peer.
  --rate <n>        calls per second (default 1000; 1..5000)
  --seconds <n>     measured seconds per point (default 5; 1..60)
  --warmup <n>      unmeasured seconds at the same rate before each point (default 2; 0..10)
  --rounds <n>      the three points measured this many times in turn (default 2; 1..5)
  --sessions <n>    HTTP/2 connections from the generator to each first hop (default 8; 1..64)
  --host-base <n>   the dev mesh's clusters on 127.0.<n>.1 and 127.0.<n+1>.1 (default 56)
  -o, --output table|json
  -h, --help`;

interface GrpcBenchArgs extends PointFlags { sessions: number; hostBase: number; output: 'table' | 'json' }

const invalid = (message: string) => new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `${message}\n${usage}`);

export function parseGrpcBenchArgs(argv: string[]): GrpcBenchArgs | 'help' {
  const flags = benchFlags(argv, { rate: '1000', seconds: '5', warmup: '2', rounds: '2', sessions: '8', 'host-base': '56' }, invalid);
  if (flags === 'help') return 'help';
  const v = flags.values;
  return {
    ...pointFlags(v, 5, invalid),
    sessions: integerFlag('sessions', v.sessions, 1, 64, invalid),
    hostBase: integerFlag('host-base', v['host-base'], 1, 250, invalid),
    output: flags.output,
  };
}

type Side = 'origin' | 'isthmus' | 'peer';
interface GrpcTarget { side: Side; label: string; route: string; firstHop: string }

const destination: Destination = { service: 'grpc-echo', cluster: 'west' };
const requestTimeoutMs = 5_000;
/** The Echo request: JSON (the sample's messages are JSON), the message padded so the call carries about 1 KiB each way. */
export const echoFrame = (() => {
  const message = Buffer.from(JSON.stringify({ message: 'x'.repeat(1000) }));
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
})();

/** A unary Echo over `sessions` kept h2c connections to `firstHop`, in turn. A grpc-status other than 0 is a failure (500 + the code). */
export function grpcCaller(firstHop: string, sessions: number): { send: () => Promise<Outcome>; close: () => void } {
  const open: ClientHttp2Session[] = Array.from({ length: sessions }, () => {
    const session = connect(`http://${firstHop}`);
    session.on('error', () => undefined);
    return session;
  });
  let next = 0;
  const headers = {
    ':method': 'POST', ':path': '/isthmus.dev.Echo/Echo', ':authority': peerServiceHost(destination.service, 'demo'),
    'content-type': 'application/grpc', te: 'trailers', 'grpc-timeout': `${requestTimeoutMs}m`,
  };
  return {
    send: () => new Promise<Outcome>((resolve, reject) => {
      const session = open[next % open.length] as ClientHttp2Session;
      next += 1;
      const stream = session.request(headers);
      let status: string | undefined;
      let bytes = 0;
      stream.on('response', (h) => { status = h['grpc-status'] as string | undefined; });
      stream.on('trailers', (t) => { status = t['grpc-status'] as string | undefined; });
      stream.on('data', (chunk: Buffer) => { bytes += chunk.length; });
      stream.on('error', reject);
      stream.on('close', () => resolve({ status: status === '0' ? 200 : 500 + Number(status ?? 99), bytes }));
      stream.end(echoFrame);
    }),
    close: () => { for (const s of open) s.close(); },
  };
}

interface Point extends ChainSpent { side: Side; round: number; result: OpenLoopResult }

const say = (line: string) => process.stderr.write(`${line}\n`);

async function main(argv: string[]): Promise<number> {
  const args = benchArgsOrExit(parseGrpcBenchArgs, argv, usage, say);
  if ('exit' in args) return args.exit;
  const started = await startSideBySide({ name: 'grpc', hostBase: args.hostBase, destination, grpc: true, say });
  if (!started) return 1;
  const { peers, east, origin, proxies } = started;
  const callers: { close: () => void }[] = [];
  const cleanup = async () => {
    for (const c of callers) c.close();
    await started.cleanup();
  };
  const listener = east.client.listeners[`demo/${destination.service}`];
  if (!listener || !peers.grpcOutbound) {
    say('east\'s client sidecar has no listener for grpc-echo, or the peer chain no gRPC listener');
    await cleanup();
    return 1;
  }
  const targets: GrpcTarget[] = [
    { side: 'origin', label: 'baseline grpc-echo', route: `direct → west grpc-echo app (${origin})`, firstHop: origin },
    { side: 'isthmus', label: 'isthmus cross-cluster', route: `east client sidecar's grpc-echo listener (${listener}) → west gateway → grpc-echo sidecar → app`, firstHop: listener },
    { side: 'peer', label: 'peer cross-cluster', route: `nginx outbound (${peers.grpcOutbound}) → HAProxy gateway (SNI passthrough) → nginx inbound → app`, firstHop: peers.grpcOutbound },
  ];

  const clients = targets.map((t) => {
    const caller = grpcCaller(t.firstHop, args.sessions);
    callers.push(caller);
    return { target: t, send: caller.send };
  });
  // Every first hop answers a call before anything is measured (a sidecar learns its routes a moment after it listens).
  for (const { target, send } of clients) {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const outcome = await send().catch(() => undefined);
      if (outcome?.status === 200) break;
      if (Date.now() > deadline) {
        say(`${target.label} did not answer a gRPC call within 30 s (last: ${outcome ? `status ${outcome.status}` : 'no answer'})`);
        await cleanup();
        return 1;
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  const loop = { rate: args.rate, maxInFlight: Math.max(256, args.rate * 2), drainMs: requestTimeoutMs + 1_000 };
  const points: Point[] = [];
  for (let round = 1; round <= args.rounds; round += 1) {
    for (const { target, send } of clients) {
      say(`  round ${round}: ${target.label} at ${args.rate} calls/s: ${args.warmup} s warm-up, ${args.seconds} s measured`);
      if (args.warmup > 0) await runOpenLoop({ ...loop, send, seconds: args.warmup });
      points.push({ side: target.side, round, ...await measured(proxies, target.side, destination, () => runOpenLoop({ ...loop, send, seconds: args.seconds })) });
    }
  }
  const rows = grpcRows(points);
  const versions = peerVersions();
  const source = sourceState();
  if (args.output === 'json') {
    process.stdout.write(`${JSON.stringify({ date: new Date().toISOString(), source, settings: args, peers: versions, targets, rows, ratios: grpcRatios(rows) }, null, 2)}\n`);
  } else {
    process.stdout.write(`\nUnary gRPC, east → west grpc-echo, ${args.rate} calls/s, ${args.seconds} s per point, ${args.rounds} round(s), ${new Date().toISOString()}\n`);
    for (const t of targets) process.stdout.write(`  ${t.label}: ${t.route}\n`);
    process.stdout.write(`\n${formatGrpcRows(rows)}\n`);
    process.stdout.write(`- peer chain: ${versions.nginx} (grpc_pass, grpc_ssl_* with TLS 1.3 and the client certificate required) and ${versions.haproxy} (mode tcp, SNI passthrough); one process each\n`);
    process.stdout.write(`- each figure is the median over the rounds of that point's figure; CPU = utime + stime of the chain's three proxies per 1000 calls; RSS = the sum of their peak RSS (MB = 10⁶ bytes)\n`);
    process.stdout.write(`- each proxy's CPU per 1000 calls in the last round: ${perProcess(points).join('; ')}\n`);
    process.stdout.write(`- source: ${source ? `commit ${source.commit}${source.uncommitted.length ? ' plus uncommitted changes' : ''}` : 'unknown'}\n`);
  }
  await cleanup();
  return 0;
}

/** `name 0.123 s` per proxy of each side, from the last round's points. */
function perProcess(points: Point[]): string[] {
  const last = Math.max(...points.map((p) => p.round));
  return points.filter((p) => p.round === last && p.side !== 'origin').flatMap((p) => {
    const calls = Math.max(1, p.result.ok + p.result.failed);
    return p.processes.map((proc) => `${p.side} ${proc.name} ${((proc.cpuSeconds / calls) * 1000).toFixed(3)} s`);
  });
}

export interface GrpcRow { side: Side; p50Ms: number; p99Ms: number; addedP50Ms: number; addedP99Ms: number; cpuSecondsPer1000: number; peakRssMb: number; errors: number; calls: number }

/** Pure. One row per side: the median over the rounds of each point's figures, "added" against the baseline of the same round. */
export function grpcRows(points: Point[]): GrpcRow[] {
  const sides: Side[] = ['origin', 'isthmus', 'peer'];
  const baseline = (round: number) => points.find((p) => p.side === 'origin' && p.round === round)?.result;
  return sides.flatMap((side) => {
    const mine = points.filter((p) => p.side === side);
    if (mine.length === 0) return [];
    const fig = (f: (p: Point) => number) => median(mine.map(f));
    return [{
      side,
      p50Ms: fig((p) => p.result.latency.percentile(50)),
      p99Ms: fig((p) => p.result.latency.percentile(99)),
      addedP50Ms: side === 'origin' ? Number.NaN : fig((p) => p.result.latency.percentile(50) - (baseline(p.round)?.latency.percentile(50) ?? Number.NaN)),
      addedP99Ms: side === 'origin' ? Number.NaN : fig((p) => p.result.latency.percentile(99) - (baseline(p.round)?.latency.percentile(99) ?? Number.NaN)),
      cpuSecondsPer1000: fig((p) => (p.cpuSeconds / Math.max(1, p.result.ok + p.result.failed)) * 1000),
      // MB = 10⁶ bytes, as npm run bench reports it.
      peakRssMb: fig((p) => p.peakRssBytes / 1e6),
      errors: mine.reduce((sum, p) => sum + p.result.failed, 0),
      calls: mine.reduce((sum, p) => sum + p.result.ok + p.result.failed, 0),
    }];
  });
}

/** Pure. Ours over the peer's, for the figures issue 9 sets targets on for HTTP/1.1. */
export function grpcRatios(rows: GrpcRow[]): Record<'addedP50' | 'addedP99' | 'cpu', number> {
  const ours = rows.find((r) => r.side === 'isthmus');
  const peer = rows.find((r) => r.side === 'peer');
  const ratio = (f: (r: GrpcRow) => number) => (ours && peer ? f(ours) / f(peer) : Number.NaN);
  return { addedP50: ratio((r) => r.addedP50Ms), addedP99: ratio((r) => r.addedP99Ms), cpu: ratio((r) => r.cpuSecondsPer1000) };
}

export function formatGrpcRows(rows: GrpcRow[]): string {
  const n = (v: number, digits = 2) => (Number.isNaN(v) ? '—' : v.toFixed(digits));
  const lines = [['', 'p50 ms', 'p99 ms', 'added p50', 'added p99', 'proxies CPU s/1k', 'proxies RSS MB', 'errors/calls']];
  for (const r of rows) lines.push([r.side === 'origin' ? 'baseline (the app)' : r.side, n(r.p50Ms), n(r.p99Ms), n(r.addedP50Ms), n(r.addedP99Ms), n(r.cpuSecondsPer1000, 3), n(r.peakRssMb, 1), `${r.errors}/${r.calls}`]);
  const ratios = grpcRatios(rows);
  lines.push(['isthmus/peer', '', '', `${n(ratios.addedP50)}×`, `${n(ratios.addedP99)}×`, `${n(ratios.cpu)}×`, '', '']);
  return columns(lines);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.exitCode = await main(process.argv.slice(2));
  setTimeout(() => process.exit(), 500).unref();
}
