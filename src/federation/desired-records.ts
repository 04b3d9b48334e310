import { keys, recordVersion } from '../core/keys.js';
import { labelSets } from '../model/labels.js';
import type { ExportRecord, GatewayRecord } from '../model/records.js';
import { workloadId } from '../trust/spiffe.js';
import type { LocalService } from './local-services.js';

export interface DesiredInput {
  cluster: string;
  trustDomain: string;
  zones: readonly string[];
  services: readonly LocalService[];
  /** `<ns>/<name>` of every service the operator exported from this cluster. */
  exported: ReadonlySet<string>;
  isHealthy: (address: string) => boolean;
  gateways: readonly { id: string; address: string; zone?: string | undefined; admin?: string | undefined }[];
}

/**
 * The leased records this cluster should have in etcd right now. The publisher diffs this
 * against what it wrote last and writes only the difference. Pure, so "what would we publish"
 * is testable without etcd.
 */
export function desiredRecords(input: DesiredInput): Map<string, ExportRecord | GatewayRecord> {
  const out = new Map<string, ExportRecord | GatewayRecord>();
  for (const service of input.services) {
    if (!input.exported.has(`${service.namespace}/${service.name}`)) continue;
    const zones: ExportRecord['zones'] = {};
    for (const zone of input.zones) zones[zone] = { healthy: 0, total: 0 };
    for (const instance of service.instances) {
      const counts = zones[instance.zone] ?? (zones[instance.zone] = { healthy: 0, total: 0 });
      counts.total += 1;
      if (instance.ready ?? input.isHealthy(instance.address)) counts.healthy += 1;
    }
    // Which label sets it has, with counts: lets callers elsewhere route a ServiceSubset here.
    const sets = labelSets(service.instances.map((i) => ({ labels: i.labels, healthy: i.ready ?? input.isHealthy(i.address) })));
    out.set(keys.export(input.cluster, service.namespace, service.name), {
      version: recordVersion,
      ports: service.ports.map((p) => ({ ...p })),
      identities: [workloadId(input.trustDomain, service.namespace, service.serviceAccount)],
      zones,
      ...(service.serviceType ? { serviceType: service.serviceType } : {}),
      ...(sets.length > 0 ? { labelSets: sets } : {}),
    });
  }
  for (const gateway of input.gateways) {
    const split = gateway.address.lastIndexOf(':');
    out.set(keys.gateway(input.cluster, gateway.id), {
      version: recordVersion,
      address: gateway.address.slice(0, split),
      port: Number(gateway.address.slice(split + 1)),
      zone: gateway.zone ?? input.zones[0] ?? 'default',
      ...(gateway.admin ? { admin: gateway.admin } : {}),
    });
  }
  return out;
}
