/**
 * Deciding whether a certificate is acceptable, with Node's crypto only (docs/trust.md). Path validation follows RFC 5280 §6.1 for the parts a mesh needs: signatures,
 * validity, CA flags and path length; plus SPIFFE's leaf rules (X509-SVID §5.2) and the rule
 * that a trust domain's root vouches only for identities in that trust domain, so one domain of
 * the mesh bundle cannot mint identities of another.
 */
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { IsthmusError } from '../core/errors.js';
import { parseSpiffeId, trustDomainOf, type SpiffeId } from './spiffe.js';
import { altNamesOf, basicConstraintsOf, describeCertificate, extKeyUsageOf, keyUsageBits, keyUsageOf, meshKeyPurposes, notAfterOf, notBeforeOf, rootTrustDomainOf, spiffeIdsOf } from './x509-facts.js';

// Root → cluster intermediate → leaf is our whole hierarchy; a few more hops tolerate operators'
// plug-in CAs while a loop of cross-signed certificates still ends quickly.
const maxIntermediates = 4;

function chainInvalid(message: string): IsthmusError {
  return new IsthmusError('ISTHMUS_ERR_TRUST_CHAIN_INVALID', message);
}

/** Every certificate in a PEM bundle or chain, in order. Text between blocks is ignored, other blocks are not. */
export function parseCertificates(pem: string): X509Certificate[] {
  if (typeof pem !== 'string') {
    throw new IsthmusError('ISTHMUS_ERR_TRUST_CERT_INVALID', `Expected PEM text, got ${typeof pem}. Pass the contents of a .pem file.`);
  }
  const blocks = [...pem.matchAll(/-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g)];
  const foreign = blocks.find((block) => block[1] !== 'CERTIFICATE');
  if (foreign) {
    throw new IsthmusError(
      'ISTHMUS_ERR_TRUST_CERT_INVALID',
      `Expected only certificates but found a "${foreign[1]}" PEM block. ` +
        (foreign[1]?.includes('PRIVATE KEY') ? 'Never put a private key where certificates go; pass the certificate file instead.' : 'Pass a file of "CERTIFICATE" blocks.'),
    );
  }
  if (blocks.length === 0) {
    throw new IsthmusError(
      'ISTHMUS_ERR_TRUST_CERT_INVALID',
      'No "-----BEGIN CERTIFICATE-----" block found. Pass a PEM certificate (DER files can be converted with `openssl x509 -inform der`).',
    );
  }
  return blocks.map((block, index) => {
    try {
      return new X509Certificate(block[0]);
    } catch (cause) {
      throw new IsthmusError(
        'ISTHMUS_ERR_TRUST_CERT_INVALID',
        `Certificate #${index + 1} in the PEM could not be parsed (${(cause as Error).message}); the file is damaged or truncated. Copy it again from its source.`,
        { cause },
      );
    }
  });
}

/** True when `parent`'s name and key id match `child`'s issuer and `parent`'s key made `child`'s signature. */
export function isSignedBy(child: X509Certificate, parent: X509Certificate): boolean {
  return child.checkIssued(parent) && child.verify(parent.publicKey);
}

export interface VerifiedChain {
  /** The leaf's SPIFFE ID, or undefined for a leaf that carries none. */
  identity: string | undefined;
  /** When the chain stops verifying: the earliest notAfter on the path (for our chains, the leaf's). */
  notAfter: Date;
  /** The certificates above the leaf, nearest first, ending with the trusted root. */
  issuerChain: X509Certificate[];
}

function checkValidity(cert: X509Certificate, role: string, now: Date): void {
  const notBefore = notBeforeOf(cert);
  const notAfter = notAfterOf(cert);
  if (now.getTime() > notAfter.getTime()) {
    throw new IsthmusError(
      'ISTHMUS_ERR_TRUST_CERT_EXPIRED',
      `The ${role} certificate ${describeCertificate(cert)} expired at ${notAfter.toISOString()} (now ${now.toISOString()}). ` +
        (role === 'leaf' ? 'Renew it from its CA.' : 'Re-issue it, then re-issue the certificates it signed.'),
    );
  }
  if (now.getTime() < notBefore.getTime()) {
    throw new IsthmusError(
      'ISTHMUS_ERR_TRUST_CERT_EXPIRED',
      `The ${role} certificate ${describeCertificate(cert)} is not valid until ${notBefore.toISOString()} (now ${now.toISOString()}). ` +
        "Check this machine's clock and the clock of the machine that issued it.",
    );
  }
}

function findIssuer(current: X509Certificate, candidates: X509Certificate[], now: Date): X509Certificate | undefined {
  // During rotation an old and a new certificate can share a name and key; prefer the one valid now.
  const matches = candidates.filter((candidate) => isSignedBy(current, candidate));
  const live = (cert: X509Certificate) => notBeforeOf(cert) <= now && now <= notAfterOf(cert);
  return matches.find(live) ?? matches[0];
}

