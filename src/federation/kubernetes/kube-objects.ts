/**
 * The few fields of Kubernetes objects the adapter keeps. A watch hands over whole objects
 * (a Service with managedFields is a few KiB); the adapter keeps only these summaries, so its
 * memory grows with what the mesh needs (names, ports, addresses), not with what the API sends.
 * Pure and tolerant: a field that is missing or of the wrong type reads as absent.
 */
import { sidecarInboundPortName } from '../../inject/sidecar-spec.js';
import { meshProtocol, type MeshProtocol } from '../../model/port-protocol.js';

export { meshProtocol, type MeshProtocol };

export interface ServiceSummary {
  namespace: string;
  name: string;
  /** ExternalName services cannot be exported (MCS: Valid=False). */
  type: string;
  /** `clusterIP: None`: imported as a Headless ServiceImport. */
  headless: boolean;
  /** Every TCP port, in the Service's order. */
  ports: { name?: string; port: number; targetPort?: number | string; protocol: MeshProtocol }[];
  /** `isthmus.dev/service-account` annotation, else the Service's name (as on the local platform). */
  serviceAccount: string;
}

export interface EndpointSummary {
  addresses: string[];
  ready: boolean;
  serving: boolean;
  terminating: boolean;
  zone?: string;
  nodeName?: string;
  /** `targetRef.name` when the endpoint is a Pod (`targetRef.kind: Pod`). */
  pod?: string;
}

/**
 * A Pod that runs the mesh's sidecar, and the port its sidecar's mTLS inbound listens on: the
 * `containerPort` of the port named `isthmus-in` that `isthmus inject` gives the sidecar
 * container. Pods without that port are not kept (summarizePod gives undefined for them).
 */
export interface PodSummary {
  namespace: string;
  name: string;
  inboundPort: number;
}

export interface SliceSummary {
  namespace: string;
  name: string;
  /** From the `kubernetes.io/service-name` label. */
  service: string;
  ports: { name?: string; port: number }[];
  endpoints: EndpointSummary[];
}

export interface NodeSummary { name: string; zone?: string; region?: string }

export interface NamespaceSummary {
  name: string;
  /** The `isthmus.dev/mesh` label, when it says `enabled` or `disabled`. */
  mesh?: 'enabled' | 'disabled';
  /** Being deleted (`status.phase: Terminating`, or a `deletionTimestamp`). */
  terminating: boolean;
}

export interface ExportSummary {
  namespace: string;
  name: string;
  createdAt: string;
  generation: number;
  conditions: Condition[];
}

/** metav1.Condition, as the MCS API's ServiceExport status holds them. */
export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

export const serviceAccountAnnotation = 'isthmus.dev/service-account';
export const zoneLabel = 'topology.kubernetes.io/zone';
export const regionLabel = 'topology.kubernetes.io/region';
export const serviceNameLabel = 'kubernetes.io/service-name';

type Raw = Record<string, unknown>;
const obj = (v: unknown): Raw => (v !== null && typeof v === 'object' && !Array.isArray(v) ? v as Raw : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);
const bool = (v: unknown): boolean | undefined => (typeof v === 'boolean' ? v : undefined);

export function metaOf(raw: unknown): { namespace: string; name: string; resourceVersion: string | undefined; labels: Raw; annotations: Raw } {
  const meta = obj(obj(raw).metadata);
  return { namespace: str(meta.namespace) ?? '', name: str(meta.name) ?? '', resourceVersion: str(meta.resourceVersion), labels: obj(meta.labels), annotations: obj(meta.annotations) };
}

export function summarizeService(raw: unknown): ServiceSummary {
  const meta = metaOf(raw);
  const spec = obj(obj(raw).spec);
  const ports = arr(spec.ports).flatMap((p) => {
    const port = obj(p);
    if (typeof port.port !== 'number' || (port.protocol !== undefined && port.protocol !== 'TCP')) return []; // UDP and SCTP are not meshed
    const name = str(port.name);
    const targetPort = typeof port.targetPort === 'number' || typeof port.targetPort === 'string' ? port.targetPort : undefined;
    return [{ ...(name ? { name } : {}), port: port.port, ...(targetPort !== undefined ? { targetPort } : {}), protocol: meshProtocol(str(port.appProtocol), name) }];
  });
  return {
    namespace: meta.namespace,
    name: meta.name,
    type: str(spec.type) ?? 'ClusterIP',
    headless: spec.clusterIP === 'None',
    ports,
    serviceAccount: str(meta.annotations[serviceAccountAnnotation]) ?? meta.name,
  };
}

