import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { IsthmusError } from '../core/errors.js';
import { createLogger, type LogFormat } from '../core/log.js';
import { loadSidecarConfig } from '../sidecar/config.js';
import { formatExplanation, type RouteExplanation } from '../sidecar/explain.js';
import { action, logOptions, outputOption, runUntilSignal } from './common.js';
import { printJson } from './output.js';

export function registerSidecar(program: Command): void {
  logOptions(program.command('sidecar'))
    .description('run a workload\'s sidecar: HTTP proxy for the app, mTLS listener in front of it, locality-aware failover')
    .requiredOption('-c, --config <file>', 'sidecar config (see docs/sidecar.md)')
    .action(action(async (opts: { config: string; logFormat: LogFormat; logLevel: string }) => {
      const config = loadSidecarConfig(opts.config);
      const logger = createLogger({ name: `isthmus-sidecar-${config.service}`, format: opts.logFormat, level: opts.logLevel });
      const { runSidecar } = await import('../sidecar/sidecar.js');
      const running = await runSidecar(config, logger);
      await runUntilSignal(logger, () => running.stop());
    }));

  program.command('explain')
    .description('where traffic for a service goes now from a cluster, and why (priorities, health, ejections)')
    .argument('<service>', 'service name')
    .option('-n, --namespace <ns>', 'namespace', 'default')
    .option('--from <cluster>', 'ask the client sidecar of this cluster (from the dev mesh\'s mesh.json)')
    .option('--state-dir <dir>', 'the `isthmus dev up --state-dir` directory holding mesh.json', '.isthmus')
    .option('--sidecar <host:port>', 'ask this sidecar admin address instead')
    .addOption(outputOption())
    .action(action(async (service: string, opts: { namespace: string; from?: string; stateDir: string; sidecar?: string; output: string }) => {
      const admin = opts.sidecar ?? adminFromMesh(opts.stateDir, opts.from);
      // Loaded here: `isthmus sidecar`, in this module too, must not carry them (docs/benchmarks.md).
      const { findOperatorCredential, operatorHeaders } = await import('../trust/operator-files.js');
      const { refusal } = await import('./dashboard-client.js');
      let res: Response;
      try {
        // /routes answers loopback callers as they are; from elsewhere it wants the operator.
        res = await fetch(`http://${admin}/routes/${opts.namespace}/${service}`, { headers: operatorHeaders(findOperatorCredential()), signal: AbortSignal.timeout(5000) });
      } catch (err) {
        throw new IsthmusError('ISTHMUS_ERR_API_UNREACHABLE', `the sidecar admin port ${admin} did not answer (${(err as Error).message}); is the sidecar running?`, { cause: err });
      }
      if (res.status === 401 || res.status === 403) throw await refusal(res, `http://${admin}/routes/${opts.namespace}/${service}`);
      const body = (await res.json()) as RouteExplanation & { error?: { code: string; message: string } };
      if (body.error) throw new IsthmusError('ISTHMUS_ERR_SERVICE_UNKNOWN', body.error.message);
      if (opts.output === 'json') return printJson(body);
      process.stdout.write(formatExplanation(body));
    }));
}

function adminFromMesh(stateDir: string, from: string | undefined): string {
  if (!from) throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', 'say which sidecar to ask: --from <cluster> (with a dev mesh) or --sidecar <admin host:port>');
  let mesh: { clusters?: Record<string, { client?: { admin?: string } }> };
  try {
    mesh = JSON.parse(readFileSync(join(stateDir, 'mesh.json'), 'utf8'));
  } catch (err) {
    throw new IsthmusError('ISTHMUS_ERR_CONFIG_UNREADABLE', `cannot read ${join(stateDir, 'mesh.json')}: pass --state-dir of your \`isthmus dev up\`, or --sidecar <admin host:port>`, { cause: err });
  }
  const admin = mesh.clusters?.[from]?.client?.admin;
  if (!admin) throw new IsthmusError('ISTHMUS_ERR_CLUSTER_UNKNOWN', `mesh.json has no client sidecar for cluster ${from}`);
  return admin;
}
