import type { LocalInstance, LocalService } from '../local-services.js';
import type { EndpointSummary, NodeSummary, PodSummary, ServiceSummary, SliceSummary } from './kube-objects.js';
import { compareText } from '../../core/compare-text.js';

/** An endpoint that is not an instance of the mesh, and why: callers could only reach it by skipping mTLS. */
export interface SkippedEndpoint {
  /** `<ns>/<service>`. */
  service: string;
  address: string;
  /** `not-a-pod`: the endpoint has no Pod `targetRef`; `no-sidecar`: its Pod has no port named `isthmus-in`. */
  reason: 'not-a-pod' | 'no-sidecar';
}

/**
 * A cluster's Services and EndpointSlices as the federation sees every platform's services.
 * Pure, so the endpoint rules below are tested with tables:
 *
 * - An endpoint's zone is its own `zone`, else its node's `topology.kubernetes.io/zone` label,
 *   else the cluster's first zone.
 * - Its address is `<ip>:<inbound port>`: the pod's sidecar's mTLS inbound (the container port
 *   named `isthmus-in`), never the app's port, so every call passes the destination sidecar
 *   (mTLS, authorization, XFCC). The sidecar hands it to the app's port on loopback.
 * - Only the endpoints of slices that carry the Service's first port (matched by name, as
 *   kube-proxy matches them) are taken.
 * - An endpoint that is not a Pod, or whose Pod has no sidecar, is left out and reported in
 *   `skipped`: callers always speak mTLS, and its app port would take plain text.
 * - Ready endpoints are healthy; not-ready ones are listed (they count in `total`) but unhealthy.
 * - Terminating endpoints are left out, unless the Service has no ready endpoint at all: then
 *   those still `serving` carry the traffic while they drain (KEP-1672, as kube-proxy does).
 * - ExternalName Services have no endpoints of ours and are not listed.
 */
export function kubeServices(input: {
  services: Iterable<ServiceSummary>;
  slices: Iterable<SliceSummary>;
  nodes: ReadonlyMap<string, NodeSummary>;
  /** Pods with a sidecar, by `<ns>/<name>`. */
  pods: ReadonlyMap<string, PodSummary>;
  defaultZone: string;
}): { services: LocalService[]; skipped: SkippedEndpoint[] } {
  const slicesByService = new Map<string, SliceSummary[]>();
  for (const slice of input.slices) {
    const id = `${slice.namespace}/${slice.service}`;
    const list = slicesByService.get(id);
    if (list) list.push(slice);
    else slicesByService.set(id, [slice]);
  }
  const out: LocalService[] = [];
  const skipped: SkippedEndpoint[] = [];
  for (const service of input.services) {
    if (service.type === 'ExternalName' || service.ports.length === 0) continue;
    const first = service.ports[0] as ServiceSummary['ports'][number];
    const id = `${service.namespace}/${service.name}`;
    const candidates: EndpointSummary[] = [];
    for (const slice of slicesByService.get(id) ?? []) {
      const port = slice.ports.find((p) => p.name === first.name) ?? (first.name === undefined ? slice.ports[0] : undefined);
      if (port) candidates.push(...slice.endpoints);
    }
    const anyReady = candidates.some((c) => c.ready && !c.terminating);
    const instances = new Map<string, LocalInstance>();
    for (const endpoint of candidates) {
      const draining = endpoint.terminating && !anyReady && endpoint.serving;
      if (endpoint.terminating && !draining) continue;
      const address = endpoint.addresses[0];
      if (address === undefined) continue;
      const port = endpoint.pod === undefined ? undefined : input.pods.get(`${service.namespace}/${endpoint.pod}`)?.inboundPort;
      if (port === undefined) {
        skipped.push({ service: id, address, reason: endpoint.pod === undefined ? 'not-a-pod' : 'no-sidecar' });
        continue;
      }
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
      instances: [...instances.values()].sort((a, b) => compareText(a.address, b.address)),
    });
  }
  return { services: out.sort((a, b) => compareText(`${a.namespace}/${a.name}`, `${b.namespace}/${b.name}`)), skipped };
}
