/**
 * Trust bundles: the roots of one trust domain, as published in etcd under
 * `/isthmus/v1/trust/bundles/<td>` and merged into the mesh bundle every peer verifies against
 * (docs/trust.md). A bundle holds two roots only during a rotation; the order
 * of `roots` is the order they were added, so the newest root is last.
 *
 * Bundles travel between clusters and land in logs, so they are checked with Node's crypto on
 * every read and must never carry a private key.
 */
import type { X509Certificate } from 'node:crypto';
import { IsthmusError } from '../core/errors.js';
import { validateTrustDomain } from './spiffe.js';
import { isSignedBy, parseCertificates } from './verify.js';
import { altNamesOf, describeCertificate, rootTrustDomainOf } from './x509-facts.js';
import { recordVersion } from '../core/keys.js';

export interface TrustBundle {
  version: 1;
  trustDomain: string;
  /** PEM, one certificate each; two during a root rotation. */
  roots: string[];
}

function bundleInvalid(message: string, field?: string, cause?: unknown): IsthmusError {
  return new IsthmusError('ISTHMUS_ERR_TRUST_CERT_INVALID', message, {
    ...(field === undefined ? {} : { details: { field } }),
    ...(cause === undefined ? {} : { cause }),
  });
}

/** Normalises a fingerprint as Node prints it ("AB:CD:…"), accepting lower case and no colons. */
function normaliseFingerprint(fingerprint: string): string {
  const hex = fingerprint.replace(/:/g, '').toUpperCase();
  return hex.match(/../g)?.join(':') ?? '';
}

/** Parses one root and checks it can anchor a chain for `trustDomain`; returns it with its canonical PEM. */
function checkRoot(pem: string, trustDomain: string, field: string): X509Certificate {
  if (pem.includes('PRIVATE KEY')) {
    throw bundleInvalid(`${field} contains a private key. A trust bundle holds only root certificates; remove the key and keep it secret.`, field);
  }
  let certs: X509Certificate[];
  try {
    certs = parseCertificates(pem);
  } catch (cause) {
    throw bundleInvalid(`${field} is not a certificate: ${(cause as Error).message}`, field, cause);
  }
  const [root] = certs;
  if (!root || certs.length !== 1) {
    throw bundleInvalid(`${field} holds ${certs.length} certificates; put each root in its own entry of "roots".`, field);
  }
  if (!root.ca) throw bundleInvalid(`${field} (${describeCertificate(root)}) is not a CA certificate and cannot be a root.`, field);
  if (!isSignedBy(root, root)) {
    throw bundleInvalid(
      `${field} (${describeCertificate(root)}) is not self-signed. Put the root CA of trust domain "${trustDomain}" in the bundle, not an intermediate.`,
      field,
    );
  }
  const { uris } = altNamesOf(root);
  const domain = rootTrustDomainOf(uris);
  if (domain === undefined) {
    throw bundleInvalid(
      `${field} (${describeCertificate(root)}) carries ${uris.length === 0 ? 'no URI SAN' : `the URI SANs ${uris.join(', ')}`}; a root enters the bundle of "${trustDomain}" only with exactly one, spiffe://${trustDomain}. ` +
        'Without it the root could vouch for any trust domain\'s identities. Make the root with `isthmus ca init`.',
      field,
    );
  }
  if (domain !== trustDomain) {
    throw bundleInvalid(`${field} is the root of spiffe://${domain}, not of trust domain "${trustDomain}". Publish it in its own trust domain's bundle.`, field);
  }
  return root;
}

function freeze(bundle: TrustBundle): TrustBundle {
  return Object.freeze({ ...bundle, roots: Object.freeze([...bundle.roots]) as string[] });
}

/** A bundle with one root, as `isthmus join` publishes for a new trust domain. */
export function newBundle(trustDomain: string, rootPem: string): TrustBundle {
  validateTrustDomain(trustDomain);
  const root = checkRoot(rootPem, trustDomain, 'root');
  return freeze({ version: recordVersion, trustDomain, roots: [root.toString()] });
}

/** Adds a root (the first step of a rotation). Adding a root that is already present changes nothing. */
export function addRoot(bundle: TrustBundle, pem: string): TrustBundle {
  const root = checkRoot(pem, bundle.trustDomain, 'root');
  const known = bundle.roots.some((existing) => parseCertificates(existing)[0]?.fingerprint256 === root.fingerprint256);
  return known ? bundle : freeze({ ...bundle, roots: [...bundle.roots, root.toString()] });
}

