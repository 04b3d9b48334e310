import type { Command } from 'commander';
import { createLogger, type LogFormat } from '../core/log.js';
import { loadClusterConfig } from '../federation/config.js';
import { action, logOptions, runUntilSignal } from './common.js';

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
      // The cluster was removed from the mesh (isthmus leave): stop, and say so with the exit code.
      const left = new Promise<void>((resolve) => running.federation.once('left', () => {
        process.exitCode = 1;
        void running.stop().then(resolve);
      }));
      await runUntilSignal(logger, () => running.stop(), left);
    }));
}
