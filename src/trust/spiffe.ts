/**
 * SPIFFE IDs, the names every Isthmus certificate carries in its URI SAN (docs/trust.md). Follows the SPIFFE ID specification (spiffe/standards, SPIFFE-ID.md §2), narrowed
 * where Isthmus is stricter:
 *   - a trust domain must be a lower-case DNS name (the spec also allows `_`; Kubernetes and
 *     our SNI names do not, and a trust domain ends up in both);
 *   - namespaces and cluster names are DNS labels, service accounts DNS subdomains, because
 *     that is what Kubernetes lets them be, and an ID we could never have issued is a typo.
 */
import { IsthmusError } from '../core/errors.js';

export type ClusterRole = 'gateway' | 'federation' | 'ca';
export const clusterRoles: readonly ClusterRole[] = ['gateway', 'federation', 'ca'];

export interface SpiffeId {
  trustDomain: string;
  /** '' for a trust domain's own ID (`spiffe://example.org`), else starts with '/'. */
  path: string;
  namespace?: string;
  serviceAccount?: string;
  cluster?: string;
  role?: string;
  /** Set for `spiffe://<td>/operator/<name>` only. */
  operator?: string;
}

const scheme = 'spiffe://';
// SPIFFE-ID.md §2.3: IDs longer than 2048 bytes need not be accepted by anyone, so we never make one.
const maxIdLength = 2048;
const dnsLabel = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
// SPIFFE-ID.md §2.2: path segments use letters, digits, '.', '-', '_' only; no percent-encoding.
const pathSegment = /^[A-Za-z0-9._-]+$/;

function invalid(message: string): IsthmusError {
  return new IsthmusError('ISTHMUS_ERR_TRUST_SPIFFE_INVALID', message);
}

function isDnsName(name: string): boolean {
  return name.length > 0 && name.length <= 253 && name.split('.').every((label) => dnsLabel.test(label));
}

/** Returns the trust domain unchanged if it is a lower-case DNS name, else throws. */
export function validateTrustDomain(td: string): string {
  if (typeof td !== 'string' || !isDnsName(td)) {
    throw invalid(
      `Trust domain ${JSON.stringify(td)} is not a lower-case DNS name. ` +
        'Use letters a-z, digits, "-" and dots, e.g. "prod.example.org".',
    );
  }
  return td;
}

function checkName(kind: string, value: string, rule: 'label' | 'subdomain'): string {
  const ok = typeof value === 'string' && (rule === 'label' ? dnsLabel.test(value) : isDnsName(value));
  if (!ok) {
    const expected = rule === 'label' ? 'a DNS label (a-z, 0-9, "-", at most 63 characters)' : 'a lower-case DNS subdomain';
    throw invalid(`Cannot build a SPIFFE ID: ${kind} ${JSON.stringify(value)} is not ${expected}.`);
  }
  return value;
}

/** `spiffe://<td>/ns/<ns>/sa/<sa>`: the identity of a workload, decided by who authenticated. */
export function workloadId(trustDomain: string, ns: string, serviceAccount: string): string {
  validateTrustDomain(trustDomain);
  checkName('namespace', ns, 'label');
  checkName('service account', serviceAccount, 'subdomain');
  return `${scheme}${trustDomain}/ns/${ns}/sa/${serviceAccount}`;
}

/** `spiffe://<td>/cluster/<cluster>/<role>`: gateways, federation services and cluster CAs. */
export function clusterRoleId(trustDomain: string, cluster: string, role: ClusterRole): string {
  validateTrustDomain(trustDomain);
  checkName('cluster name', cluster, 'label');
  if (!clusterRoles.includes(role)) {
    throw invalid(`Cannot build a SPIFFE ID: role ${JSON.stringify(role)} is not one of ${clusterRoles.join(', ')}.`);
  }
  return `${scheme}${trustDomain}/cluster/${cluster}/${role}`;
}

/**
 * `spiffe://<td>/operator/<name>`: a person (or a script acting for one) at the CLI or the
 * dashboard. The name is a DNS subdomain, like a service account, so `alice` or `ci.deploy`.
 */
export function operatorId(trustDomain: string, name: string): string {
  validateTrustDomain(trustDomain);
  checkName('operator name', name, 'subdomain');
  return `${scheme}${trustDomain}/operator/${name}`;
}

/** `spiffe://<td>`: the ID a root CA carries, naming the trust domain it vouches for. */
export function trustDomainId(trustDomain: string): string {
  return `${scheme}${validateTrustDomain(trustDomain)}`;
}

/**
 * Parses and validates a SPIFFE ID. Never normalises: `spiffe://Example.org/a` and
 * `spiffe://example.org/a/` are refused rather than rewritten, because two spellings of one
 * identity would let an authorization policy match one and miss the other.
 */
export function parseSpiffeId(uri: string): SpiffeId {
  if (typeof uri !== 'string' || !uri.startsWith(scheme)) {
    throw invalid(`${JSON.stringify(uri)} is not a SPIFFE ID: it must start with "spiffe://" (lower case).`);
  }
  if (uri.length > maxIdLength) {
    throw invalid(`SPIFFE ID is ${uri.length} characters long; the limit is ${maxIdLength}.`);
  }
  const rest = uri.slice(scheme.length);
  const slash = rest.indexOf('/');
  const trustDomain = slash === -1 ? rest : rest.slice(0, slash);
  const path = slash === -1 ? '' : rest.slice(slash);
  if (!isDnsName(trustDomain)) {
    throw invalid(
      `SPIFFE ID ${JSON.stringify(uri)} has trust domain ${JSON.stringify(trustDomain)}, which is not a lower-case ` +
        'DNS name (no port, user, upper case, query or fragment).',
    );
  }
  const segments = path === '' ? [] : path.slice(1).split('/');
  for (const segment of segments) {
    if (segment === '' || segment === '.' || segment === '..' || !pathSegment.test(segment)) {
      throw invalid(
        `SPIFFE ID ${JSON.stringify(uri)} has an invalid path segment ${JSON.stringify(segment)}: segments are ` +
          'non-empty, not "." or "..", and use only letters, digits, ".", "-" and "_" (no trailing "/").',
      );
    }
  }
  const id: SpiffeId = { trustDomain, path };
  const [first, second, third, fourth] = segments;
  if (segments.length === 4 && first === 'ns' && third === 'sa') {
    id.namespace = second;
    id.serviceAccount = fourth;
  } else if (segments.length === 3 && first === 'cluster') {
    id.cluster = second;
    id.role = third;
  } else if (segments.length === 2 && first === 'operator') {
    id.operator = second;
  }
  return id;
}

/** The trust domain an ID belongs to, or undefined when the string is not a valid SPIFFE ID. */
export function trustDomainOf(uri: string): string | undefined {
  try {
    return parseSpiffeId(uri).trustDomain;
  } catch {
    return undefined;
  }
}
