import { fstatSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { IsthmusError } from '../core/errors.js';
import { ensureDirectory } from '../core/user-paths.js';
import { canaryRouteName, rolloutObjectiveName, writeCanaryFiles, writeSloFile } from '../dev/canary-files.js';
import type { RelayKind } from '../core/native-relay.js';
import type { MeshFile } from '../dev/dev-mesh.js';
import { action, connectStore, etcdOption, etcdTlsFiles, outputOption, wholeNumber, type EtcdFlags } from './common.js';
import { printJson } from './output.js';

interface DevUpOptions extends EtcdFlags { clusters: string; stateDir?: string; trustDomain: string; gateways: number; hostBase: number; traffic: number; processes: boolean; versions: boolean; accessLog?: 'json' | 'text' | true; upgradeToHttp2: boolean; gatewayRelay: RelayKind; output: string }

export function registerDev(program: Command): void {
  const dev = program.command('dev').description('run a whole mesh on this machine, for trying Isthmus out');
  dev.command('up')
    .description('start etcd, a CA and N clusters (federation service, sample services, exports) on loopback; Ctrl-C stops everything')
    .option('--clusters <names>', 'comma-separated cluster names', 'east,west')
    .option('--state-dir <dir>', 'keep state here (and write mesh.json); default: a temporary directory removed on exit')
    .option('--trust-domain <domain>', 'trust domain of the dev mesh', 'dev.isthmus')
    .option('--gateways <n>', 'east-west gateways per cluster', wholeNumber(0, 16), 1)
    .option('--host-base <n>', 'cluster n listens on 127.0.<n+base-1>.1; change it to run a second dev mesh beside the first', wholeNumber(1, 254), 1)
    .option('--traffic <rps>', 'sample requests a second from each cluster\'s client sidecar, for the dashboard (0: none)', (v) => {
      const n = Number(v);
      if (!Number.isFinite(n) || n < 0 || n > 200) throw new InvalidArgumentError('give requests a second between 0 and 200');
      return n;
    }, 2)
    .option('--processes', 'run every sidecar, gateway, federation service and sample app as its own process (isthmus sidecar / gateway / federation), as they are deployed, instead of all in this one', false)
    .option('--no-versions', 'do not run hello-v1 and hello-v2 nor label hello\'s instances version=v1 / version=v2 (by default they run, to try traffic splits: docs/traffic-policy.md)')
    // Given without a value, commander sets it to true: json.
    .option('--access-log [format]', 'every sidecar writes an access log, a line per request and per TCP connection, to logs/<sidecar>.access.log in the state dir: json (the default) or text (docs/sidecar.md, "Access log")', (v) => {
      if (v !== 'json' && v !== 'text') throw new InvalidArgumentError('give json or text (or nothing, for json)');
      return v;
    })
    .option('--gateway-relay <relay>', 'what copies the bytes of routed connections in every gateway: native (a thread of dist/native/relay.node) or node (JavaScript; gateways[].relay, docs/gateway.md "The relay")', relayChoice, 'native')
    .option('--upgrade-to-http2', 'every sidecar sends the apps\' HTTP/1.1 requests to other sidecars as HTTP/2 streams on one connection per destination (outbound.upgradeToHttp2; docs/sidecar.md, "HTTP/1.1 or HTTP/2 between sidecars")', false)
    .addOption(etcdOption().env('ISTHMUS_DEV_ETCD'))
    .addOption(outputOption())
    .action(action(async (opts: DevUpOptions) => {
      const { startDevMesh } = await import('../dev/dev-mesh.js');
      const keep = opts.stateDir !== undefined;
      // An etcd of the user's that cannot be reached (or whose TLS does not match) is refused
      // before anything is written: the CA and the credentials would be made for nothing.
      if (opts.etcd) await (await connectStore(opts)).close();
      // Refused before anything starts: a state dir that cannot be written would fail half-way.
      const stateDir = keep ? ensureDirectory(opts.stateDir!, '--state-dir') : mkdtempSync(join(tmpdir(), 'isthmus-dev-'));
      const clusters = opts.clusters.split(',').map((s) => s.trim()).filter(Boolean);
      const json = opts.output === 'json';
      const say = sayer(json);
      // Listening from the start: a stop asked for during start-up is carried out once it ends.
      const asked = stopRequests();
      let started = false;
      void asked.reason.then((reason) => { if (!started) say(`${reason}: the mesh stops as soon as it has finished starting...`); });
      say(`Starting a ${clusters.length}-cluster mesh (${clusters.join(', ')}) in ${stateDir}${opts.processes ? ', every sidecar, gateway, federation service and sample app in a process of its own' : ''}`);
      const mesh = await startDevMesh({ clusters, stateDir, etcd: opts.etcd, etcdTls: etcdTlsFiles(opts), trustDomain: opts.trustDomain, gateways: opts.gateways, hostBase: opts.hostBase, traffic: opts.traffic, processes: opts.processes, federationProcesses: opts.processes, grpcEcho: true, versions: opts.versions, ...(opts.accessLog === undefined ? {} : { accessLog: opts.accessLog === true ? 'json' : opts.accessLog }), ...(opts.upgradeToHttp2 ? { upgradeToHttp2: true } : {}), gatewayRelay: opts.gatewayRelay, progress: say })
        .catch((err: unknown) => {
          asked.dispose();
          if (!keep) rmSync(stateDir, { recursive: true, force: true });
          const inUse = /EADDRINUSE: address already in use ([0-9A-Fa-f.:[\]]+)/.exec((err as Error).message);
          if (inUse) {
            throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `${inUse[1]} is already in use: is another \`isthmus dev up\` running? Stop it, or run this one beside it with --host-base ${opts.hostBase + clusters.length + 10}`, { cause: err });
          }
          throw err;
        });
      started = true;
      const canary = opts.versions ? writeCanaryFiles(stateDir) : undefined;
      const slo = writeSloFile(stateDir);
      if (json) {
        printJson({ stateDir, meshFile: join(stateDir, 'mesh.json'), ...mesh.file });
      } else {
        say([
          '',
          `Mesh is up. Addresses: ${join(stateDir, 'mesh.json')}; logs: ${join(stateDir, 'logs')}/`,
          ...(opts.accessLog === undefined ? [] : [`Access logs: ${join(stateDir, 'logs')}/*.access.log (e.g. tail -f ${join(stateDir, 'logs', `sidecar-${clusters[0]}-client.access.log`)})`]),
          ...(mesh.file.dashboard ? [`Dashboard: ${mesh.file.dashboard}`] : []),
          '',
          ...tryLines(mesh.file, clusters, stateDir, slo, canary),
          '',
          'Press Ctrl-C to stop everything.',
        ].join('\n'));
      }
      const reason = await asked.reason;
      say(`\n${reason}: stopping the mesh...`);
      try {
        await mesh.stop();
      } catch (err) {
        say(`error while stopping the mesh: ${(err as Error).message}`);
        process.exitCode = 1;
      } finally {
        if (!keep) rmSync(stateDir, { recursive: true, force: true });
        asked.dispose();
      }
      say('stopped.');
    }));
}

