import type { Command } from 'commander';
import { IsthmusError } from '../core/errors.js';
import { keys, recordVersion } from '../core/keys.js';
import { checkName } from '../core/names.js';
import type { ServiceExportRecord } from '../model/records.js';
import { action, etcdOption, outputOption, withStore, type EtcdFlags } from './common.js';
import { printJson } from './output.js';

interface ExportOptions extends EtcdFlags { namespace: string; cluster: string; output: string }

export function registerExport(program: Command): void {
  program.command('export')
    .description('offer a service of a cluster to the other clusters (persisted in etcd)')
    .argument('<service>', 'service name')
    .option('-n, --namespace <ns>', 'namespace of the service', 'default')
    .requiredOption('--cluster <cluster>', 'the cluster that serves it')
    .addOption(etcdOption())
    .addOption(outputOption())
    .action(action(async (service: string, opts: ExportOptions) => {
      validateNames(service, opts);
      const changed = await withStore(opts, async (store) => {
        await requireCluster(store, opts.cluster);
        const key = keys.serviceExport(opts.cluster, opts.namespace, service);
        const value: ServiceExportRecord = { version: recordVersion, exportedAt: new Date().toISOString() };
        return await store.transact({ ifAbsent: [key], puts: [{ key, value }] });
      });
      const result = { service, namespace: opts.namespace, cluster: opts.cluster, exported: true, changed };
      if (opts.output === 'json') return printJson(result);
      process.stdout.write(changed
        ? `${opts.namespace}/${service} is exported from ${opts.cluster}; other clusters see it once ${opts.cluster}'s federation service publishes it (\`isthmus services\`).\n`
        : `${opts.namespace}/${service} was already exported from ${opts.cluster}.\n`);
    }));

  program.command('unexport')
    .description('stop offering a service to the other clusters; callers in its own cluster still reach it locally')
    .argument('<service>', 'service name')
    .option('-n, --namespace <ns>', 'namespace of the service', 'default')
    .requiredOption('--cluster <cluster>', 'the cluster that serves it')
    .addOption(etcdOption())
    .addOption(outputOption())
    .addHelpText('after', `
Other clusters stop routing to the service at once, and its row leaves \`isthmus services\`.
Sidecars in its own cluster still send their callers to its local instances: an export decides
who else may reach a service, not whether it runs. To take it out of its own cluster too,
deregister its instances (\`isthmus deregister\`) or stop it.

Example:
  isthmus unexport ledger -n shop --cluster west`)
    .action(action(async (service: string, opts: ExportOptions) => {
      validateNames(service, opts);
      await withStore(opts, async (store) => {
        await requireCluster(store, opts.cluster);
        const key = keys.serviceExport(opts.cluster, opts.namespace, service);
        if (!(await store.get(key))) {
          throw new IsthmusError('ISTHMUS_ERR_SERVICE_UNKNOWN', `${opts.namespace}/${service} is not exported from ${opts.cluster}; \`isthmus services\` lists what is`);
        }
        // The leased record goes too, so other clusters stop routing at once.
        await store.transact({ deletes: [key, keys.export(opts.cluster, opts.namespace, service)] });
      });
      if (opts.output === 'json') return printJson({ service, namespace: opts.namespace, cluster: opts.cluster, exported: false });
      process.stdout.write(`${opts.namespace}/${service} is no longer exported from ${opts.cluster}: other clusters stop routing to it; callers in ${opts.cluster} still reach it locally.\n`);
    }));
}

function validateNames(service: string, opts: ExportOptions): void {
  checkName('service', service);
  checkName('namespace', opts.namespace);
  checkName('cluster', opts.cluster);
}

async function requireCluster(store: { get(key: string): Promise<unknown> }, cluster: string): Promise<void> {
  if (!(await store.get(keys.cluster(cluster)))) {
    throw new IsthmusError('ISTHMUS_ERR_CLUSTER_UNKNOWN', `no cluster named ${cluster} is in the mesh; join it first (\`isthmus join\`) or check \`isthmus clusters\``);
  }
}
