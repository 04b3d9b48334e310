import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { IsthmusError } from '../core/errors.js';
import { createLogger, type LogFormat } from '../core/log.js';
import { loadSidecarConfig } from '../sidecar/config.js';
import { formatExplanation, type RouteExplanation } from '../sidecar/explain.js';
import { action, etcdOption, logOptions, outputOption, runUntilSignal, withStore, type EtcdFlags } from './common.js';
import { sidecarsOf } from './dashboard-client.js';
import { printJson } from './output.js';

export function registerSidecar(program: Command): void {
  logOptions(program.command('sidecar'))
    .description('run a workload\'s sidecar: HTTP proxy for the app, mTLS listener in front of it, locality-aware failover')
    .requiredOption('-c, --config <file>', 'sidecar config (see docs/sidecar.md)')
    // Set by `isthmus inject` from the pod (docs/kubernetes.md); empty values are ignored.
    .option('--namespace <ns>', 'namespace of the workload, over the config\'s')
    .option('--service <name>', 'service of the workload, over the config\'s')
    .option('--zone <zone>', 'zone of this instance, over the config\'s')
    .option('--inbound-app <host:port>', 'where the app listens (inbound.app), over the config\'s')
    .option('--inbound-app-protocol <protocol>', 'what the app speaks there: http, h2c or tcp (inbound.appProtocol), over the config\'s')
    .option('--access-log <file>', 'a line per request and TCP connection to this file: /dev/stdout for the container\'s log (accessLog.file), over the config\'s')
    .option('--upgrade-to-http2', 'send the app\'s HTTP/1.1 requests to other sidecars as HTTP/2 streams on one connection per destination (outbound.upgradeToHttp2), over the config\'s')
    .option('--inbound-port <port[=app-port][/protocol]>', 'one more app port on inbound.app\'s host, by the port callers name, e.g. 9090/h2c, 6379/tcp, or 9000=9090/h2c for a Service port 9000 the app serves on 9090 (inbound.ports; repeat for each)', (value: string, previous: string[]) => [...previous, value], [] as string[])
    .action(action(async (opts: { config: string; namespace?: string; service?: string; zone?: string; inboundApp?: string; inboundAppProtocol?: string; inboundPort: string[]; accessLog?: string; upgradeToHttp2?: boolean; logFormat: LogFormat; logLevel: string }) => {
      const config = loadSidecarConfig(opts.config, opts);
      const logger = createLogger({ name: `isthmus-sidecar-${config.service}`, format: opts.logFormat, level: opts.logLevel });
      const { runSidecar } = await import('../sidecar/sidecar.js');
      const running = await runSidecar(config, logger, { ownProcess: true });
      // SIGTERM (a pod being deleted) or Ctrl-C: callers' requests in flight finish first (timeouts.drain).
      await runUntilSignal(logger, async () => {
        await running.drain();
        await running.stop();
      });
    }));

  program.command('explain')
    .description('where traffic for a service goes now from a cluster, and why (priorities, health, ejections)')
    .argument('<service>', 'service name')
    .option('-n, --namespace <ns>', 'namespace', 'default')
    .option('--from <cluster>', 'ask a sidecar of this cluster (found through its federation, from etcd)')
    .option('--sidecar <host:port>', 'ask this sidecar admin address instead')
    .option('--state-dir <dir>', 'find --from\'s client sidecar in the mesh.json of this `isthmus dev up --state-dir` instead of etcd')
    .addOption(etcdOption())
    .addOption(outputOption())
    .addHelpText('after', `
Examples:
  ISTHMUS_ETCD=http://127.0.0.1:2379 isthmus explain ledger -n demo --from east
  isthmus explain hello -n demo --sidecar 127.0.1.1:15020 --output json`)
    .action(action(async (service: string, opts: { namespace: string; from?: string; stateDir?: string; sidecar?: string; etcd?: string; output: string }) => {
      // Loaded here: `isthmus sidecar`, in this module too, must not carry them (docs/benchmarks.md).
      const { findOperatorCredential, operatorHeaders } = await import('../trust/operator-files.js');
      const { refusal } = await import('./dashboard-client.js');
      const headers = operatorHeaders(findOperatorCredential());
      const admins = opts.sidecar !== undefined ? [opts.sidecar] : await adminsOf(opts, headers);
      const unreachable: string[] = [];
      for (const admin of admins) {
        let res: Response;
        try {
          // /routes answers loopback callers as they are; from elsewhere it wants the operator.
          res = await fetch(`http://${admin}/routes/${opts.namespace}/${service}`, { headers, signal: AbortSignal.timeout(5000) });
        } catch (err) {
          unreachable.push(`${admin} (${(err as Error).message})`);
          continue;
        }
        if (res.status === 401 || res.status === 403) throw await refusal(res, `http://${admin}/routes/${opts.namespace}/${service}`);
        const body = (await res.json()) as RouteExplanation & { error?: { code: string; message: string } };
        if (body.error) throw new IsthmusError('ISTHMUS_ERR_SERVICE_UNKNOWN', body.error.message);
        if (opts.output === 'json') return printJson(body);
        process.stdout.write(formatExplanation(body));
        return;
      }
      throw new IsthmusError('ISTHMUS_ERR_API_UNREACHABLE', `no sidecar admin port answered: ${unreachable.join('; ')}; is the sidecar running?`);
    }));
}

/** The sidecars to ask: --from's client sidecar in a dev mesh's mesh.json, or --from's sidecars as its federation lists them. */
async function adminsOf(opts: EtcdFlags & { from?: string; stateDir?: string }, headers: Record<string, string>): Promise<string[]> {
  if (!opts.from) throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', 'say which sidecar to ask: --from <cluster> (with --etcd or ISTHMUS_ETCD) or --sidecar <admin host:port>');
  if (opts.stateDir !== undefined) return [adminFromMesh(opts.stateDir, opts.from)];
  const from = opts.from;
  return await withStore(opts, (store) => sidecarsOf(store, from, headers));
}

function adminFromMesh(stateDir: string, from: string): string {
  let mesh: { clusters?: Record<string, { client?: { admin?: string } }> };
  try {
    mesh = JSON.parse(readFileSync(join(stateDir, 'mesh.json'), 'utf8'));
  } catch (err) {
    throw new IsthmusError('ISTHMUS_ERR_CONFIG_UNREADABLE', `cannot read ${join(stateDir, 'mesh.json')}: pass --state-dir of your \`isthmus dev up\`, or set ISTHMUS_ETCD and leave --state-dir out`, { cause: err });
  }
  const admin = mesh.clusters?.[from]?.client?.admin;
  if (!admin) throw new IsthmusError('ISTHMUS_ERR_CLUSTER_UNKNOWN', `mesh.json has no client sidecar for cluster ${from}`);
  return admin;
}
