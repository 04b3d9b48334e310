/**
 * The certificate authority: the root an operator keeps on disk, each cluster's intermediate,
 * and the leaves the federation service hands to sidecars and gateways (docs/trust.md). This file decides what may be issued; certificate-builder.ts encodes it.
 *
 * Invariants kept here:
 *   - a leaf's identity is the one the caller authenticated, never one read from a CSR;
 *   - a CA signs only identities of its own trust domain;
 *   - nothing outlives its issuer: validity is clipped to the issuer's notAfter;
 *   - a CA that cannot issue CAs (pathLen 0) is never asked to.
 */
import { createPrivateKey, createPublicKey, X509Certificate, type KeyObject } from 'node:crypto';
import { IsthmusError } from '../core/errors.js';
import { buildCertificate, encodeName, issuerFromCertificate, keyIdentifier, type Issuer, type NameAttribute } from './certificate-builder.js';
import { generateLeafKey, generateRsaKey, readCsr } from './csr.js';
import { oids, toDer } from './der.js';
import { clusterRoleId, operatorId, parseSpiffeId, trustDomainId, trustDomainOf, validateTrustDomain } from './spiffe.js';
import { parseCertificates } from './verify.js';
import { basicConstraintsOf, describeCertificate, notAfterOf, spiffeIdsOf } from './x509-facts.js';

export { createCsr } from './csr.js';

export interface CertAndKey {
  certPem: string;
  keyPem: string;
}

interface LoadedIssuer extends Issuer {
  cert: X509Certificate;
  trustDomain: string;
  notAfter: Date;
}

const second = 1000;
const day = 86_400 * second;
// Peers whose clocks run a little behind must not see a brand-new certificate as "not yet valid".
const clockSkew = 60 * second;

function positive(value: number, name: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `${name} must be a positive number, got ${String(value)}.`);
  }
  return value;
}

function exportKey(key: KeyObject): string {
  return key.export({ type: 'pkcs8', format: 'pem' }) as string;
}

function caUnusable(message: string, cause?: unknown): IsthmusError {
  return new IsthmusError('ISTHMUS_ERR_TRUST_CA_MISSING', message, cause === undefined ? {} : { cause });
}

/** Checks an issuer pair before it signs anything, so a mismatched pair cannot mint certificates nobody accepts. */
function loadIssuer(ca: CertAndKey, role: string): LoadedIssuer {
  const cert = parseCertificates(ca.certPem)[0] as X509Certificate;
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(ca.keyPem);
  } catch (cause) {
    throw caUnusable(`The ${role} CA key is not a readable PEM private key. Use the key written together with the ${role} certificate.`, cause);
  }
  if (!cert.ca) throw caUnusable(`${describeCertificate(cert)} is not a CA certificate, so it cannot sign. Pass the ${role} CA.`);
  if (!cert.checkPrivateKey(privateKey)) {
    throw caUnusable(`The ${role} CA key does not belong to ${describeCertificate(cert)}. Use the key written together with that certificate.`);
  }
  if (privateKey.asymmetricKeyType !== 'rsa' && privateKey.asymmetricKeyType !== 'ec') {
    throw caUnusable(`The ${role} CA key is of type ${String(privateKey.asymmetricKeyType)}; Isthmus signs with RSA or EC keys only.`);
  }
  const trustDomain = spiffeIdsOf(cert).map(trustDomainOf).find((domain) => domain !== undefined);
  if (!trustDomain) {
    throw caUnusable(`${describeCertificate(cert)} has no spiffe:// URI SAN, so it does not say which trust domain it serves. Create the CA with \`isthmus ca init\`.`);
  }
  const issuer = issuerFromCertificate(cert.raw, privateKey, createPublicKey(privateKey));
  return { ...issuer, cert, trustDomain, notAfter: notAfterOf(cert) };
}

function validity(now: Date, lifetimeMs: number, issuer: LoadedIssuer | undefined): { notBefore: Date; notAfter: Date } {
  const notAfter = new Date(Math.min(now.getTime() + lifetimeMs, issuer?.notAfter.getTime() ?? Infinity));
  if (issuer && notAfter.getTime() <= now.getTime()) {
    throw new IsthmusError(
      'ISTHMUS_ERR_TRUST_CERT_EXPIRED',
      `The issuing CA ${describeCertificate(issuer.cert)} expired at ${issuer.notAfter.toISOString()} and can sign nothing more. ` +
        'Rotate it (a new root with `isthmus ca init`, or a new cluster intermediate) and issue from that.',
    );
  }
  return { notBefore: new Date(now.getTime() - clockSkew), notAfter };
}

function requireOwnDomain(identity: string, issuer: LoadedIssuer, what: string): void {
  const { trustDomain } = parseSpiffeId(identity);
  if (trustDomain !== issuer.trustDomain) {
    throw new IsthmusError(
      'ISTHMUS_ERR_TRUST_IDENTITY_DENIED',
      `Refusing to sign ${identity}: the ${what} is for the foreign trust domain "${trustDomain}", and this CA serves "${issuer.trustDomain}". ` +
        `Ask a CA of "${trustDomain}", or request an identity in "${issuer.trustDomain}".`,
    );
  }
}

