import type { DetailedPeerCertificate, PeerCertificate } from 'node:tls';
import { IsthmusError } from '../core/errors.js';
import { parseSpiffeId, trustDomainOf } from '../trust/spiffe.js';
import { altNamesFromText, rootTrustDomainOf } from '../trust/x509-facts.js';

/**
 * The SPIFFE ID of a peer whose chain Node's TLS already verified against the mesh roots, or
 * an error saying why it is not acceptable. Node accepts a chain to ANY mesh root; a root only
 * vouches for its own trust domain, so the ID's trust domain must be the anchoring root's.
 */
export function peerIdentity(cert: PeerCertificate | DetailedPeerCertificate): { identity: string; cluster?: string } | { error: string } {
  const all = uris(cert);
  const ids = all.filter((u) => u.startsWith('spiffe://'));
  if (ids.length !== 1 || all.length !== 1) return { error: `peer certificate carries ${ids.length} SPIFFE IDs among ${all.length} URI SANs; exactly one URI SAN, a SPIFFE ID, is required` };
  const identity = ids[0] as string;
  const domain = trustDomainOf(identity);
  if (domain === undefined) return { error: `peer certificate names ${JSON.stringify(identity)}, which is not a valid SPIFFE ID` };
  // A resumed TLS session carries the peer's leaf but not its chain: OpenSSL verified that chain
  // in the full handshake the session came from, and the root rule below was applied then by
  // whichever side checked. (Bundles refuse roots without a single trust-domain SAN besides, so no
  // such root can anchor the original chain: src/trust/bundle.ts.)
  if ((cert as DetailedPeerCertificate).issuerCertificate === undefined) return { identity };
  const root = anchor(cert as DetailedPeerCertificate);
  if (!root) return { error: `${identity}: its chain does not end at a self-signed root within 8 certificates` };
  // A root vouches only for the trust domain its one URI SAN names, and one that names none
  // vouches for nobody: otherwise any root in the bundle could mint any domain's identities.
  const rootDomain = rootTrustDomainOf(uris(root));
  if (rootDomain === undefined) return { error: `${identity} chains to a root that names no single trust domain (it needs exactly one URI SAN, spiffe://<trust-domain>), which may vouch for no identity` };
  if (rootDomain !== domain) return { error: `${identity} chains to the root of ${rootDomain}, which may not vouch for it` };
  const cluster = issuingCluster(cert as DetailedPeerCertificate, domain);
  return cluster === undefined ? { identity } : { identity, cluster };
}

/**
 * The cluster whose CA signed the leaf: the issuer's `spiffe://<td>/cluster/<c>/ca` ID, in the
 * leaf's own trust domain (authorization rules may name it: docs/authorization.md). The chain
 * was verified, so the issuer is a CA the root signed.
 */
function issuingCluster(leaf: DetailedPeerCertificate, domain: string): string | undefined {
  const issuer = leaf.issuerCertificate;
  if (!issuer || issuer === leaf) return undefined;
  const ids = uris(issuer);
  if (ids.length !== 1) return undefined;
  try {
    const id = parseSpiffeId(ids[0] as string);
    return id.trustDomain === domain && id.role === 'ca' ? id.cluster : undefined;
  } catch {
    return undefined;
  }
}

/** For outbound connections: the destination must be one of the identities the catalog allows. */
export function checkDestination(allowed: readonly string[]) {
  return (_host: string, cert: PeerCertificate): Error | undefined => {
    const peer = peerIdentity(cert);
    if ('error' in peer) return new IsthmusError('ISTHMUS_ERR_TRUST_IDENTITY_DENIED', peer.error);
    if (!allowed.includes(peer.identity)) {
      // A code, so the request path knows nothing was sent (src/sidecar/retry-policy.ts).
      return new IsthmusError('ISTHMUS_ERR_TRUST_IDENTITY_DENIED', `destination answered as ${peer.identity}, but the catalog allows only ${allowed.join(', ') || 'no identity'} for this service`);
    }
    return undefined;
  };
}

function uris(cert: PeerCertificate): string[] {
  return altNamesFromText(cert.subjectaltname ?? '').uris;
}

function anchor(cert: DetailedPeerCertificate): DetailedPeerCertificate | undefined {
  let current: DetailedPeerCertificate | undefined = cert;
  for (let depth = 0; current && depth < 8; depth += 1) {
    const issuer: DetailedPeerCertificate | undefined = current.issuerCertificate;
    if (!issuer || issuer === current || issuer.fingerprint256 === current.fingerprint256) return current;
    current = issuer;
  }
  return undefined;
}
