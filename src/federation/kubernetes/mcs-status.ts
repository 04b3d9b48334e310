import type { Catalog } from '../../model/catalog.js';
import { appProtocolOf, type Condition, type ExportSummary, type ServiceSummary } from './kube-objects.js';
import type { SkippedEndpoint } from './kube-services.js';
import { compareText } from '../../core/compare-text.js';

/**
 * What the Multi-Cluster Services API objects of one cluster should say (KEP-1645), from the
 * mesh's catalog. Pure: the adapter diffs this against what it observes and writes the rest.
 *
 * - Every service some live cluster exports gets a ServiceImport in every cluster that has
 *   the namespace (namespace sameness), the exporting cluster included, as the KEP asks.
 * - Every port of the Service is carried, with its protocol (`appProtocol` http,
 *   kubernetes.io/h2c, or none for plain TCP); two exports agree when their whole port sets
 *   (name, port, protocol; in any order) are equal.
 * - Conflicts are resolved as the KEP says: the oldest export wins (the ServiceExport's
 *   creation time, which the adapter stores as the export intent's `exportedAt`; ties go to the
 *   cluster name). The import carries the winner's ports and type; an export whose ports differ
 *   from the winner's says Conflict=True and names the field and the winner.
 * - A ServiceExport whose Service is missing or is an ExternalName is Valid=False.
 * - Endpoints of an exported Service that are left out of the mesh (no sidecar, not a pod) are
 *   counted in the Valid condition's message, so `kubectl get serviceexport -o yaml` (and
 *   `kubectl describe`) shows why the mesh has fewer instances than the Service.
 * - This cluster's own exports are taken from its ServiceExports and Services, not from etcd's
 *   echo of them, so a federation that restarts (and has not published yet) or loses etcd
 *   does not withdraw its own cluster's imports.
 */

export interface ServiceImportSpec {
  namespace: string;
  name: string;
  type: 'ClusterSetIP' | 'Headless';
  ports: { name?: string; port: number; protocol: 'TCP'; appProtocol?: string }[];
  /** Exporting clusters, sorted. */
  clusters: string[];
}

export interface McsInput {
  cluster: string;
  catalog: Pick<Catalog, 'services'>;
  /** `<cluster>/<ns>/<name>` → exportedAt of every cluster's export intent (etcd). */
  exportedAt: ReadonlyMap<string, string>;
  /** This cluster's ServiceExports and Services, by `<ns>/<name>`. */
  exports: ReadonlyMap<string, ExportSummary>;
  services: ReadonlyMap<string, ServiceSummary>;
  /** Whether a namespace exists here and is in the mesh (kube-namespaces.ts). */
  hasNamespace: (namespace: string) => boolean;
  /** Endpoints of this cluster's Services left out of the mesh, by `<ns>/<name>` and reason (kube-services.ts). */
  skipped?: ReadonlyMap<string, SkippedCounts>;
  now: string;
}

export type SkippedCounts = Partial<Record<SkippedEndpoint['reason'], number>>;

export interface McsStatus {
  imports: Map<string, ServiceImportSpec>;
  /** Conditions each ServiceExport should carry, by `<ns>/<name>`. */
  conditions: Map<string, Condition[]>;
}

type Ports = { port: number; protocol: string; name?: string }[];