/** A self-signed root for one trust domain. Its key belongs on the operator's disk, nowhere else. */
export function createRootCa(opts: { trustDomain: string; validityDays?: number; now?: Date }): CertAndKey {
  const trustDomain = validateTrustDomain(opts.trustDomain);
  const lifetime = positive(opts.validityDays ?? 3650, 'validityDays') * day;
  const { privateKey, publicKey } = generateRsaKey();
  const subject: NameAttribute[] = [
    { oid: oids.organizationName, value: trustDomain },
    { oid: oids.commonName, value: 'Isthmus root CA' },
  ];
  const certPem = buildCertificate({
    profile: 'root',
    subject,
    publicKey,
    issuer: { nameDer: toDer(encodeName(subject)), keyId: keyIdentifier(publicKey), privateKey },
    ...validity(opts.now ?? new Date(), lifetime, undefined),
    uris: [trustDomainId(trustDomain)],
  });
  return { certPem, keyPem: exportKey(privateKey) };
}

/** A cluster's intermediate CA: it signs that cluster's leaves and, with pathLen 0, nothing else. */
export function createIntermediateCa(opts: { root: CertAndKey; trustDomain: string; cluster: string; validityDays?: number; now?: Date }): CertAndKey {
  const identity = clusterRoleId(validateTrustDomain(opts.trustDomain), opts.cluster, 'ca');
  const issuer = loadIssuer(opts.root, 'root');
  requireOwnDomain(identity, issuer, 'intermediate');
  if (basicConstraintsOf(issuer.cert)?.pathLen === 0) {
    throw new IsthmusError(
      'ISTHMUS_ERR_TRUST_CHAIN_INVALID',
      `${describeCertificate(issuer.cert)} has pathLen 0 and may not issue another CA; an intermediate signed by it would never verify. ` +
        'Pass the root CA (root-cert.pem and root-key.pem).',
    );
  }
  const lifetime = positive(opts.validityDays ?? 365, 'validityDays') * day;
  const { privateKey, publicKey } = generateRsaKey();
  const certPem = buildCertificate({
    profile: 'intermediate',
    subject: [
      { oid: oids.organizationName, value: issuer.trustDomain },
      { oid: oids.commonName, value: `Isthmus intermediate CA for cluster ${opts.cluster}` },
    ],
    publicKey,
    issuer,
    ...validity(opts.now ?? new Date(), lifetime, issuer),
    uris: [identity],
  });
  return { certPem, keyPem: exportKey(privateKey) };
}

interface LeafOptions {
  identity: string;
  issuer: CertAndKey;
  ttlSeconds?: number;
  now?: Date;
  dnsNames?: string[];
  ipAddresses?: string[];
}

/** The one path every leaf takes, whether its key came in a CSR or was made here. */
function issueLeaf(publicKey: KeyObject, opts: LeafOptions, issuer: LoadedIssuer, profile: 'leaf' | 'operator' = 'leaf'): string {
  const identity = parseSpiffeId(opts.identity);
  if (identity.path === '') {
    throw new IsthmusError(
      'ISTHMUS_ERR_TRUST_IDENTITY_DENIED',
      `Refusing to sign ${opts.identity}: it names the trust domain itself, and a leaf must name a workload (SPIFFE X509-SVID §3.1). ` +
        'Use an ID such as spiffe://<trust-domain>/ns/<ns>/sa/<service-account>.',
    );
  }
  const lifetime = positive(opts.ttlSeconds ?? 86_400, 'ttlSeconds') * second;
  return buildCertificate({
    profile,
    subject: [{ oid: oids.organizationName, value: issuer.trustDomain }],
    publicKey,
    issuer,
    ...validity(opts.now ?? new Date(), lifetime, issuer),
    uris: [opts.identity],
    dnsNames: opts.dnsNames ?? [],
    ipAddresses: opts.ipAddresses ?? [],
  });
}

/**
 * Signs a sidecar's CSR for `identity`, which the caller decided from how the sidecar
 * authenticated. The CSR contributes its public key and nothing else; its self-signature is
 * checked so nobody obtains a certificate for a key they do not hold.
 */
export function signWorkloadCsr(opts: { csrPem: string; identity: string; issuer: CertAndKey; ttlSeconds?: number; now?: Date; dnsNames?: string[] }): { certPem: string } {
  const issuer = loadIssuer(opts.issuer, 'issuing');
  // Refuse a foreign identity before touching the untrusted CSR: the cheaper, clearer error first.
  requireOwnDomain(opts.identity, issuer, 'CSR');
  const publicKey = readCsr(opts.csrPem);
  return { certPem: issueLeaf(publicKey, opts, issuer) };
}

/** A key and leaf in one step, for serving certificates of the federation service and gateways. */
export function issueCertificate(opts: LeafOptions): CertAndKey {
  const issuer = loadIssuer(opts.issuer, 'issuing');
  requireOwnDomain(opts.identity, issuer, 'certificate request');
  const { privateKey, publicKey } = generateLeafKey();
  return { certPem: issueLeaf(publicKey, opts, issuer), keyPem: exportKey(privateKey) };
}

/**
 * An operator's certificate (`spiffe://<td>/operator/<name>`, clientAuth only) from the root or a
 * cluster intermediate of the trust domain; `chainPem` is what the holder presents after it.
 */
export function issueOperatorCertificate(opts: { name: string; issuer: CertAndKey; issuerChainPem?: string[]; ttlSeconds: number; now?: Date }): CertAndKey & { identity: string; chainPem: string[] } {
  const issuer = loadIssuer(opts.issuer, 'issuing');
  const identity = operatorId(issuer.trustDomain, opts.name);
  const { privateKey, publicKey } = generateLeafKey();
  const certPem = issueLeaf(publicKey, { identity, issuer: opts.issuer, ttlSeconds: opts.ttlSeconds, ...(opts.now ? { now: opts.now } : {}) }, issuer, 'operator');
  return { identity, certPem, keyPem: exportKey(privateKey), chainPem: opts.issuerChainPem ?? [] };
}