function noIssuerReason(current: X509Certificate, everyone: X509Certificate[]): string {
  const sameName = everyone.filter((cert) => cert.subject === current.issuer);
  const namedAndKeyed = sameName.find((cert) => current.checkIssued(cert));
  if (namedAndKeyed) {
    return (
      `The signature on ${describeCertificate(current)} does not verify with the key of its issuer ${describeCertificate(namedAndKeyed)}: ` +
      'the certificate was altered after it was signed. Fetch a fresh copy or re-issue it.'
    );
  }
  if (sameName.length > 0) {
    return (
      `${describeCertificate(current)} was issued by a CA named "${current.issuer.replace(/\n/g, ', ')}", but with a different key than ` +
      `${sameName.map(describeCertificate).join(', ')} (an old or new root during a rotation, or another trust domain's CA of the same name). ` +
      "Add that CA's root to the trust bundle, or re-issue the certificate from a current CA."
    );
  }
  return (
    `${describeCertificate(current)} was issued by "${current.issuer.replace(/\n/g, ', ')}", which is neither a trusted root ` +
    'nor one of the intermediates presented. Send the full chain (cert-chain.pem), or add the trust bundle of the trust domain it comes from.'
  );
}

/**
 * Builds and checks the path leaf → intermediates → one of `rootsPem`. `leafPem` may itself be
 * a chain (leaf first), as a peer sends it. Throws ISTHMUS_ERR_TRUST_CHAIN_INVALID or
 * ISTHMUS_ERR_TRUST_CERT_EXPIRED with a reason a person can act on.
 */
export function verifyChain(opts: {
  leafPem: string; intermediatesPem?: string[] | string; rootsPem: string[]; now?: Date;
  /** `mesh` (the default): the leaf serves and calls; `client`: it only needs to call (an operator's, or any mesh leaf acting as a client). */
  purpose?: 'mesh' | 'client';
}): VerifiedChain {
  const now = opts.now ?? new Date();
  const [leaf, ...presented] = parseCertificates(opts.leafPem);
  if (!leaf) throw chainInvalid('No leaf certificate was given.');
  const extra = typeof opts.intermediatesPem === 'string' ? [opts.intermediatesPem] : (opts.intermediatesPem ?? []);
  const intermediates = [...presented, ...extra.flatMap((pem) => parseCertificates(pem))];
  const roots = opts.rootsPem.flatMap((pem) => parseCertificates(pem));
  if (roots.length === 0) throw chainInvalid('No trusted roots were given, so nothing can be verified. Load the mesh trust bundle first.');
  if (leaf.ca) {
    throw chainInvalid(`${describeCertificate(leaf)} is a CA certificate, not a leaf. A peer must present its own leaf certificate (CA:false) first.`);
  }

  const path = [leaf];
  for (;;) {
    const current = path[path.length - 1] as X509Certificate;
    const root = findIssuer(current, roots, now);
    if (root) {
      path.push(root);
      break;
    }
    if (path.length > maxIntermediates) {
      throw chainInvalid(`No trusted root was reached after ${maxIntermediates} intermediates. Present the chain up to one of the mesh roots.`);
    }
    const next = findIssuer(current, intermediates.filter((cert) => !path.includes(cert)), now);
    if (!next) throw chainInvalid(noIssuerReason(current, [...intermediates, ...roots]));
    path.push(next);
  }

  path.forEach((cert, index) => checkValidity(cert, index === 0 ? 'leaf' : index === path.length - 1 ? 'root' : 'intermediate', now));

  for (let index = 1; index < path.length; index++) {
    const issuer = path[index] as X509Certificate;
    const issued = path[index - 1] as X509Certificate;
    if (!issuer.ca) {
      throw chainInvalid(`${describeCertificate(issuer)} signed ${describeCertificate(issued)} but is not a CA (basicConstraints CA:false). Only CAs may issue certificates.`);
    }
    // RFC 5280 §6.1.4 (l)/(m): pathLen bounds the CAs that may sit between this CA and the leaf.
    const pathLen = basicConstraintsOf(issuer)?.pathLen;
    if (pathLen !== undefined && index - 1 > pathLen) {
      throw chainInvalid(
        `${describeCertificate(issuer)} has pathLen ${pathLen} but issued the CA ${describeCertificate(issued)}. ` +
          'An intermediate must not issue another CA: sign workload and gateway certificates with the cluster intermediate directly.',
      );
    }
  }

  const identity = leafIdentity(leaf, opts.purpose ?? 'mesh');
  const anchor = path[path.length - 1] as X509Certificate;
  // A root vouches only for the one trust domain its URI SAN names; a root that names none (or
  // several) vouches for no SPIFFE identity, else any root in the mesh bundle could mint any
  // domain's identities.
  const anchorDomain = rootTrustDomainOf(altNamesOf(anchor).uris);
  for (const cert of [leaf, ...path.slice(1, -1)]) {
    for (const id of spiffeIdsOf(cert)) {
      const domain = trustDomainOf(id);
      if (anchorDomain === undefined) {
        throw chainInvalid(
          `${describeCertificate(cert)} claims ${id} but chains to the root ${describeCertificate(anchor)}, which names no single trust domain (it needs exactly one URI SAN, spiffe://<trust-domain>). ` +
            'Such a root vouches for no SPIFFE identity; re-issue the root with `isthmus ca init`.',
        );
      }
      if (domain !== anchorDomain) {
        throw chainInvalid(
          `${describeCertificate(cert)} claims ${id} but chains to the root of trust domain "${anchorDomain}". ` +
            "A trust domain's root vouches only for its own identities; this certificate was mis-issued or forged.",
        );
      }
    }
  }

  const notAfter = new Date(Math.min(...path.map((cert) => notAfterOf(cert).getTime())));
  return { identity, notAfter, issuerChain: path.slice(1) };
}

