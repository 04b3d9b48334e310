import { IsthmusError } from './errors.js';

/** RFC 1123 label: cluster, namespace and service names end up in SNI and DNS names. */
const dnsLabel = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export function checkName(kind: 'cluster' | 'namespace' | 'service' | 'zone' | 'region' | 'service account', name: string): string {
  if (!dnsLabel.test(name)) {
    throw new IsthmusError(
      'ISTHMUS_ERR_CLUSTER_NAME_INVALID',
      `${kind} name "${name}" is not a DNS label: use at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit`,
    );
  }
  return name;
}

export const dnsLabelPattern = dnsLabel.source;
