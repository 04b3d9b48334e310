import type { Command } from 'commander';
import { IsthmusError } from '../core/errors.js';
import { keys } from '../core/keys.js';
import { checkName } from '../core/names.js';
import type { ClusterRecord } from '../model/records.js';
import { action, etcdOption, outputOption, withStore, type EtcdFlags } from './common.js';
import { printJson } from './output.js';

export function registerLeave(program: Command): void {
  program.command('leave')
    .description('remove a cluster from the mesh: its records, exports, gateways and intermediate, in one transaction')
    .argument('<cluster>', 'cluster name')
    .addOption(etcdOption())
    .addOption(outputOption())
    .action(action(async (cluster: string, opts: EtcdFlags & { output: string }) => {
      checkName('cluster', cluster);
      const result = await withStore(opts, async (store) => {
        const record = await store.get<ClusterRecord>(keys.cluster(cluster));
        if (!record) throw new IsthmusError('ISTHMUS_ERR_CLUSTER_UNKNOWN', `no cluster named ${cluster} is in the mesh; \`isthmus clusters\` lists them`);
        const wasAlive = (await store.get(keys.alive(cluster))) !== undefined;
        // The trust domain's bundle goes only with the last cluster that uses it.
        const { records } = await store.list<ClusterRecord>(keys.clusters);
        const sharing = records.filter((r) => r.key !== keys.cluster(cluster) && !r.key.endsWith('/alive') && r.value.trustDomain === record.value.trustDomain);
        const dropBundle = sharing.length === 0;
        const committed = await store.transact({
          ifModRevision: { [keys.cluster(cluster)]: record.modRevision },
          deletes: [keys.cluster(cluster), keys.alive(cluster), keys.intermediate(cluster), ...(dropBundle ? [keys.bundle(record.value.trustDomain)] : [])],
          deletePrefixes: [keys.exportsOf(cluster), keys.gatewaysOf(cluster), keys.serviceExportsOf(cluster), `${keys.probes}${cluster}/`],
        });
        if (!committed) throw new IsthmusError('ISTHMUS_ERR_ETCD_CONFLICT', `cluster ${cluster} changed while leaving; run the command again`);
        return { cluster, left: true, wasAlive, trustDomainRemoved: dropBundle ? record.value.trustDomain : null };
      });
      if (opts.output === 'json') return printJson(result);
      process.stdout.write(`Cluster ${cluster} left the mesh.${result.wasAlive ? ' Its federation service will notice and stop.' : ''}${result.trustDomainRemoved ? ` Trust domain ${result.trustDomainRemoved} is no longer trusted by the mesh.` : ''}\n`);
    }));
}