/** The `appProtocol` a ServiceImport port says for a protocol: none for plain TCP. */
export function appProtocolOf(protocol: string): string | undefined {
  return protocol === 'http' ? 'http' : protocol === 'h2c' ? 'kubernetes.io/h2c' : undefined;
}

export function summarizeSlice(raw: unknown): SliceSummary | undefined {
  const meta = metaOf(raw);
  const service = str(meta.labels[serviceNameLabel]);
  const body = obj(raw);
  if (!service || (body.addressType !== undefined && body.addressType !== 'IPv4' && body.addressType !== 'IPv6')) return undefined;
  return {
    namespace: meta.namespace,
    name: meta.name,
    service,
    ports: arr(body.ports).flatMap((p) => {
      const port = obj(p);
      if (typeof port.port !== 'number' || (port.protocol !== undefined && port.protocol !== 'TCP')) return [];
      const name = str(port.name);
      return [{ ...(name ? { name } : {}), port: port.port }];
    }),
    endpoints: arr(body.endpoints).map((e) => {
      const endpoint = obj(e);
      const conditions = obj(endpoint.conditions);
      // discovery.k8s.io/v1: a nil `ready` means ready, a nil `serving` means the same as ready,
      // a nil `terminating` means not terminating.
      const ready = bool(conditions.ready) ?? true;
      const zone = str(endpoint.zone) ?? str(obj(endpoint.deprecatedTopology)[zoneLabel]);
      const nodeName = str(endpoint.nodeName);
      const targetRef = obj(endpoint.targetRef);
      const pod = targetRef.kind === 'Pod' ? str(targetRef.name) : undefined;
      return {
        addresses: arr(endpoint.addresses).filter((a): a is string => typeof a === 'string'),
        ready,
        serving: bool(conditions.serving) ?? ready,
        terminating: bool(conditions.terminating) ?? false,
        ...(zone ? { zone } : {}),
        ...(nodeName ? { nodeName } : {}),
        ...(pod ? { pod } : {}),
      };
    }),
  };
}

export function summarizePod(raw: unknown): PodSummary | undefined {
  const meta = metaOf(raw);
  const spec = obj(obj(raw).spec);
  // A native sidecar is an init container; a sidecar added by hand may be a plain container.
  for (const container of [...arr(spec.initContainers), ...arr(spec.containers)]) {
    for (const p of arr(obj(container).ports)) {
      const port = obj(p);
      if (port.name === sidecarInboundPortName && typeof port.containerPort === 'number' && (port.protocol ?? 'TCP') === 'TCP') {
        return { namespace: meta.namespace, name: meta.name, inboundPort: port.containerPort };
      }
    }
  }
  return undefined;
}

export function summarizeNode(raw: unknown): NodeSummary {
  const meta = metaOf(raw);
  const zone = str(meta.labels[zoneLabel]);
  const region = str(meta.labels[regionLabel]);
  return { name: meta.name, ...(zone ? { zone } : {}), ...(region ? { region } : {}) };
}

export function summarizeNamespace(raw: unknown): NamespaceSummary {
  const meta = metaOf(raw);
  const label = meta.labels['isthmus.dev/mesh'];
  const terminating = obj(obj(raw).status).phase === 'Terminating' || obj(obj(raw).metadata).deletionTimestamp !== undefined;
  return { name: meta.name, ...(label === 'enabled' || label === 'disabled' ? { mesh: label } : {}), terminating };
}

export function summarizeExport(raw: unknown): ExportSummary {
  const meta = metaOf(raw);
  const metadata = obj(obj(raw).metadata);
  const created = metadata.creationTimestamp;
  return {
    namespace: meta.namespace,
    name: meta.name,
    createdAt: created instanceof Date ? created.toISOString() : str(created) ?? new Date(0).toISOString(),
    generation: typeof metadata.generation === 'number' ? metadata.generation : 0,
    conditions: arr(obj(obj(raw).status).conditions).flatMap((c) => {
      const condition = obj(c);
      const type = str(condition.type);
      const status = condition.status;
      if (!type || (status !== 'True' && status !== 'False' && status !== 'Unknown')) return [];
      const at = condition.lastTransitionTime;
      return [{
        type, status, reason: str(condition.reason) ?? '', message: typeof condition.message === 'string' ? condition.message : '',
        lastTransitionTime: at instanceof Date ? at.toISOString() : str(at) ?? '',
        ...(typeof condition.observedGeneration === 'number' ? { observedGeneration: condition.observedGeneration } : {}),
      }];
    }),
  };
}
