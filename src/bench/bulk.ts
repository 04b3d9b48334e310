import { request } from 'node:http';
import { IsthmusError } from '../core/errors.js';
import { isRelayKind, type RelayKind } from '../core/native-relay.js';
import { benchArgsOrExit, benchFlags, integerFlag } from './args.js';
import { peerServiceHost, peerVersions } from './peer-chain.js';
import { columns, measured, median, startSideBySide, type ChainSpent } from './side-by-side.js';
import { sourceState } from './source-state.js';
import type { Destination } from './targets.js';

/**
 * `npm run bench:bulk`: what large bodies cost through our mesh across clusters, beside the peer
 * chain carrying the same transfers (nginx with bodies streamed, HAProxy passing TLS through by
 * SNI, nginx), in the same run. Four kinds of transfer from east to west's ledger, one at a time:
 * a download (`GET /bytes?n=`, answered with a content-length), the same download chunked (as an
 * app that streams what it does not measure answers), an upload (`POST /upload` with a body of
 * the same size and a content-length, answered with its length once read) and the same upload
 * chunked, with no length, as `curl -T -` or a streaming client sends it. For each:
 * the throughput, the CPU of each chain's three proxies per gigabyte moved, and their peak RSS.
 * The app asked straight gives the baseline throughput. Exits non-zero only when the mesh or the
 * peer chain could not be started.
 *
 * Not an echo (`POST /echo`, both directions at once): nginx's proxy does not read the answer
 * while it still sends the request, and an echo larger than its buffers stalls until its
 * upstream timeout (60 s), measured 2026-12-06 (docs/benchmark-history.md).
 */

const usage = `usage: node dist/bench/bulk.js [options]   (npm run bench:bulk -- [options])
Large transfers from east to west's ledger, one at a time (a download and an upload, each with
a length and chunked): straight to the app (baseline),
through our mesh (east client sidecar → west gateway → ledger's sidecar) and through the peer
chain (nginx → HAProxy → nginx, bodies streamed, mutual TLS), interleaved; prints each and the
ratios ours/peer.
  --megabytes <n>   size of each download and of each upload, either kind, in MB of 10⁶ bytes (default 256; 1..4096)
  --rounds <n>      every transfer repeated this many times in turn (default 2; 1..5)
  --host-base <n>   the dev mesh's clusters on 127.0.<n>.1 and 127.0.<n+1>.1 (default 86)
  --gateway-relay native|node  what copies bytes in our gateway (default native; node: JavaScript, to compare)
  -o, --output table|json
  -h, --help`;

export interface BulkBenchArgs { megabytes: number; rounds: number; hostBase: number; gatewayRelay: RelayKind; output: 'table' | 'json' }

const invalid = (message: string) => new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `${message}\n${usage}`);

export function parseBulkBenchArgs(argv: string[]): BulkBenchArgs | 'help' {
  const flags = benchFlags(argv, { megabytes: '256', rounds: '2', 'host-base': '86', 'gateway-relay': 'native' }, invalid);
  if (flags === 'help') return 'help';
  const v = flags.values;
  const relay = v['gateway-relay'];
  if (!isRelayKind(relay)) throw invalid(`--gateway-relay must be native or node, not "${relay}"`);
  return {
    megabytes: integerFlag('megabytes', v.megabytes, 1, 4096, invalid),
    rounds: integerFlag('rounds', v.rounds, 1, 5, invalid),
    hostBase: integerFlag('host-base', v['host-base'], 1, 250, invalid),
    gatewayRelay: relay,
    output: flags.output,
  };
}

type Side = 'origin' | 'isthmus' | 'peer';
/** The kinds of transfer, in the order they run and print. */
export const transferKinds = ['download', 'chunked download', 'upload', 'chunked upload'] as const;
export type TransferKind = typeof transferKinds[number];
interface BulkTarget { side: Side; label: string; route: string; firstHop: string; viaProxy: boolean }

const destination: Destination = { service: 'ledger', cluster: 'west' };
const host = peerServiceHost(destination.service, 'demo');

/** What one transfer moved (the body, one way) and how long it took; `error` when it failed or fell short. */
export interface Transfer { seconds: number; bytes: number; error?: string }

/**
 * One transfer through `firstHop`: as a proxy request (absolute-form, to an outbound) or to the
 * app itself. A download reads `bytes` bytes and counts them; an upload sends `bytes` (one
 * 64 KiB block repeated, written with back-pressure) and reads the app's count of what arrived.
 */
