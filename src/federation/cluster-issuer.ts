import { X509Certificate } from 'node:crypto';
import { describeError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { issueCertificate, type CertAndKey } from '../trust/ca.js';
import { readClusterCa } from '../trust/ca-files.js';
import { clusterRoleId } from '../trust/spiffe.js';
import { certificateInfo } from '../trust/verify.js';

/** The cluster's CA as the federation uses it now, and the API's serving certificate made from it. */
export interface IssuerState {
  ca: CertAndKey;
  rootCert: string;
  /** Of the intermediate (ca-cert.pem): what sidecars compare their leaf's issuer with. */
  fingerprint256: string;
  rootFingerprint256: string;
  serving: CertAndKey;
  servingNotAfter: Date;
}

const servingTtlSeconds = 30 * 24 * 3600;
/** A CA directory that does not yet match the intermediate in etcd is read again after this long. */
const retryMs = 2000;

/**
 * The cluster's intermediate CA (certificates.caDir) and the federation API's serving
 * certificate, replaced in place when `isthmus ca rotate-intermediate` writes new files and then
 * the new intermediate to `/trust/intermediates/<c>`: the etcd record is the signal (every
 * federation already watches etcd; on Kubernetes the files arrive through a Secret, later than
 * the record, so a directory that does not match the record yet is read again until it does).
 * The cluster is never withdrawn. Intermediates used before stay accepted until they expire, so
 * the leaves they signed keep their rights here while their holders renew.
 */
export class ClusterIssuer {
  private state: IssuerState;
  private readonly previous: X509Certificate[] = [];
  private lastAttempt: { fingerprint256: string; at: number } | undefined;
  /** The record reconcile last parsed and its fingerprint: the federation tells it every second and after every change of etcd, and it rarely differs (parsing it each time was about 7% of an idle federation's busy time in a CPU profile). */
  private parsed: { pem: string; fingerprint256: string } | undefined;
  private readonly listeners: ((state: IssuerState) => void)[] = [];

  constructor(
    private readonly opts: {
      caDir: string;
      trustDomain: string;
      cluster: string;
      /** Names a client may dial the API at, for the serving certificate. */
      dnsNames: string[];
      ipAddresses: string[];
      logger: Logger;
    },
  ) {
    this.state = this.load(readClusterCa(opts.caDir));
  }

  get current(): IssuerState {
    return this.state;
  }

  /** The intermediates whose leaves count as this cluster's: the current one first, then earlier ones still valid. */
  intermediates(now = Date.now()): string[] {
    const earlier = this.previous.filter((c) => Date.parse(c.validTo) > now).map((c) => c.toString());
    return [this.state.ca.certPem, ...earlier];
  }

  onChange(listener: (state: IssuerState) => void): void {
    this.listeners.push(listener);
  }

  /**
   * `published` is this cluster's intermediate as etcd has it. When it is not the one in use, the
   * CA directory is read again and used if it holds that intermediate. True when it changed.
   */
  reconcile(published: string | undefined, now = Date.now()): boolean {
    if (published === undefined) return false;
    let wanted: string;
    if (this.parsed?.pem === published) wanted = this.parsed.fingerprint256;
    else {
      try {
        wanted = new X509Certificate(published).fingerprint256;
      } catch {
        return false;
      }
      this.parsed = { pem: published, fingerprint256: wanted };
    }
    if (wanted === this.state.fingerprint256) return false;
    if (this.lastAttempt?.fingerprint256 === wanted && now - this.lastAttempt.at < retryMs) return false;
    const first = this.lastAttempt?.fingerprint256 !== wanted;
    this.lastAttempt = { fingerprint256: wanted, at: now };
    let next: IssuerState;
    try {
      const files = readClusterCa(this.opts.caDir);
      if (files.cluster !== this.opts.cluster || files.trustDomain !== this.opts.trustDomain) throw new Error(`it holds the CA of ${files.cluster} in ${files.trustDomain}`);
      if (new X509Certificate(files.ca.certPem).fingerprint256 !== wanted) throw new Error('its ca-cert.pem is not the intermediate etcd has (yet)');
      next = this.load(files);
    } catch (err) {
      if (first) this.opts.logger.warn({ caDir: this.opts.caDir, err: describeError(err) }, 'etcd has a new intermediate for this cluster but the CA directory does not hold it yet; reading it again every 2 s');
      return false;
    }
    this.previous.push(new X509Certificate(this.state.ca.certPem));
    this.state = next;
    this.opts.logger.info({ intermediate: next.fingerprint256, root: next.rootFingerprint256 }, 'new intermediate in use: certificates are signed with it from now on');
    for (const listener of this.listeners) listener(next);
    return true;
  }

  /**
   * Re-issues the API's serving certificate from the CA in use once half its life has passed
   * (it lasts 30 days; a federation that runs longer would otherwise serve an expired one).
   * Listeners get the new state as for a new intermediate. True when it was renewed.
   */
  renewServingIfDue(now = Date.now()): boolean {
    const notBefore = Date.parse(new X509Certificate(this.state.serving.certPem).validFrom);
    if (now < notBefore + (this.state.servingNotAfter.getTime() - notBefore) / 2) return false;
    this.state = { ...this.state, ...this.serving(this.state.ca) };
    this.opts.logger.info({ notAfter: this.state.servingNotAfter.toISOString() }, 'the federation API\'s serving certificate was renewed');
    for (const listener of this.listeners) listener(this.state);
    return true;
  }

  private load(files: ReturnType<typeof readClusterCa>): IssuerState {
    return {
      ca: files.ca, rootCert: files.rootCert,
      fingerprint256: certificateInfo(files.ca.certPem).fingerprint256,
      rootFingerprint256: certificateInfo(files.rootCert).fingerprint256,
      ...this.serving(files.ca),
    };
  }

  /** A new serving certificate for the API, signed by `ca`. */
  private serving(ca: CertAndKey): Pick<IssuerState, 'serving' | 'servingNotAfter'> {
    const serving = issueCertificate({
      identity: clusterRoleId(this.opts.trustDomain, this.opts.cluster, 'federation'), issuer: ca, ttlSeconds: servingTtlSeconds,
      dnsNames: this.opts.dnsNames, ipAddresses: this.opts.ipAddresses,
    });
    return { serving, servingNotAfter: certificateInfo(serving.certPem).notAfter };
  }
}
