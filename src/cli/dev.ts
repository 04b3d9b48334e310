import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { IsthmusError } from '../core/errors.js';
import { ensureDirectory } from '../core/user-paths.js';
import { canaryRouteName, writeCanaryFiles } from '../dev/canary-files.js';
import { action, etcdOption, etcdTlsFiles, outputOption, type EtcdFlags } from './common.js';
import { printJson } from './output.js';

interface DevUpOptions extends EtcdFlags { clusters: string; stateDir?: string; trustDomain: string; gateways: number; hostBase: number; traffic: number; processes: boolean; versions: boolean; output: string }

export function registerDev(program: Command): void {
  const dev = program.command('dev').description('run a whole mesh on this machine, for trying Isthmus out');
  dev.command('up')
    .description('start etcd, a CA and N clusters (federation service, sample services, exports) on loopback; Ctrl-C stops everything')
    .option('--clusters <names>', 'comma-separated cluster names', 'east,west')
    .option('--state-dir <dir>', 'keep state here (and write mesh.json); default: a temporary directory removed on exit')
    .option('--trust-domain <domain>', 'trust domain of the dev mesh', 'dev.isthmus')
    .option('--gateways <n>', 'east-west gateways per cluster', (v) => Number.parseInt(v, 10), 1)
    .option('--host-base <n>', 'cluster n listens on 127.0.<n+base-1>.1; change it to run a second dev mesh beside the first', (v) => Number.parseInt(v, 10), 1)
    .option('--traffic <rps>', 'sample requests a second from each cluster\'s client sidecar, for the dashboard (0: none)', (v) => {
      const n = Number(v);
      if (!Number.isFinite(n) || n < 0 || n > 200) throw new InvalidArgumentError('give requests a second between 0 and 200');
      return n;
    }, 2)
    .option('--processes', 'run every sidecar and gateway as its own process (isthmus sidecar / isthmus gateway), as they are deployed, instead of all in this one; etcd, the federation services and the sample apps stay as they are', false)
    .option('--no-versions', 'do not run hello-v1 and hello-v2 nor label hello\'s instances version=v1 / version=v2 (by default they run, to try traffic splits: docs/traffic-policy.md)')
    .addOption(etcdOption().env('ISTHMUS_DEV_ETCD'))
    .addOption(outputOption())
    .action(action(async (opts: DevUpOptions) => {
      const { startDevMesh } = await import('../dev/dev-mesh.js');
      const keep = opts.stateDir !== undefined;
      // Refused before anything starts: a state dir that cannot be written would fail half-way.
      const stateDir = keep ? ensureDirectory(opts.stateDir!, '--state-dir') : mkdtempSync(join(tmpdir(), 'isthmus-dev-'));
      const clusters = opts.clusters.split(',').map((s) => s.trim()).filter(Boolean);
      const json = opts.output === 'json';
      const say = (line: string) => (json ? process.stderr : process.stdout).write(`${line}\n`);
      say(`Starting a ${clusters.length}-cluster mesh (${clusters.join(', ')}) in ${stateDir}${opts.processes ? ', every sidecar and gateway in a process of its own' : ''}`);
      const mesh = await startDevMesh({ clusters, stateDir, etcd: opts.etcd, etcdTls: etcdTlsFiles(opts), trustDomain: opts.trustDomain, gateways: opts.gateways, hostBase: opts.hostBase, traffic: opts.traffic, processes: opts.processes, grpcEcho: true, versions: opts.versions, progress: say })
        .catch((err: unknown) => {
          if (!keep) rmSync(stateDir, { recursive: true, force: true });
          const inUse = /EADDRINUSE: address already in use ([0-9A-Fa-f.:[\]]+)/.exec((err as Error).message);
          if (inUse) {
            throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `${inUse[1]} is already in use: is another \`isthmus dev up\` running? Stop it, or run this one beside it with --host-base ${opts.hostBase + clusters.length + 10}`, { cause: err });
          }
          throw err;
        });
      const canary = opts.versions ? writeCanaryFiles(stateDir) : undefined;
      if (json) {
        printJson({ stateDir, meshFile: join(stateDir, 'mesh.json'), ...mesh.file });
      } else {
        const first = clusters[0] ?? 'east';
        const proxy = mesh.file.clusters[first]?.client.proxy;
        say([
          '',
          `Mesh is up. Addresses: ${join(stateDir, 'mesh.json')}; logs: ${join(stateDir, 'logs')}/`,
          ...(mesh.file.dashboard ? [`Dashboard: ${mesh.file.dashboard}`] : []),
          '',
          'Try:',
          ...clusters.slice(0, 1).flatMap((c) => [
            `  curl -x http://${mesh.file.clusters[c]?.client.proxy} http://hello.demo.mesh/     # answered in ${c}`,
            `  curl -x http://${mesh.file.clusters[c]?.client.proxy} http://ledger.demo.mesh/    # answered by west, through its gateway`,
            ...(mesh.file.clusters[c]?.client.listeners['demo/grpc-echo'] ? [`  curl --http2-prior-knowledge http://${mesh.file.clusters[c]?.client.listeners['demo/ledger']}/   # HTTP/2 (h2c); gRPC clients: ${mesh.file.clusters[c]?.client.listeners['demo/grpc-echo']} reaches grpc-echo (docs/dev-mesh.md)`] : []),
            `  npx isthmus explain ledger -n demo --from ${c} --state-dir ${stateDir}`,
          ]),
          // The TCP sample: redis-cli in a cluster without redis reaches west's through a fixed TCP listener.
          ...clusters.filter((c) => mesh.file.clusters[c]?.client.listeners['demo/redis']).slice(0, 1).map((c) => {
            const [host, port] = (mesh.file.clusters[c]?.client.listeners['demo/redis'] ?? '').split(':');
            return `  redis-cli -h ${host} -p ${port} ping             # plain TCP: redis in west, through its gateway`;
          }),
          `  export ISTHMUS_ETCD=${mesh.file.etcd}`,
          ...(mesh.file.etcdTls ? [
            `  export ISTHMUS_ETCD_CA=${mesh.file.etcdTls.ca ?? ''} ISTHMUS_ETCD_CERT=${mesh.file.etcdTls.cert ?? ''} ISTHMUS_ETCD_KEY=${mesh.file.etcdTls.key ?? ''}`,
          ] : []),
          ...clusters.slice(0, 1).map((c) => `  npx isthmus trace ledger --from ${c}          # one real request, hop by hop`),
          '  npx isthmus policy apply -f slo.yaml         # a service level objective (see `isthmus policy apply --help`)',
          '  npx isthmus clusters',
          '  npx isthmus services',
          '  npx isthmus check',
          `  npx isthmus unexport hello -n demo --cluster ${first}   # watch it leave \`isthmus services\``,
          ...(canary ? [
            '',
            'Try a canary: hello runs v1 and v2 in every cluster (also as hello-v1 and hello-v2), and every answer names its "version":',
            `  npx isthmus policy apply -f ${canary.canary}        # 90% to v1, 10% to v2; x-user-group: beta always v2`,
            `  for i in $(seq 50); do curl -s -x http://${proxy} http://hello.demo.mesh/ | grep -o '"version":"v[12]"'; done | sort | uniq -c`,
            '  npx isthmus stat                             # hello-v1 and hello-v2 take the split',
            `  npx isthmus explain hello -n demo --from ${first} --state-dir ${stateDir}   # the rules in force and the live split`,
            `  npx isthmus policy apply -f ${canary.blueGreen}   # blue-green: flip everything to v2`,
            `  npx isthmus policy delete httproute demo/${canaryRouteName}    # back to plain hello`,
          ] : []),
          '',
          'Press Ctrl-C to stop everything.',
        ].join('\n'));
      }
      await new Promise<void>((resolveStop) => {
        const shutdown = (signal: string) => {
          say(`\n${signal}: stopping the mesh...`);
          void mesh.stop().then(() => {
            if (!keep) rmSync(stateDir, { recursive: true, force: true });
            say('stopped.');
            resolveStop();
          });
        };
        process.once('SIGINT', () => shutdown('SIGINT'));
        process.once('SIGTERM', () => shutdown('SIGTERM'));
      });
    }));
}