/**
 * The "Try:" list `dev up` prints: the same commands as README.md's "Set-up" and canary blocks,
 * with this mesh's addresses and paths (test/integration/dev-up.test.ts holds the two together).
 */
export function tryLines(file: MeshFile, clusters: string[], stateDir: string, slo: string, canary: { canary: string; blueGreen: string; rolloutSlo: string } | undefined): string[] {
  const first = clusters[0] ?? 'east';
  const client = file.clusters[first]?.client;
  const proxy = client?.proxy;
  const hasWest = clusters.includes('west');
  const redis = clusters.map((c) => file.clusters[c]?.client.listeners['demo/redis']).find((l) => l !== undefined);
  return [
    'Try (`isthmus` is on your PATH after `npm link` once in the checkout):',
    `  curl -x http://${proxy} http://hello.demo.mesh/    # answered by hello in ${first}, the caller's cluster`,
    ...(hasWest && client ? [
      `  curl -x http://${proxy} http://ledger.demo.mesh/   # only west runs ledger: through west's gateway, mTLS end to end`,
      ...(client.listeners['demo/ledger'] ? [`  curl http://${client.listeners['demo/ledger']}/                              # the same, for apps that cannot use a proxy`] : []),
      ...(client.listeners['demo/ledger'] && client.listeners['demo/grpc-echo'] ? [`  curl --http2-prior-knowledge http://${client.listeners['demo/ledger']}/       # HTTP/2 (h2c); gRPC clients: ${client.listeners['demo/grpc-echo']} reaches grpc-echo`] : []),
      `  head -c 100000000 /dev/zero | curl -sS -x http://${proxy} -T - -X POST http://ledger.demo.mesh/echo | wc -c   # 100 MB, streamed both ways`,
      `  curl -p -x http://${proxy} http://ledger.demo.mesh/                # through a CONNECT tunnel`,
      ...(client.listeners['demo/grpc-echo'] ? [`  node -e "const g = require('@grpc/grpc-js'); const c = new g.Client('${client.listeners['demo/grpc-echo']}', g.credentials.createInsecure()); c.makeUnaryRequest('/isthmus.dev.Echo/Echo', (v) => Buffer.from(JSON.stringify(v)), (b) => JSON.parse(b), { message: 'hi' }, (err, reply) => { console.log(err ? err.message : JSON.stringify(reply)); c.close(); })"   # a gRPC call to grpc-echo in west (in the checkout: it uses its @grpc/grpc-js)`] : []),
      ...(client.listeners['demo/ledger'] ? [`  node -e "const ws = new (require('ws'))('ws://${client.listeners['demo/ledger']}/ws'); ws.on('open', () => ws.send('hi')); ws.on('message', (m) => { console.log(String(m)); ws.close(); })"   # a WebSocket echo from ledger (in the checkout: it uses its ws package)`] : []),
    ] : []),
    ...(redis ? [`  redis-cli -h ${redis.split(':')[0]} -p ${redis.split(':')[1]} ping                                       # a plain TCP service in west, through its gateway`] : []),
    `  export ISTHMUS_ETCD=${file.etcd}`,
    ...(file.etcdTls ? [`  export ISTHMUS_ETCD_CA=${file.etcdTls.ca ?? ''} ISTHMUS_ETCD_CERT=${file.etcdTls.cert ?? ''} ISTHMUS_ETCD_KEY=${file.etcdTls.key ?? ''}`] : []),
    `  export ISTHMUS_OPERATOR_DIR=${file.operator}   # your operator credential: trace and the admin ports ask for it`,
    ...(hasWest ? [
      `  isthmus explain ledger -n demo --from ${first}     # where ledger's traffic goes from ${first}, and why`,
      `  isthmus trace ledger --from ${first}               # one request, hop by hop`,
    ] : []),
    '  isthmus stat                                  # rate, success, p50/p99 per service',
    '  isthmus clusters',
    '  isthmus services',
    '  isthmus check',
    `  isthmus policy apply -f ${slo} && isthmus policy list   # a service level objective on ledger`,
    `  isthmus unexport hello -n demo --cluster ${first}   # other clusters stop routing to ${first}'s hello; ${first}'s own callers still reach it`,
    ...(canary ? [
      '',
      'Try a canary: hello runs v1 and v2 in every cluster (also as hello-v1 and hello-v2), and every answer names its "version":',
      `  isthmus policy apply -f ${canary.canary}       # 90% to v1, 10% to v2 (x-user-group: beta: always v2)`,
      `  for i in $(seq 50); do curl -s -x http://${proxy} http://hello.demo.mesh/ | grep -o '"version":"v[12]"'; done | sort | uniq -c`,
      '  isthmus stat                                                # watch hello-v1 and hello-v2 share the traffic',
      `  isthmus explain hello -n demo --from ${first}              # the rules in force and the live split`,
      `  isthmus policy apply -f ${canary.blueGreen}   # blue-green: flip everything to v2`,
      `  isthmus policy delete httproute demo/${canaryRouteName}          # back to plain hello`,
      `  isthmus policy apply -f ${canary.rolloutSlo} && isthmus rollout start hello -n demo --from hello-v1 --to hello-v2 --steps 10,50,100 --interval 30s --objective ${rolloutObjectiveName}   # a rollout gated by an objective: isthmus rollout status hello -n demo`,
    ] : []),
  ];
}

