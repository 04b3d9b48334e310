import type { Command } from 'commander';
import { keys } from '../core/keys.js';
import type { FederationStore } from '../federation/store.js';
import { buildCatalog, type Catalog } from '../model/catalog.js';
import { action, etcdOption, outputOption, withStore, type EtcdFlags } from './common.js';
import { printJson, printTable } from './output.js';

/**
 * What the mesh looks like from etcd right now. A cluster counts as alive while its leased
 * heartbeat exists: etcd deletes it when the lease lapses.
 */
export async function readMeshCatalog(store: FederationStore): Promise<{ catalog: Catalog; exportIntents: { cluster: string; namespace: string; name: string }[] }> {
  const { records, revision } = await store.list(keys.all);
  const now = Date.now();
  const map = new Map(records.map((r) => [r.key, r.value] as const));
  const seen = new Map<string, number>();
  for (const r of records) {
    const m = /^\/isthmus\/v1\/clusters\/([^/]+)\/alive$/.exec(r.key);
    if (m?.[1]) seen.set(m[1], now);
  }
  const catalog = buildCatalog({ records: map, revision, now: new Date(now), heartbeatsSeenAt: seen, staleAfterMs: 0 });
  const exportIntents = records
    .filter((r) => r.key.startsWith(keys.serviceExports))
    .map((r) => {
      const [cluster = '', namespace = '', name = ''] = r.key.slice(keys.serviceExports.length).split('/');
      return { cluster, namespace, name };
    });
  return { catalog, exportIntents };
}

/** Whether any alive cluster publishes namespace/name: an objective on a service that is in no cluster has nothing to judge. */
export function inMesh(catalog: Catalog, namespace: string, name: string): boolean {
  return catalog.services.some((s) => s.namespace === namespace && s.name === name && s.clusters.length > 0);
}

export function registerList(program: Command): void {
  program.command('services')
    .description('list the services exported in the mesh, per cluster, with healthy/total endpoints')
    .addOption(etcdOption())
    .addOption(outputOption())
    .action(action(async (opts: EtcdFlags & { output: string }) => {
      const { catalog, exportIntents } = await withStore(opts, readMeshCatalog);
      // An export the operator asked for but no live federation service publishes: say so.
      const pending = exportIntents.filter((i) => !catalog.services.some((s) => s.namespace === i.namespace && s.name === i.name && s.clusters.some((c) => c.cluster === i.cluster)));
      if (opts.output === 'json') return printJson({ revision: catalog.revision, services: catalog.services, pending });
      const rows = catalog.services.flatMap((s) => s.clusters.map((c) => [
        s.namespace, s.name, c.cluster,
        `${c.zones.reduce((n, z) => n + z.healthy, 0)}/${c.zones.reduce((n, z) => n + z.total, 0)}`,
        c.zones.map((z) => `${z.zone}:${z.healthy}/${z.total}`).join(' '),
        c.ports.map((p) => `${p.port}/${p.protocol}`).join(','),
        'published',
      ]));
      for (const p of pending) rows.push([p.namespace, p.name, p.cluster, '-', '-', '-', 'not published: cluster down or service unknown there']);
      printTable(['NAMESPACE', 'SERVICE', 'CLUSTER', 'HEALTHY', 'ZONES', 'PORTS', 'STATUS'], rows, 'No services are exported yet. Export one with: isthmus export <service> --namespace <ns> --cluster <cluster>');
    }));

  program.command('clusters')
    .description('list the clusters in the mesh with their liveness and gateways')
    .addOption(etcdOption())
    .addOption(outputOption())
    .action(action(async (opts: EtcdFlags & { output: string }) => {
      const { catalog } = await withStore(opts, readMeshCatalog);
      if (opts.output === 'json') return printJson({ revision: catalog.revision, clusters: catalog.clusters });
      printTable(
        ['NAME', 'REGION', 'ZONES', 'TRUST DOMAIN', 'ALIVE', 'FEDERATION', 'GATEWAYS'],
        catalog.clusters.map((c) => [c.name, c.region, c.zones.join(','), c.trustDomain, c.alive ? 'yes' : 'no', c.federation, c.gateways.map((g) => `${g.address}:${g.port}`).join(',') || '-']),
        'No clusters have joined yet. Join one with: isthmus join <cluster> --region <r> --zone <z> --etcd <url> --ca <dir> --out <dir>',
      );
    }));
}
