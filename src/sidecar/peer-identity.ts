import type { DetailedPeerCertificate, PeerCertificate } from 'node:tls';
import { IsthmusError } from '../core/errors.js';
import { trustDomainOf } from '../trust/spiffe.js';

/**
 * The SPIFFE ID of a peer whose chain Node's TLS already verified against the mesh roots, or
 * an error saying why it is not acceptable. Node accepts a chain to ANY mesh root; a root only
 * vouches for its own trust domain, so the ID's trust domain must be the anchoring root's.
 */
export function peerIdentity(cert: PeerCertificate | DetailedPeerCertificate): { identity: string } | { error: string } {
  const ids = uris(cert).filter((u) => u.startsWith('spiffe://'));
  if (ids.length !== 1) return { error: `peer certificate carries ${ids.length} SPIFFE IDs; exactly one is required` };
  const identity = ids[0] as string;
  const root = anchor(cert as DetailedPeerCertificate);
  const rootDomains = root ? uris(root).filter((u) => u.startsWith('spiffe://')).map(trustDomainOf) : [];
  if (rootDomains.length > 0 && !rootDomains.includes(trustDomainOf(identity))) {
    return { error: `${identity} chains to the root of ${rootDomains.join(', ')}, which may not vouch for it` };
  }
  return { identity };
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
  return (cert.subjectaltname ?? '').split(', ').filter((s) => s.startsWith('URI:')).map((s) => s.slice(4));
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
