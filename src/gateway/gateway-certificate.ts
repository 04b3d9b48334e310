import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { IsthmusError, describeError } from '../core/errors.js';
import { request } from '../core/undici.js';
import { H1Agent } from '../sidecar/h1-agent.js';
import { createCsr, issueCertificate } from '../trust/ca.js';
import { readClusterCa } from '../trust/ca-files.js';
import { clusterRoleId } from '../trust/spiffe.js';
import { certificateInfo } from '../trust/verify.js';
import type { GatewayConfig } from './config.js';

/** What the gateway presents to its federation: its leaf, the issuer chain, the key, and the roots it trusts. */
export interface GatewayCertificate { certPem: string; chainPem: string[]; keyPem: string; rootPem: string; notAfter: Date }

export const selfIssuedTtlSeconds = 24 * 3600;

/**
 * The gateway's certificate, one of two ways. With `tokenFile` (Kubernetes: the gateway pod's
 * projected ServiceAccount token), it is bought by CSR from the federation like a workload's,
 * and renewed with the certificate before it; the gateway then needs only the root certificate,
 * never the cluster CA's key. Without, it is made from the CA directory (a laptop, where the
 * operator's CA files are at hand).
 */
export async function gatewayCertificate(config: GatewayConfig, current: GatewayCertificate | undefined): Promise<GatewayCertificate> {
  if (config.tokenFile === undefined) {
    const ca = readClusterCa(config.caDir);
    const leaf = issueCertificate({ identity: clusterRoleId(config.trustDomain, config.cluster, 'gateway'), issuer: ca.ca, ttlSeconds: selfIssuedTtlSeconds });
    return { certPem: leaf.certPem, chainPem: [ca.ca.certPem], keyPem: leaf.keyPem, rootPem: ca.rootCert, notAfter: certificateInfo(leaf.certPem).notAfter };
  }
  const rootPem = gatewayRoot(config);
  const renewWith = current && current.notAfter.getTime() > Date.now() ? current : undefined;
  const token = renewWith ? undefined : readToken(config.tokenFile);
  const { csrPem, keyPem } = createCsr();
  // A connection of its own, so the federation sees the certificate being renewed, or none.
  const agent = new H1Agent({ connect: { ca: rootPem, ...(renewWith ? { cert: [renewWith.certPem, ...renewWith.chainPem].join('\n'), key: renewWith.keyPem } : {}) } });
  try {
    const res = await request(`${config.federationUrl}/v1/certificates`, {
      method: 'POST', dispatcher: agent,
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify({ csr: csrPem }),
    });
    const body = await res.body.json().catch(() => undefined) as { identity?: unknown; certificate?: unknown; chain?: unknown; error?: { code?: string; message?: string } } | undefined;
    if (res.statusCode !== 200 || typeof body?.certificate !== 'string' || !Array.isArray(body.chain)) {
      throw new IsthmusError(body?.error?.code === 'ISTHMUS_ERR_TRUST_IDENTITY_DENIED' ? 'ISTHMUS_ERR_TRUST_IDENTITY_DENIED' : 'ISTHMUS_ERR_TRUST_TOKEN_INVALID',
        `the federation at ${config.federationUrl} refused the gateway's certificate request (${res.statusCode}: ${body?.error?.message ?? 'no reason given'}); ` +
          'the token in tokenFile must be a projected token of the ServiceAccount that kubernetes.gatewayServiceAccount names, with the audience kubernetes.tokenAudience');
    }
    const expected = clusterRoleId(config.trustDomain, config.cluster, 'gateway');
    if (body.identity !== expected) {
      throw new IsthmusError('ISTHMUS_ERR_TRUST_IDENTITY_DENIED', `the federation issued ${String(body.identity)} for the gateway's token, not ${expected}: set kubernetes.gatewayServiceAccount in cluster.yaml to the gateway pod's ServiceAccount`);
    }
    return { certPem: body.certificate, chainPem: body.chain as string[], keyPem, rootPem, notAfter: certificateInfo(body.certificate).notAfter };
  } catch (err) {
    if (err instanceof IsthmusError) throw err;
    throw new IsthmusError('ISTHMUS_ERR_API_UNREACHABLE', `the federation at ${config.federationUrl} did not answer the gateway's certificate request (${describeError(err)})`, { cause: err });
  } finally {
    await agent.destroy();
  }
}

/** The root the gateway trusts the federation by: root-cert.pem of the CA directory, the only file it needs there. */
export function gatewayRoot(config: GatewayConfig): string {
  const path = join(config.caDir, 'root-cert.pem');
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new IsthmusError('ISTHMUS_ERR_TRUST_CA_MISSING', `${path} could not be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); mount the cluster's root-cert.pem there (certificates.caDir)`, { cause: err });
  }
}

function readToken(path: string): string {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch (err) {
    throw new IsthmusError('ISTHMUS_ERR_CONFIG_UNREADABLE', `the gateway's tokenFile ${path} could not be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); mount the projected ServiceAccount token there`, { cause: err });
  }
}
