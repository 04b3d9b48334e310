import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureDirectory } from '../core/user-paths.js';
import { createIntermediateCa, createRootCa, issueCertificate, type CertAndKey } from '../trust/ca.js';
import { workloadId } from '../trust/spiffe.js';
import type { PeerTlsFiles } from './peer-config.js';

export interface PeerCertificates {
  rootCa: string;
  /** The outbound sidecar's client certificate (east's `client` workload). */
  outbound: PeerTlsFiles;
  /** One serving certificate per inbound, by the service name it serves (also its DNS SAN and SNI). */
  inbound: Record<string, PeerTlsFiles>;
}

export interface PeerCertificateRequest {
  trustDomain: string;
  namespace: string;
  /** Cluster of the outbound (its intermediate signs the client certificate). */
  clientCluster: string;
  /** Each inbound: the service it fronts, its cluster, and the name clients verify (SNI). */
  inbounds: { service: string; cluster: string; sniName: string }[];
}

/**
 * The peers' certificates, made by our own CA code the way a mesh issues them: one root, an
 * intermediate per cluster, ECDSA P-256 leaves with a SPIFFE ID (plus the DNS name a peer
 * verifies), each leaf written with its intermediate so the other end can build the chain to
 * the root it trusts. Written 0600 into `dir`, which the bench deletes at the end.
 */
export function writePeerCertificates(dir: string, request: PeerCertificateRequest): PeerCertificates {
  ensureDirectory(dir, 'the bench\'s certificate directory', 0o700);
  const root = createRootCa({ trustDomain: request.trustDomain });
  const intermediates = new Map<string, CertAndKey>();
  const intermediate = (cluster: string) => {
    let ca = intermediates.get(cluster);
    if (!ca) {
      ca = createIntermediateCa({ root, trustDomain: request.trustDomain, cluster });
      intermediates.set(cluster, ca);
    }
    return ca;
  };
  const rootCa = join(dir, 'root-cert.pem');
  writeFileSync(rootCa, root.certPem, { mode: 0o600 });
  const write = (name: string, cluster: string, leaf: CertAndKey): PeerTlsFiles => {
    const certChain = join(dir, `${name}-chain.pem`);
    const key = join(dir, `${name}-key.pem`);
    writeFileSync(certChain, `${leaf.certPem.trimEnd()}\n${intermediate(cluster).certPem.trimEnd()}\n`, { mode: 0o600 });
    writeFileSync(key, leaf.keyPem, { mode: 0o600 });
    return { certChain, key, rootCa };
  };
  const outbound = write('outbound', request.clientCluster, issueCertificate({
    identity: workloadId(request.trustDomain, request.namespace, 'client'), issuer: intermediate(request.clientCluster),
  }));
  const inbound: Record<string, PeerTlsFiles> = {};
  for (const target of request.inbounds) {
    inbound[target.service] = write(`inbound-${target.service}`, target.cluster, issueCertificate({
      identity: workloadId(request.trustDomain, request.namespace, target.service), issuer: intermediate(target.cluster), dnsNames: [target.sniName],
    }));
  }
  return { rootCa, outbound, inbound };
}
