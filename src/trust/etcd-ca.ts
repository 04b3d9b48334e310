/**
 * etcd's own certificate authority: a CA that signs etcd's server certificate and one client
 * certificate per writer (each cluster's federation, the operator). It is kept apart from the
 * mesh's roots on purpose (docs/security.md, "etcd"): a workload certificate must never open
 * etcd, and an etcd client certificate must never pass as a mesh identity. The client
 * certificate's common name is the etcd user name when etcd's authentication is on.
 *
 * Files of one etcd CA directory (`isthmus ca init-etcd`, `isthmus ca issue-etcd-client`):
 *   ca.pem, ca-key.pem                      the CA (its key only signs more etcd certificates)
 *   server.pem, server-key.pem              etcd's --cert-file and --key-file
 *   client-<name>.pem, client-<name>-key.pem  a client's --etcd-cert and --etcd-key
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, X509Certificate, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join, resolve } from 'node:path';
import { IsthmusError } from '../core/errors.js';
import { buildCertificate, encodeName, issuerFromCertificate, keyIdentifier, type NameAttribute } from './certificate-builder.js';
import { writeExclusive } from './ca-files.js';
import { oids, toDer } from './der.js';
import { verifyKeyMatchesCert } from './verify.js';

/** The three files a TLS client of etcd needs, as paths. */
export interface EtcdClientFiles { ca: string; cert: string; key: string }

export interface EtcdServerFiles {
  /** etcd's --trusted-ca-file: only client certificates signed by it are let in. */
  ca: string;
  /** etcd's --cert-file and --key-file. */
  cert: string;
  key: string;
}

const day = 86_400_000;
// Clients whose clocks run a little behind must not see a brand-new certificate as "not yet valid".
const clockSkewMs = 60_000;
const organization: NameAttribute = { oid: oids.organizationName, value: 'Isthmus etcd' };
const clientName = /^[a-z0-9]([-a-z0-9.]{0,62}[a-z0-9])?$/;

export const etcdServerFiles = (dir: string): EtcdServerFiles => ({ ca: join(dir, 'ca.pem'), cert: join(dir, 'server.pem'), key: join(dir, 'server-key.pem') });
export const etcdClientFiles = (dir: string, name: string): EtcdClientFiles => ({ ca: join(dir, 'ca.pem'), cert: join(dir, `client-${name}.pem`), key: join(dir, `client-${name}-key.pem`) });

/** P-256: small and fast to make (tests make a CA per etcd), and accepted by etcd and gRPC alike. */
function newKey(): { privateKey: KeyObject; publicKey: KeyObject } {
  return generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
}

const pkcs8 = (key: KeyObject) => key.export({ type: 'pkcs8', format: 'pem' }) as string;

function validity(now: Date, days: number, caNotAfter?: Date): { notBefore: Date; notAfter: Date } {
  if (!Number.isFinite(days) || days <= 0) throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `--validity-days must be a positive number, got ${String(days)}.`);
  const notAfter = new Date(Math.min(now.getTime() + days * day, caNotAfter?.getTime() ?? Infinity));
  return { notBefore: new Date(now.getTime() - clockSkewMs), notAfter };
}

function checkClientName(name: string): string {
  if (!clientName.test(name)) {
    throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `"${name}" cannot name an etcd client: use lower-case letters, digits, "-" and "." (it becomes the certificate's common name and the etcd user), e.g. federation-east or operator.`);
  }
  return name;
}

function readEtcdCa(dir: string): { cert: X509Certificate; certPem: string; privateKey: KeyObject } {
  const certPath = join(dir, 'ca.pem');
  const keyPath = join(dir, 'ca-key.pem');
  const hint = `Create an etcd CA there with \`isthmus ca init-etcd --out ${dir}\`, or point at the directory it wrote.`;
  if (!existsSync(certPath) || !existsSync(keyPath)) {
    throw new IsthmusError('ISTHMUS_ERR_TRUST_CA_MISSING', `${dir} holds no etcd CA (ca.pem and ca-key.pem). ${hint}`);
  }
  const certPem = readFileSync(certPath, 'utf8');
  const keyPem = readFileSync(keyPath, 'utf8');
  try {
    verifyKeyMatchesCert(certPem, keyPem, { cert: certPath, key: keyPath });
    const cert = new X509Certificate(certPem);
    if (!cert.ca) throw new Error(`${certPath} is not a CA certificate.`);
    return { cert, certPem, privateKey: createPrivateKey(keyPem) };
  } catch (cause) {
    throw new IsthmusError('ISTHMUS_ERR_TRUST_CA_MISSING', `${(cause as Error).message} ${hint}`, { cause });
  }
}

