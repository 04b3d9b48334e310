/**
 * The SNI a sidecar sends to a remote cluster's gateway names the exported service it wants:
 * `<service>.<namespace>.svc.<cluster>.isthmus`, lower case (docs/architecture.md, "Contracts"; docs/gateway.md),
 * or `<subset>.<service>.<namespace>.svc.<cluster>.isthmus` for only the instances of a
 * ServiceSubset (as Istio names a subset in its SNI; a leading label, so the five-label form
 * keeps its meaning and older gateways refuse the six-label one as not a mesh name).
 * Pure: the gateway parses what parseClientHello returns; sidecars format what they dial.
 */
import { checkName, dnsLabelPattern } from '../core/names.js';

export type ServiceSni = { service: string; namespace: string; cluster: string; subset?: string };

const dnsLabel = new RegExp(dnsLabelPattern);

/** Throws ISTHMUS_ERR_CLUSTER_NAME_INVALID if a part is not an RFC 1123 label once lower-cased. */
export function formatServiceSni({ service, namespace, cluster, subset }: ServiceSni): string {
  const parts = [
    ...(subset === undefined ? [] : [checkName('service', subset.toLowerCase())]),
    checkName('service', service.toLowerCase()),
    checkName('namespace', namespace.toLowerCase()),
    'svc',
    checkName('cluster', cluster.toLowerCase()),
    'isthmus',
  ];
  return parts.join('.');
}

/**
 * The service an SNI names, or undefined for anything not exactly of that shape: five labels, the
 * third `svc` and the last `isthmus`, or six with a subset first, each an RFC 1123 label in
 * lower case (parseClientHello already lower-cases SNI, so upper case here means the caller skipped it).
 */
export function parseServiceSni(name: string): ServiceSni | undefined {
  const all = name.split('.');
  if (all.length !== 5 && all.length !== 6) return undefined;
  const labels = all.length === 6 ? all.slice(1) : all;
  if (labels[2] !== 'svc' || labels[4] !== 'isthmus') return undefined;
  const [service = '', namespace = '', , cluster = ''] = labels;
  const subset = all.length === 6 ? all[0] ?? '' : undefined;
  if (![service, namespace, cluster, ...(subset === undefined ? [] : [subset])].every((label) => dnsLabel.test(label))) return undefined;
  return subset === undefined ? { service, namespace, cluster } : { service, namespace, cluster, subset };
}

/**
 * The SNI of a gateway probe: `probe.gateway.<cluster>.isthmus`. Four labels, so it can never be
 * mistaken for a service SNI (five). The gateway of <cluster> pipes it, TLS untouched, to its own
 * federation API: a prober gets a real TLS round trip through the gateway (docs/gateway.md, "Probes").
 */
export function formatProbeSni(cluster: string): string {
  return ['probe', 'gateway', checkName('cluster', cluster.toLowerCase()), 'isthmus'].join('.');
}

/** The cluster a probe SNI names, or undefined for anything not exactly of that shape. */
export function parseProbeSni(name: string): string | undefined {
  return parseGatewayName(name, 'probe');
}

/**
 * The SNI of a gateway health check: `health.gateway.<cluster>.isthmus`. The gateway of <cluster>
 * answers it itself, completing a TLS handshake with its own certificate, so a check with it
 * measures the gateway alone, not the federation behind it (the probe SNI's path). Four labels,
 * like the probe SNI, so never a service name (docs/gateway.md, "Health checks").
 */
export function formatGatewayHealthSni(cluster: string): string {
  return ['health', 'gateway', checkName('cluster', cluster.toLowerCase()), 'isthmus'].join('.');
}

/** The cluster a gateway health SNI names, or undefined for anything not exactly of that shape. */
export function parseGatewayHealthSni(name: string): string | undefined {
  return parseGatewayName(name, 'health');
}

function parseGatewayName(name: string, first: 'probe' | 'health'): string | undefined {
  const labels = name.split('.');
  if (labels.length !== 4 || labels[0] !== first || labels[1] !== 'gateway' || labels[3] !== 'isthmus') return undefined;
  const cluster = labels[2] ?? '';
  return dnsLabel.test(cluster) ? cluster : undefined;
}