export function transfer(firstHop: string, viaProxy: boolean, kind: TransferKind, bytes: number): Promise<Transfer> {
  const colon = firstHop.lastIndexOf(':');
  const [hostname, port] = [firstHop.slice(0, colon), Number(firstHop.slice(colon + 1))];
  const upload = kind === 'upload' || kind === 'chunked upload';
  const path = upload ? '/upload' : `/bytes?n=${bytes}${kind === 'chunked download' ? '&chunked=1' : ''}`;
  const started = performance.now();
  return new Promise((resolve) => {
    let bytesIn = 0;
    let bytesOut = 0;
    let answer = '';
    const done = (error?: string) => resolve({ seconds: (performance.now() - started) / 1000, bytes: upload ? bytesOut : bytesIn, ...(error ? { error } : {}) });
    const shortfall = (): string | undefined => {
      if (!upload) return bytesIn === bytes ? undefined : `${bytesIn} of ${bytes} bytes came`;
      const arrived = (JSON.parse(answer) as { bytes?: unknown }).bytes;
      return arrived === bytes ? undefined : `the app read ${String(arrived)} of ${bytes} bytes`;
    };
    const req = request({
      hostname, port, agent: false, method: upload ? 'POST' : 'GET', path: viaProxy ? `http://${host}${path}` : path,
      // A chunked upload has no length: node:http then frames each 64 KiB write as a chunk.
      headers: { host, ...(upload ? { 'content-type': 'application/octet-stream' } : {}), ...(kind === 'upload' ? { 'content-length': String(bytes) } : {}) },
    }, (res) => {
      res.on('data', (chunk: Buffer) => {
        bytesIn += chunk.length;
        if (upload && answer.length < 4096) answer += chunk.toString();
      });
      res.once('end', () => {
        if (res.statusCode !== 200) return done(`status ${res.statusCode}`);
        try {
          done(shortfall());
        } catch {
          done(`the app's answer is not its count: ${answer.slice(0, 100)}`);
        }
      });
      res.once('error', (err) => done(err.message));
    });
    req.once('error', (err) => done(err.message));
    if (!upload) return void req.end();
    const block = Buffer.alloc(64 * 1024, 0x61);
    const more = () => {
      while (bytesOut < bytes) {
        const size = Math.min(block.length, bytes - bytesOut);
        bytesOut += size;
        if (!req.write(size === block.length ? block : block.subarray(0, size))) return void req.once('drain', more);
      }
      req.end();
    };
    more();
  });
}

export interface BulkPoint extends ChainSpent { side: Side; kind: TransferKind; round: number; transfer: Transfer }

const say = (line: string) => process.stderr.write(`${line}\n`);