/**
 * SPIFFE X509-SVID §2, §3.1, §5.2: a leaf that carries a SPIFFE ID carries exactly one URI SAN,
 * its ID names a workload (not the bare trust domain), and its key cannot sign certificates.
 */
function leafIdentity(leaf: X509Certificate, purpose: 'mesh' | 'client'): string | undefined {
  const usage = keyUsageOf(leaf);
  if (usage?.has(keyUsageBits.keyCertSign) || usage?.has(keyUsageBits.cRLSign)) {
    throw chainInvalid(`${describeCertificate(leaf)} is a leaf whose key usage allows signing certificates or CRLs. Re-issue it as a plain leaf.`);
  }
  // A mesh leaf serves and calls (mutual TLS both ways); an EKU that leaves either out, or names
  // other purposes only (code signing, e-mail), is a certificate made for something else.
  const purposes = extKeyUsageOf(leaf);
  const needed = purpose === 'mesh' ? meshKeyPurposes : meshKeyPurposes.slice(1);
  const missing = purposes === undefined ? [] : needed.filter((p) => !purposes.includes(p));
  if (missing.length > 0) {
    throw chainInvalid(
      `${describeCertificate(leaf)} has an extended key usage (${purposes?.join(', ')}) without ${missing.map((p) => (p.endsWith('.1') ? 'serverAuth' : 'clientAuth')).join(' and ')}; ` +
        (purpose === 'mesh' ? 'a mesh certificate is used for TLS in both directions. Re-issue it from the cluster CA.' : 'a client certificate needs clientAuth. Re-issue it from the cluster CA or with `isthmus operator issue`.'),
    );
  }
  const { uris } = altNamesOf(leaf);
  const [id] = uris.filter((uri) => uri.startsWith('spiffe://'));
  if (id === undefined) return undefined;
  if (uris.length > 1) {
    throw chainInvalid(
      `${describeCertificate(leaf)} carries ${uris.length} URI SANs (${uris.join(', ')}); ` +
        'an X509-SVID carries exactly one, so its identity is unambiguous. Re-issue it with a single SPIFFE ID.',
    );
  }
  let parsed: SpiffeId;
  try {
    parsed = parseSpiffeId(id);
  } catch (cause) {
    throw new IsthmusError('ISTHMUS_ERR_TRUST_CHAIN_INVALID', `The leaf's SPIFFE ID is malformed: ${(cause as Error).message}`, { cause });
  }
  if (parsed.path === '') {
    throw chainInvalid(`The leaf's SPIFFE ID ${id} names the trust domain itself; a leaf must name a workload. Re-issue it with a workload ID.`);
  }
  return id;
}

export interface CertificateInfo {
  subject: string;
  issuer: string;
  notBefore: Date;
  notAfter: Date;
  isCa: boolean;
  identity?: string;
  fingerprint256: string;
  serialNumber: string;
}

/** Facts about the first certificate in `pem`, for `isthmus check` and logs. */
export function certificateInfo(pem: string): CertificateInfo {
  const [cert] = parseCertificates(pem) as [X509Certificate];
  const ids = spiffeIdsOf(cert);
  const info: CertificateInfo = {
    subject: cert.subject,
    issuer: cert.issuer,
    notBefore: notBeforeOf(cert),
    notAfter: notAfterOf(cert),
    isCa: cert.ca,
    fingerprint256: cert.fingerprint256,
    serialNumber: cert.serialNumber,
  };
  if (ids.length === 1) info.identity = ids[0];
  return info;
}

/** Throws ISTHMUS_ERR_TRUST_CA_MISSING unless `keyPem` is the private key of `certPem`. */
export function verifyKeyMatchesCert(certPem: string, keyPem: string, labels: { cert: string; key: string } = { cert: 'the certificate', key: 'the private key' }): void {
  const [cert] = parseCertificates(certPem) as [X509Certificate];
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch (cause) {
    throw new IsthmusError('ISTHMUS_ERR_TRUST_CA_MISSING', `${labels.key} is not a readable PEM private key (${(cause as Error).message}). Restore it from where the CA was created.`, { cause });
  }
  if (!cert.checkPrivateKey(key)) {
    throw new IsthmusError(
      'ISTHMUS_ERR_TRUST_CA_MISSING',
      `${labels.key} does not belong to ${labels.cert} (${describeCertificate(cert)}). Use the key that was written together with this certificate.`,
    );
  }
}