export function mcsStatus(input: McsInput): McsStatus {
  const imports = new Map<string, ServiceImportSpec>();
  const winners = new Map<string, { cluster: string; ports: Ports; headless: boolean }>();
  for (const service of withOwnExports(input)) {
    const id = `${service.namespace}/${service.name}`;
    const ranked = [...service.clusters].sort((a, b) => {
      const at = (c: string) => (c === input.cluster ? input.exports.get(id)?.createdAt : undefined) ?? input.exportedAt.get(`${c}/${id}`) ?? '9999';
      return compareText(at(a.cluster), at(b.cluster)) || compareText(a.cluster, b.cluster);
    });
    const winner = ranked[0];
    if (!winner) continue;
    winners.set(id, { cluster: winner.cluster, ports: winner.ports, headless: winner.serviceType === 'Headless' });
    if (!input.hasNamespace(service.namespace)) continue;
    imports.set(id, {
      namespace: service.namespace,
      name: service.name,
      type: winner.serviceType === 'Headless' ? 'Headless' : 'ClusterSetIP',
      ports: winner.ports.map((p) => {
        const appProtocol = appProtocolOf(p.protocol);
        return { ...(p.name ? { name: p.name } : {}), port: p.port, protocol: 'TCP' as const, ...(appProtocol ? { appProtocol } : {}) };
      }),
      clusters: service.clusters.map((c) => c.cluster).sort(),
    });
  }

  const conditions = new Map<string, Condition[]>();
  for (const [id, serviceExport] of input.exports) {
    const previous = serviceExport.conditions;
    const condition = (type: string, status: Condition['status'], reason: string, message: string): Condition => {
      const before = previous.find((c) => c.type === type);
      // lastTransitionTime moves only when the status does (metav1.Condition).
      const lastTransitionTime = before && before.status === status && before.lastTransitionTime ? before.lastTransitionTime : input.now;
      return { type, status, reason, message, lastTransitionTime, observedGeneration: serviceExport.generation };
    };
    const service = input.services.get(id);
    const valid = !service
      ? condition('Valid', 'False', 'NoService', `there is no Service ${id} in this cluster; create it, or delete this ServiceExport`)
      : service.type === 'ExternalName'
        ? condition('Valid', 'False', 'ServiceUnsupported', `Service ${id} is of type ExternalName, which cannot be exported`)
        : service.ports.length === 0
          ? condition('Valid', 'False', 'ServiceUnsupported', `Service ${id} has no TCP port; the mesh carries TCP only`)
          : condition('Valid', 'True', 'ServiceExported', `exported to the mesh by cluster ${input.cluster}${describeSkipped(input.skipped?.get(id))}`);
    const winner = winners.get(id);
    const ours = service ? service.ports.map((p) => ({ port: p.port, protocol: p.protocol, ...(p.name ? { name: p.name } : {}) })) : undefined;
    let conflict: Condition;
    if (!winner || !ours || winner.cluster === input.cluster) {
      conflict = condition('Conflict', 'False', 'NoConflicts', winner ? 'this export is the oldest of the service\'s exports; its ports and type are the ones imported' : 'no conflicting exports');
    } else if (portKey(ours) !== portKey(winner.ports)) {
      conflict = condition('Conflict', 'True', 'PortConflict', `spec.ports differ from cluster ${winner.cluster}'s export, which is older and wins: it exports ${describePorts(winner.ports)}, this cluster ${describePorts(ours)}`);
    } else if ((service?.headless ?? false) !== winner.headless) {
      conflict = condition('Conflict', 'True', 'TypeConflict', `cluster ${winner.cluster}'s export, which is older and wins, is ${winner.headless ? 'headless' : 'not headless'}; this cluster's is ${service?.headless ? 'headless' : 'not headless'}`);
    } else {
      conflict = condition('Conflict', 'False', 'NoConflicts', `consistent with the oldest export (cluster ${winner.cluster})`);
    }
    conditions.set(id, [valid, conflict]);
  }
  return { imports, conditions };
}

type MeshService = { namespace: string; name: string; clusters: { cluster: string; ports: Ports; serviceType?: 'Headless' }[] };

/** The catalog's services with this cluster's part replaced by what its own ServiceExports and Services say. */
function withOwnExports(input: McsInput): MeshService[] {
  const byId = new Map<string, MeshService>();
  for (const service of input.catalog.services) {
    byId.set(`${service.namespace}/${service.name}`, { namespace: service.namespace, name: service.name, clusters: service.clusters.filter((c) => c.cluster !== input.cluster) });
  }
  for (const [id, serviceExport] of input.exports) {
    const service = input.services.get(id);
    if (!service || service.type === 'ExternalName' || service.ports.length === 0) continue;
    let entry = byId.get(id);
    if (!entry) {
      entry = { namespace: serviceExport.namespace, name: serviceExport.name, clusters: [] };
      byId.set(id, entry);
    }
    entry.clusters.push({ cluster: input.cluster, ports: service.ports.map((p) => ({ port: p.port, protocol: p.protocol, ...(p.name ? { name: p.name } : {}) })), ...(service.headless ? { serviceType: 'Headless' as const } : {}) });
  }
  return [...byId.values()].filter((s) => s.clusters.length > 0);
}

/** `; 3 endpoints left out of the mesh: 2 without …, 1 not a pod …`, or nothing when none are. */
function describeSkipped(counts: SkippedCounts | undefined): string {
  const noSidecar = counts?.['no-sidecar'] ?? 0;
  const notAPod = counts?.['not-a-pod'] ?? 0;
  if (noSidecar + notAPod === 0) return '';
  const parts = [
    ...(noSidecar > 0 ? [`${noSidecar} whose pod has no isthmus sidecar (inject the workload with \`isthmus inject\`)`] : []),
    ...(notAPod > 0 ? [`${notAPod} not a pod (an EndpointSlice without a Pod targetRef; the mesh dials only pods' sidecars)`] : []),
  ];
  const total = noSidecar + notAPod;
  return `; ${total} endpoint${total === 1 ? '' : 's'} left out of the mesh: ${parts.join(', ')}`;
}

function portKey(ports: Ports): string {
  return ports.map((p) => `${p.name ?? ''}:${p.port}/${p.protocol}`).sort().join(',');
}

function describePorts(ports: Ports): string {
  return ports.map((p) => `${p.name ? `${p.name} ` : ''}${p.port}/${p.protocol}`).join(', ') || 'no ports';
}

/** True when the conditions differ in anything but lastTransitionTime's formatting. */
export function conditionsDiffer(a: readonly Condition[], b: readonly Condition[]): boolean {
  const key = (list: readonly Condition[]) => JSON.stringify([...list].sort((x, y) => compareText(x.type, y.type)).map((c) => [c.type, c.status, c.reason, c.message, c.observedGeneration ?? 0]));
  return key(a) !== key(b);
}
