import type { Command } from 'commander';
import { createLogger, type LogFormat } from '../core/log.js';
import { loadGatewayConfig } from '../gateway/config.js';
import { action, logOptions, runUntilSignal } from './common.js';

export function registerGateway(program: Command): void {
  logOptions(program.command('gateway'))
    .description('run an east-west gateway: routes incoming TLS by SNI to exported services, without terminating it')
    .requiredOption('-c, --config <file>', 'the cluster.yaml of the gateway\'s cluster (its gateways: entry)')
    .option('--id <id>', 'which gateways: entry to run (optional when there is only one)')
    .option('--advertise <host:port>', 'the address other clusters dial, published instead of the listen address (a load balancer or NAT in front of the gateway); overrides the entry\'s advertise')
    // Set from the pod by the gateway Deployment (docs/kubernetes.md); empty values are ignored.
    .option('--admin-advertise <host:port>', 'where the admin port is reached, published for `isthmus trace` instead of the admin listen address (a pod\'s IP)')
    .option('--zone <zone>', 'zone of this gateway replica, over the entry\'s')
    .action(action(async (opts: { config: string; id?: string; advertise?: string; adminAdvertise?: string; zone?: string; logFormat: LogFormat; logLevel: string }) => {
      const config = loadGatewayConfig(opts.config, opts.id, { advertise: opts.advertise, adminAdvertise: opts.adminAdvertise, zone: opts.zone });
      const logger = createLogger({ name: `isthmus-gateway-${config.id}`, format: opts.logFormat, level: opts.logLevel });
      const { runGateway } = await import('../gateway/run.js');
      const running = await runGateway(config, logger, { ownProcess: true });
      logger.info({ cluster: config.cluster, id: config.id, listen: running.address, advertised: running.advertised, admin: running.admin, federation: config.federationUrl, relay: running.gateway.relayKind }, 'gateway listening');
      // SIGTERM (a pod being deleted) or Ctrl-C: withdraw, let the connections carried end (drainTimeout), then stop.
      await runUntilSignal(logger, async () => {
        await running.drain();
        await running.stop();
      });
    }));
}