/**
 * Lines for people, on stdout (stderr with --output json). A closed pipe (`npm run dev | tee log`
 * ended by the same Ctrl-C) makes a write fail with EPIPE; that must not stop the clean-up, so
 * the line goes to stderr instead, and is dropped when both are closed.
 */
function sayer(json: boolean): (line: string) => void {
  const open = new Set<NodeJS.WriteStream>([process.stdout, process.stderr]);
  for (const stream of open) stream.on('error', () => open.delete(stream));
  return (line) => {
    for (const stream of json ? [process.stderr] : [process.stdout, process.stderr]) {
      if (!open.has(stream) || stream.destroyed || !stream.writable) continue;
      try {
        stream.write(`${line}\n`);
        return;
      } catch {
        open.delete(stream);
      }
    }
  };
}

/**
 * Every way a user asks `dev up` to stop: Ctrl-C (SIGINT), SIGTERM, SIGHUP (the terminal
 * closed), and the end of standard input when that is a pipe or socket (the process that
 * started it went away). `reason` names the first; later ones are ignored rather than killing
 * the process half-way through its clean-up. A terminal or /dev/null on stdin is not watched:
 * `isthmus dev up &` reads an immediate end of /dev/null.
 */
function stopRequests(): { reason: Promise<string>; dispose(): void } {
  let stop!: (why: string) => void;
  const reason = new Promise<string>((resolve) => { stop = resolve; });
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  const handlers = signals.map((signal) => [signal, () => stop(signal)] as const);
  for (const [signal, handler] of handlers) process.on(signal, handler);
  let stdinWatched = false;
  try {
    const stdin = fstatSync(0);
    stdinWatched = stdin.isFIFO() || stdin.isSocket();
  } catch {
    // no standard input at all
  }
  const onEnd = () => stop('end of standard input');
  if (stdinWatched) {
    process.stdin.on('end', onEnd).on('error', onEnd).on('close', onEnd);
    process.stdin.resume();
  }
  return {
    reason,
    dispose() {
      for (const [signal, handler] of handlers) process.off(signal, handler);
      if (stdinWatched) {
        process.stdin.off('end', onEnd).off('error', onEnd).off('close', onEnd);
        process.stdin.destroy();
      }
    },
  };
}

/** `--gateway-relay`: native or node. */
function relayChoice(value: string): RelayKind {
  if (value !== 'native' && value !== 'node') throw new InvalidArgumentError(`"${value}" is not a relay: give native or node`);
  return value;
}
