import { Option, type Command } from 'commander';
import { describeError } from '../core/errors.js';
import { createLogger, type LogFormat } from '../core/log.js';
import { loadClusterConfig } from '../federation/config.js';
import { action } from './common.js';

export function logOptions(command: Command): Command {
  return command
    .addOption(new Option('--log-format <format>', 'json lines, or pretty for people').choices(['json', 'pretty']).env('ISTHMUS_LOG_FORMAT').default('json'))
    .addOption(new Option('--log-level <level>', 'minimum level to log').choices(['debug', 'info', 'warn', 'error']).env('ISTHMUS_LOG_LEVEL').default('info'));
}

export function registerFederation(program: Command): void {
  logOptions(program.command('federation'))
    .description('run a cluster\'s federation service: publishes its exports, merges the mesh catalog, signs workload certificates')
    .requiredOption('-c, --config <file>', 'the cluster.yaml that `isthmus join` wrote')
    .action(action(async (opts: { config: string; logFormat: LogFormat; logLevel: string }) => {
      const loaded = loadClusterConfig(opts.config);
      const logger = createLogger({ name: 'isthmus-federation', format: opts.logFormat, level: opts.logLevel });
      const { runFederation } = await import('../federation/server.js');
      const running = await runFederation(loaded, logger);
      logger.info({ api: `https://${running.apiAddress}`, cluster: loaded.config.cluster }, 'federation API listening');
      await new Promise<void>((resolve) => {
        const shutdown = (signal: string) => {
          logger.info({ signal }, 'stopping: revoking the cluster lease');
          running.stop().then(resolve, (err: unknown) => {
            logger.error({ err: describeError(err) }, 'error while stopping');
            resolve();
          });
        };
        process.once('SIGINT', () => shutdown('SIGINT'));
        process.once('SIGTERM', () => shutdown('SIGTERM'));
        running.federation.once('left', () => {
          process.exitCode = 1;
          void running.stop().then(resolve);
        });
      });
    }));
}