function issueLeaf(ca: { cert: X509Certificate; privateKey: KeyObject }, commonName: string, hosts: readonly string[], days: number, now: Date): { certPem: string; keyPem: string } {
  const { privateKey, publicKey } = newKey();
  const certPem = buildCertificate({
    profile: 'leaf',
    subject: [organization, { oid: oids.commonName, value: commonName }],
    publicKey,
    issuer: issuerFromCertificate(ca.cert.raw, ca.privateKey, createPublicKey(ca.privateKey)),
    ...validity(now, days, new Date(ca.cert.validTo)),
    uris: [],
    dnsNames: hosts.filter((h) => isIP(h) === 0).map((h) => h.toLowerCase()),
    ipAddresses: hosts.filter((h) => isIP(h) !== 0),
  });
  return { certPem, keyPem: pkcs8(privateKey) };
}

/**
 * Creates an etcd CA and etcd's server certificate in `dir` (refusing to overwrite either). The
 * server certificate names every host clients dial (IP addresses and DNS names), because a
 * client checks the name it dialled against it.
 */
export function initEtcdCa(dir: string, opts: { hosts: readonly string[]; validityDays?: number; caValidityDays?: number; now?: Date }): EtcdServerFiles {
  if (opts.hosts.length === 0) throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', 'etcd\'s server certificate needs at least one --host (the address clients dial, e.g. 127.0.0.1).');
  const now = opts.now ?? new Date();
  const { privateKey, publicKey } = newKey();
  const subject: NameAttribute[] = [organization, { oid: oids.commonName, value: 'Isthmus etcd CA' }];
  const certPem = buildCertificate({
    profile: 'root',
    subject,
    publicKey,
    issuer: { nameDer: toDer(encodeName(subject)), keyId: keyIdentifier(publicKey), privateKey },
    ...validity(now, opts.caValidityDays ?? 3650, undefined),
    uris: [],
  });
  const server = issueLeaf({ cert: new X509Certificate(certPem), privateKey }, 'etcd', opts.hosts, opts.validityDays ?? 365, now);
  const target = resolve(dir);
  writeExclusive(target, [
    { name: 'ca-key.pem', content: pkcs8(privateKey), mode: 0o600 },
    { name: 'ca.pem', content: certPem, mode: 0o644 },
    { name: 'server-key.pem', content: server.keyPem, mode: 0o600 },
    { name: 'server.pem', content: server.certPem, mode: 0o644 },
  ]);
  return etcdServerFiles(target);
}

/** A client certificate with common name `name`, signed by the etcd CA in `dir`; refuses to overwrite one. */
export function issueEtcdClient(dir: string, name: string, opts: { validityDays?: number; now?: Date } = {}): EtcdClientFiles {
  const target = resolve(dir);
  const ca = readEtcdCa(target);
  const client = issueLeaf(ca, checkClientName(name), [], opts.validityDays ?? 365, opts.now ?? new Date());
  const files = etcdClientFiles(target, name);
  writeExclusive(target, [
    { name: `client-${name}-key.pem`, content: client.keyPem, mode: 0o600 },
    { name: `client-${name}.pem`, content: client.certPem, mode: 0o644 },
  ]);
  return files;
}

/**
 * For `isthmus dev up` and the tests: the etcd CA of `dir` with a server certificate for `hosts`
 * and a client certificate for each of `clients`, made where missing and kept where present.
 */
export function ensureEtcdPki(dir: string, hosts: readonly string[], clients: readonly string[]): { server: EtcdServerFiles; clients: Record<string, EtcdClientFiles> } {
  const server = existsSync(join(dir, 'ca.pem')) ? etcdServerFiles(resolve(dir)) : initEtcdCa(dir, { hosts });
  const made: Record<string, EtcdClientFiles> = {};
  for (const name of clients) {
    const files = etcdClientFiles(resolve(dir), name);
    made[name] = existsSync(files.cert) ? files : issueEtcdClient(dir, name);
  }
  return { server, clients: made };
}
