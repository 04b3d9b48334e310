import { X509Certificate } from 'node:crypto';
import { IsthmusError } from '../core/errors.js';
import { signWorkloadCsr, type CertAndKey } from '../trust/ca.js';
import { clusterRoleId, parseSpiffeId, workloadId } from '../trust/spiffe.js';
import { acceptToken, type TokenRecord } from '../trust/tokens.js';
import { verifyChain } from '../trust/verify.js';

export interface Caller {
  /**
   * `Authorization: Bearer <token>`: a bootstrap token from `isthmus register` (local platform),
   * or a pod's projected ServiceAccount token (Kubernetes platform).
   */
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
 * authenticated (a bootstrap token issued for one identity, a ServiceAccount token the platform
 * reviewed, or a still-valid certificate of ours), never from the CSR or anything else in the
 * request, as Istio's CA does: a CSR is only a public key with a signature.
 */
export class WorkloadSigner {
  private issuer: CertAndKey;
  private issuerChain: string[];

  constructor(
    private readonly opts: {
      issuer: CertAndKey;
      issuerChain: string[];
      trustDomain: string;
      /** This cluster: the only cluster whose gateway identity it signs. */
      cluster: string;
      ttlSeconds: number;
      tokens: () => TokenRecord[];
      trustBundle: () => string[];
      /**
       * Marks a token spent; false when it already was. Single use: a token bought one
       * certificate, and every later one is bought with the certificate before it.
       */
      spendToken?: (token: TokenRecord, now: Date) => Promise<boolean>;
      /**
       * The platform's check of a bearer token (Kubernetes TokenReview), which then replaces
       * bootstrap tokens: the SPIFFE ID is made from the namespace and ServiceAccount it returns.
       */
      reviewToken?: ((token: string) => Promise<{ namespace: string; serviceAccount: string }>) | undefined;
      /** The reviewed account (`<ns>/<name>`) whose token buys this cluster's gateway identity instead of a workload one. */
      gatewayServiceAccount?: string | undefined;
      /**
       * Told of every leaf signed, with the serial of the certificate a renewal replaces: the
       * federation's record of which certificates are still held (issued-ledger.ts).
       */
      onSigned?: ((leaf: { serial: string; notAfter: Date }, replaces: string | undefined) => void) | undefined;
    },
  ) {
    this.issuer = opts.issuer;
    this.issuerChain = [...opts.issuerChain];
  }

  /** A new intermediate (`isthmus ca rotate-intermediate`): every certificate from now on is signed with it. */
  setIssuer(issuer: CertAndKey, issuerChain: string[]): void {
    this.issuer = issuer;
    this.issuerChain = [...issuerChain];
  }

  /** Who the caller is: the token's identity (and the token, to spend once the certificate is made), or its certificate's. */
  async authenticate(caller: Caller, now = new Date()): Promise<{ identity: string; token?: TokenRecord }> {
    if (caller.bearerToken !== undefined && this.opts.reviewToken) {
      const { namespace, serviceAccount } = await this.opts.reviewToken(caller.bearerToken);
      if (`${namespace}/${serviceAccount}` === this.opts.gatewayServiceAccount) return { identity: clusterRoleId(this.opts.trustDomain, this.opts.cluster, 'gateway') };
      return { identity: workloadId(this.opts.trustDomain, namespace, serviceAccount) };
    }
    if (caller.bearerToken !== undefined) {
      const token = acceptToken(caller.bearerToken, this.opts.tokens(), now);
      return { identity: token.identity, token };
    }
    const [leaf, ...intermediates] = caller.peerChainPem ?? [];
    if (leaf === undefined) {
      throw new IsthmusError('ISTHMUS_ERR_TRUST_TOKEN_INVALID', 'no credentials: send "Authorization: Bearer <token>" from `isthmus register`, or renew over TLS with your current certificate');
    }
    const { identity } = verifyChain({ leafPem: leaf, intermediatesPem: intermediates, rootsPem: this.opts.trustBundle(), now });
    if (identity === undefined) {
      throw new IsthmusError('ISTHMUS_ERR_TRUST_IDENTITY_DENIED', 'the client certificate carries no SPIFFE ID; only workload certificates can be renewed');
    }
    const id = parseSpiffeId(identity);
    // A gateway renews too, but only as this cluster's gateway: another cluster's is not ours to sign.
    if (id.trustDomain === this.opts.trustDomain && id.cluster === this.opts.cluster && id.role === 'gateway') return { identity };
    if (id.trustDomain !== this.opts.trustDomain || id.namespace === undefined || id.serviceAccount === undefined) {
      throw new IsthmusError('ISTHMUS_ERR_TRUST_IDENTITY_DENIED', `${identity} is not a workload of trust domain ${this.opts.trustDomain}; ask the federation service of that workload's own cluster`);
    }
    return { identity };
  }

  async sign(csrPem: string, caller: Caller, now = new Date()): Promise<SignedWorkload> {
    const { identity, token } = await this.authenticate(caller, now);
    // Signed before the token is spent, so a malformed CSR does not use the token up.
    const issuer = this.issuer;
    const issuerChain = this.issuerChain;
    const { certPem } = signWorkloadCsr({ csrPem, identity, issuer, ttlSeconds: this.opts.ttlSeconds, now });
    const signed = new X509Certificate(certPem);
    const notAfter = new Date(signed.validTo);
    // Told before anything else is awaited, while the issuer it names is still the one in use. A
    // certificate whose token turns out spent is counted too, and forgotten when it expires.
    const renewed = token === undefined && caller.bearerToken === undefined && caller.peerChainPem?.[0] ? new X509Certificate(caller.peerChainPem[0]).serialNumber : undefined;
    this.opts.onSigned?.({ serial: signed.serialNumber, notAfter }, renewed);
    if (token && this.opts.spendToken && !(await this.opts.spendToken(token, now))) {
      throw new IsthmusError(
        'ISTHMUS_ERR_TRUST_TOKEN_INVALID',
        `The bootstrap token for ${identity} was already used to get a certificate; tokens are single-use. ` +
          'A workload renews with its saved certificate; if that is lost, issue a new token with `isthmus register`.',
      );
    }
    return { identity, certificate: certPem, chain: [...issuerChain], trustBundle: this.opts.trustBundle(), notAfter: notAfter.toISOString() };
  }
}
