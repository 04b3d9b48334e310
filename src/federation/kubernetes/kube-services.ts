import type { LocalInstance, LocalService } from '../local-services.js';
import type { EndpointSummary, NodeSummary, ServiceSummary, SliceSummary } from './kube-objects.js';

/**
 * A cluster's Services and EndpointSlices as the federation sees every platform's services.
 * Pure, so the endpoint rules below are tested with tables:
 *
 * - An endpoint's zone is its own `zone`, else its node's `topology.kubernetes.io/zone` label,
 *   else the cluster's first zone.
 * - Its address is `<ip>:<port>` with the slice's port of the Service's first port (matched by
 *   name, as kube-proxy matches them), so a sidecar dials what the pod listens on.
 * - Ready endpoints are healthy; not-ready ones are listed (they count in `total`) but unhealthy.
 * - Terminating endpoints are left out, unless the Service has no ready endpoint at all: then
 *   those still `serving` carry the traffic while they drain (KEP-1672, as kube-proxy does).
 * - ExternalName Services have no endpoints of ours and are not listed.
 */
export function kubeServices(input: {
  services: Iterable<ServiceSummary>;
  slices: Iterable<SliceSummary>;
  nodes: ReadonlyMap<string, NodeSummary>;
  defaultZone: string;
}): LocalService[] {
  const slicesByService = new Map<string, SliceSummary[]>();
  for (const slice of input.slices) {
    const id = `${slice.namespace}/${slice.service}`;
    const list = slicesByService.get(id);
    if (list) list.push(slice);
    else slicesByService.set(id, [slice]);
  }
  const out: LocalService[] = [];
  for (const service of input.services) {
    if (service.type === 'ExternalName' || service.ports.length === 0) continue;
    const first = service.ports[0] as ServiceSummary['ports'][number];
    const candidates: { endpoint: EndpointSummary; port: number }[] = [];
    for (const slice of slicesByService.get(`${service.namespace}/${service.name}`) ?? []) {
      const port = slice.ports.find((p) => p.name === first.name) ?? (first.name === undefined ? slice.ports[0] : undefined);
      if (!port) continue;
      for (const endpoint of slice.endpoints) candidates.push({ endpoint, port: port.port });
    }
    const anyReady = candidates.some((c) => c.endpoint.ready && !c.endpoint.terminating);
    const instances = new Map<string, LocalInstance>();
    for (const { endpoint, port } of candidates) {
      const draining = endpoint.terminating && !anyReady && endpoint.serving;
      if (endpoint.terminating && !draining) continue;
      const address = endpoint.addresses[0];
      if (address === undefined) continue;
      const hostPort = address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
      const zone = endpoint.zone ?? (endpoint.nodeName ? input.nodes.get(endpoint.nodeName)?.zone : undefined) ?? input.defaultZone;
      instances.set(hostPort, { address: hostPort, zone, ready: draining || endpoint.ready });
    }
    out.push({
      namespace: service.namespace,
      name: service.name,
      serviceAccount: service.serviceAccount,
      ports: service.ports.map((p) => ({ port: p.port, protocol: p.protocol, ...(p.name ? { name: p.name } : {}) })),
      ...(service.headless ? { serviceType: 'Headless' as const } : {}),
      instances: [...instances.values()].sort((a, b) => a.address.localeCompare(b.address)),
    });
  }
  return out.sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`));
}
