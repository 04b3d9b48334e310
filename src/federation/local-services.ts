import type { ServiceConfig } from './config.js';
import type { RegisteredInstance } from './registry-file.js';
import { compareText } from '../core/compare-text.js';

/** One service of this cluster as the federation sees it, whatever platform it came from. */
export interface LocalService {
  namespace: string;
  name: string;
  serviceAccount: string;
  ports: { port: number; protocol: string; name?: string }[];
  /** How other clusters import it (MCS ServiceImport type); absent means ClusterSetIP. */
  serviceType?: 'Headless';
  instances: LocalInstance[];
}

export interface LocalInstance {
  address: string;
  zone: string;
  /** Instance labels (`isthmus register --label`); absent when none. */
  labels?: Record<string, string>;
  /**
   * The platform's own readiness (an EndpointSlice's `ready` condition). When present it is the
   * instance's health and the federation does not probe it; absent on the local platform.
   */
  ready?: boolean;
}

/**
 * Merges services declared in the cluster config with instances added by `isthmus register`.
 * Pure: the same inputs always give the same, sorted, list.
 */
export function localServices(configured: readonly ServiceConfig[], registered: readonly RegisteredInstance[], defaultZone: string): LocalService[] {
  const byId = new Map<string, LocalService>();
  for (const service of configured) {
    byId.set(`${service.namespace}/${service.name}`, {
      namespace: service.namespace,
      name: service.name,
      serviceAccount: service.serviceAccount ?? service.name,
      ports: service.ports.map((p) => (p.name === undefined ? { port: p.port, protocol: p.protocol } : { ...p })),
      instances: service.instances.map((i) => ({ address: i.address, zone: i.zone ?? defaultZone })),
    });
  }
  for (const instance of registered) {
    const id = `${instance.namespace}/${instance.service}`;
    let service = byId.get(id);
    if (!service) {
      service = {
        namespace: instance.namespace,
        name: instance.service,
        serviceAccount: instance.serviceAccount,
        ports: instance.ports ? instance.ports.map((p) => ({ ...p })) : [{ port: portOf(instance.address), protocol: 'http' }],
        instances: [],
      };
      byId.set(id, service);
    }
    if (!service.instances.some((i) => i.address === instance.address)) {
      service.instances.push({ address: instance.address, zone: instance.zone, ...(instance.labels && Object.keys(instance.labels).length > 0 ? { labels: { ...instance.labels } } : {}) });
    }
  }
  const list = [...byId.values()];
  for (const service of list) service.instances.sort((a, b) => compareText(a.address, b.address));
  return list.sort((a, b) => compareText(`${a.namespace}/${a.name}`, `${b.namespace}/${b.name}`));
}

function portOf(address: string): number {
  return Number(address.slice(address.lastIndexOf(':') + 1));
}