async function main(argv: string[]): Promise<number> {
  const args = benchArgsOrExit(parseBulkBenchArgs, argv, usage, say);
  if ('exit' in args) return args.exit;
  const started = await startSideBySide({ name: 'bulk', hostBase: args.hostBase, destination, streamBodies: true, gatewayRelay: args.gatewayRelay, say });
  if (!started) return 1;
  const { peers, east, origin, proxies, cleanup } = started;
  const targets: BulkTarget[] = [
    { side: 'origin', label: 'baseline ledger', route: `direct → west ledger app (${origin})`, firstHop: origin, viaProxy: false },
    { side: 'isthmus', label: 'isthmus cross-cluster', route: `east client sidecar's proxy port (${east.client.proxy}) → west gateway → ledger sidecar → app`, firstHop: east.client.proxy, viaProxy: true },
    { side: 'peer', label: 'peer cross-cluster', route: `nginx outbound (${peers.outbound}) → HAProxy gateway (SNI passthrough) → nginx inbound → app`, firstHop: peers.outbound, viaProxy: true },
  ];

  // Every first hop carries a small download before anything is measured (a sidecar learns its routes a moment after it listens).
  for (const target of targets) {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const probe = await transfer(target.firstHop, target.viaProxy, 'download', 1000);
      if (!probe.error) break;
      if (Date.now() > deadline) {
        say(`${target.label} did not carry a small download within 30 s (last: ${probe.error})`);
        await cleanup();
        return 1;
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  const bytes = args.megabytes * 1_000_000;
  const points: BulkPoint[] = [];
  for (let round = 1; round <= args.rounds; round += 1) {
    for (const kind of transferKinds) {
      for (const target of targets) {
        say(`  round ${round}: ${kind} of ${args.megabytes} MB, ${target.label}`);
        const { result: moved, ...spent } = await measured(proxies, target.side, destination, () => transfer(target.firstHop, target.viaProxy, kind, bytes));
        if (moved.error) say(`    failed: ${moved.error}`);
        points.push({ side: target.side, kind, round, transfer: moved, ...spent });
      }
    }
  }
  const rows = bulkRows(points);
  const versions = peerVersions();
  const source = sourceState();
  if (args.output === 'json') {
    process.stdout.write(`${JSON.stringify({ date: new Date().toISOString(), source, settings: args, peers: versions, targets, rows, ratios: bulkRatios(rows) }, null, 2)}\n`);
  } else {
    process.stdout.write(`\nLarge transfers, east → west ledger, ${args.megabytes} MB each, ${args.rounds} round(s), ${new Date().toISOString()}\n`);
    for (const t of targets) process.stdout.write(`  ${t.label}: ${t.route}\n`);
    process.stdout.write(`\n${formatBulkRows(rows)}\n`);
    process.stdout.write(`- download: GET /bytes?n= (answered with a content-length); chunked download: GET /bytes?n=&chunked=1 (no length, a chunk per 64 KiB write); upload: POST /upload with a content-length (the app answers the count it read); chunked upload: the same with no length (transfer-encoding: chunked, a chunk per 64 KiB write)\n`);
    process.stdout.write(`- peer chain: ${versions.nginx} (client_max_body_size 0, proxy_request_buffering off, proxy_buffering off; TLS 1.3 with the client certificate required) and ${versions.haproxy} (mode tcp, SNI passthrough); one process each\n`);
    process.stdout.write(`- each figure is the median over the rounds; CPU = utime + stime of the chain's three proxies per GB of body moved; RSS = the sum of their peak RSS (MB = 10⁶ bytes, GB = 10⁹)\n`);
    process.stdout.write(`- each proxy's CPU per GB in the last round: ${perProcess(points).join('; ')}\n`);
    process.stdout.write(`- source: ${source ? `commit ${source.commit}${source.uncommitted.length ? ' plus uncommitted changes' : ''}` : 'unknown'}\n`);
  }
  await cleanup();
  return 0;
}

/** `side kind name 1.23 s` per proxy, from the last round's points. */
function perProcess(points: BulkPoint[]): string[] {
  const last = Math.max(...points.map((p) => p.round));
  return points.filter((p) => p.round === last && p.side !== 'origin').flatMap((p) =>
    p.processes.map((proc) => `${p.side} ${p.kind} ${proc.name} ${(proc.cpuSeconds / (Math.max(1, p.transfer.bytes) / 1e9)).toFixed(2)} s`));
}

export interface BulkRow { side: Side; kind: TransferKind; megabytesPerSecond: number; cpuSecondsPerGb: number; peakRssMb: number; failed: number; transfers: number }

/** Pure. One row per side and kind: the median over the rounds; a failed transfer counts in `failed` and in no figure. */
export function bulkRows(points: BulkPoint[]): BulkRow[] {
  const rows: BulkRow[] = [];
  for (const kind of transferKinds) {
    for (const side of ['origin', 'isthmus', 'peer'] as const) {
      const mine = points.filter((p) => p.side === side && p.kind === kind);
      if (mine.length === 0) continue;
      const good = mine.filter((p) => !p.transfer.error);
      const fig = (f: (p: BulkPoint) => number) => median(good.map(f));
      rows.push({
        side, kind,
        megabytesPerSecond: fig((p) => p.transfer.bytes / 1e6 / p.transfer.seconds),
        cpuSecondsPerGb: fig((p) => p.cpuSeconds / (p.transfer.bytes / 1e9)),
        peakRssMb: fig((p) => p.peakRssBytes / 1e6),
        failed: mine.length - good.length,
        transfers: mine.length,
      });
    }
  }
  return rows;
}

/** Pure. Ours over the peer's, per kind: throughput (higher is better) and CPU per GB (lower is better). */
export function bulkRatios(rows: BulkRow[]): Record<TransferKind, { throughput: number; cpu: number }> {
  const ratio = (kind: TransferKind, f: (r: BulkRow) => number) => {
    const ours = rows.find((r) => r.side === 'isthmus' && r.kind === kind);
    const peer = rows.find((r) => r.side === 'peer' && r.kind === kind);
    return ours && peer ? f(ours) / f(peer) : Number.NaN;
  };
  return Object.fromEntries(transferKinds.map((kind) => [kind, { throughput: ratio(kind, (r) => r.megabytesPerSecond), cpu: ratio(kind, (r) => r.cpuSecondsPerGb) }])) as Record<TransferKind, { throughput: number; cpu: number }>;
}

export function formatBulkRows(rows: BulkRow[]): string {
  const n = (v: number, digits = 2) => (Number.isNaN(v) ? '—' : v.toFixed(digits));
  const lines = [['', 'MB/s', 'proxies CPU s/GB', 'proxies RSS MB', 'failed/transfers']];
  const ratios = bulkRatios(rows);
  for (const kind of transferKinds) {
    for (const r of rows.filter((row) => row.kind === kind)) {
      lines.push([`${kind} ${r.side === 'origin' ? 'baseline (the app)' : r.side}`, n(r.megabytesPerSecond, 0), n(r.cpuSecondsPerGb), n(r.peakRssMb, 1), `${r.failed}/${r.transfers}`]);
    }
    lines.push([`${kind} isthmus/peer`, `${n(ratios[kind].throughput)}×`, `${n(ratios[kind].cpu)}×`, '', '']);
  }
  return columns(lines);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.exitCode = await main(process.argv.slice(2));
  setTimeout(() => process.exit(), 500).unref();
}
