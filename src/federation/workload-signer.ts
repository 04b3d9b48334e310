import { X509Certificate } from 'node:crypto';
import { IsthmusError } from '../core/errors.js';
import { signWorkloadCsr, type CertAndKey } from '../trust/ca.js';
import { parseSpiffeId } from '../trust/spiffe.js';
import { verifyToken, type TokenRecord } from '../trust/tokens.js';
import { verifyChain } from '../trust/verify.js';

export interface Caller {
  /** `Authorization: Bearer <token>` from `isthmus register` (local platform bootstrap). */
  bearerToken?: string | undefined;
  /** A client certificate the caller presented on the TLS connection, leaf first (renewal). */
  peerChainPem?: string[] | undefined;
}

export interface SignedWorkload {
  identity: string;
  certificate: string;
  /** Issuer chain, intermediate first, for the workload to present after its leaf. */
  chain: string[];
  /** Every root the mesh trusts (all trust domains), to verify peers with. */
  trustBundle: string[];
  notAfter: string;
}

/**
 * Signs workload certificates for this cluster. The identity always comes from how the caller
 * authenticated (a bootstrap token issued for one identity, or a still-valid certificate of
 * ours), never from the CSR, as Istio's CA does: a CSR is only a public key with a signature.
 */
export class WorkloadSigner {
  constructor(
    private readonly opts: {
      issuer: CertAndKey;
      issuerChain: string[];
      trustDomain: string;
      ttlSeconds: number;
      tokens: () => TokenRecord[];
      trustBundle: () => string[];
    },
  ) {}

  authenticate(caller: Caller, now = new Date()): string {
    if (caller.bearerToken !== undefined) return verifyToken(caller.bearerToken, this.opts.tokens(), now);
    const [leaf, ...intermediates] = caller.peerChainPem ?? [];
    if (leaf === undefined) {
      throw new IsthmusError('ISTHMUS_ERR_TRUST_TOKEN_INVALID', 'no credentials: send "Authorization: Bearer <token>" from `isthmus register`, or renew over TLS with your current certificate');
    }
    const { identity } = verifyChain({ leafPem: leaf, intermediatesPem: intermediates, rootsPem: this.opts.trustBundle(), now });
    if (identity === undefined) {
      throw new IsthmusError('ISTHMUS_ERR_TRUST_IDENTITY_DENIED', 'the client certificate carries no SPIFFE ID; only workload certificates can be renewed');
    }
    const id = parseSpiffeId(identity);
    if (id.trustDomain !== this.opts.trustDomain || id.namespace === undefined || id.serviceAccount === undefined) {
      throw new IsthmusError('ISTHMUS_ERR_TRUST_IDENTITY_DENIED', `${identity} is not a workload of trust domain ${this.opts.trustDomain}; ask the federation service of that workload's own cluster`);
    }
    return identity;
  }

  sign(csrPem: string, caller: Caller, now = new Date()): SignedWorkload {
    const identity = this.authenticate(caller, now);
    const { certPem } = signWorkloadCsr({ csrPem, identity, issuer: this.opts.issuer, ttlSeconds: this.opts.ttlSeconds, now });
    const notAfter = new Date(new X509Certificate(certPem).validTo);
    return { identity, certificate: certPem, chain: [...this.opts.issuerChain], trustBundle: this.opts.trustBundle(), notAfter: notAfter.toISOString() };
  }
}