/**
 * Drops the root with this SHA-256 fingerprint (the last step of a rotation). Unknown
 * fingerprints change nothing, so a retried rotation step is harmless; removing the last root
 * is refused, because a bundle without roots would cut the trust domain off the mesh.
 */
export function removeRoot(bundle: TrustBundle, fingerprint256: string): TrustBundle {
  const wanted = normaliseFingerprint(fingerprint256);
  const roots = bundle.roots.filter((pem) => parseCertificates(pem)[0]?.fingerprint256 !== wanted);
  if (roots.length === bundle.roots.length) return bundle;
  if (roots.length === 0) {
    throw bundleInvalid(
      `Refusing to remove the only root of trust domain "${bundle.trustDomain}": no workload of it could be verified any more. ` +
        'Add the new root first (`isthmus ca add-root`), then remove the old one.',
    );
  }
  return freeze({ ...bundle, roots });
}

const allowedFields = new Set(['version', 'trustDomain', 'roots']);

/** Checks a bundle from etcd, a file or the API; returns a frozen copy with canonical PEM. */
export function validateBundle(value: unknown): TrustBundle {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw bundleInvalid('A trust bundle must be a JSON object with "version", "trustDomain" and "roots".');
  }
  // Anywhere in the record, not only in roots: a key pasted into any field would be published.
  if (JSON.stringify(value).includes('PRIVATE KEY')) {
    throw bundleInvalid('The trust bundle contains a private key. Bundles are public; remove the key and publish root certificates only.');
  }
  const record = value as Record<string, unknown>;
  const unknown = Object.keys(record).find((key) => !allowedFields.has(key));
  if (unknown !== undefined) throw bundleInvalid(`Trust bundle field "${unknown}" is not known; expected version, trustDomain, roots.`, unknown);
  if (record.version !== recordVersion) {
    throw bundleInvalid(`Trust bundle version ${JSON.stringify(record.version)} is not supported (expected ${recordVersion}); upgrade Isthmus.`, 'version');
  }
  let trustDomain: string;
  try {
    trustDomain = validateTrustDomain(record.trustDomain as string);
  } catch (cause) {
    throw bundleInvalid(`Trust bundle field "trustDomain": ${(cause as Error).message}`, 'trustDomain', cause);
  }
  const roots = record.roots;
  if (!Array.isArray(roots) || roots.length === 0 || roots.some((root) => typeof root !== 'string')) {
    throw bundleInvalid('Trust bundle field "roots" must be a non-empty list of PEM certificates.', 'roots');
  }
  const parsed = (roots as string[]).map((pem, index) => checkRoot(pem, trustDomain, `roots[${index}]`));
  const fingerprints = new Set(parsed.map((root) => root.fingerprint256));
  if (fingerprints.size !== parsed.length) throw bundleInvalid('Trust bundle field "roots" lists the same root twice; keep one copy.', 'roots');
  return freeze({ version: recordVersion, trustDomain, roots: parsed.map((root) => root.toString()) });
}

/** Every root of every trust domain, each once: what peers pass to TLS as `ca`. */
export function meshRoots(bundles: TrustBundle[]): string[] {
  const seen = new Set<string>();
  const roots: string[] = [];
  for (const bundle of bundles) {
    for (const pem of bundle.roots) {
      for (const cert of parseCertificates(pem)) {
        if (seen.has(cert.fingerprint256)) continue;
        seen.add(cert.fingerprint256);
        roots.push(cert.toString());
      }
    }
  }
  return roots;
}

/**
 * The mesh roots from the bundle records under `/trust/bundles/` (as a mirror of etcd lists them),
 * plus `extra` bundles; a record that does not validate is reported to `onInvalid` and skipped.
 */
export function meshRootsOfRecords(records: readonly (readonly [string, unknown])[], extra: TrustBundle[] = [], onInvalid?: (key: string, err: Error) => void): string[] {
  const bundles: TrustBundle[] = [];
  for (const [key, value] of records) {
    try {
      bundles.push(validateBundle(value));
    } catch (err) {
      onInvalid?.(key, err as Error);
    }
  }
  return meshRoots([...bundles, ...extra]);
}
