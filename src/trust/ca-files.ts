/**
 * CA files on disk, named as in Istio's plug-in CA so operators recognise them:
 *   root CA directory (`isthmus ca init`):  root-cert.pem, root-key.pem
 *   cluster CA directory (`isthmus join`):  ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem
 *
 * Keys are created with mode 0600 in the same system call that creates the file (O_EXCL), so
 * there is no moment when a key sits on disk readable by others, and an existing CA is never
 * overwritten, except a cluster's by `isthmus ca rotate-intermediate` (replaceClusterCa). Reads check that the files belong together, because the most common CA outage
 * is a key copied from one directory and a certificate from another.
 */
import { chmodSync, closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { X509Certificate } from 'node:crypto';
import { IsthmusError } from '../core/errors.js';
import { ensureDirectory, pathError } from '../core/user-paths.js';
import type { CertAndKey } from './ca.js';
import { parseSpiffeId, trustDomainOf, type SpiffeId } from './spiffe.js';
import { isSignedBy, parseCertificates, verifyKeyMatchesCert } from './verify.js';
import { spiffeIdsOf } from './x509-facts.js';

const rootHint = (dir: string) => `Run \`isthmus ca init --trust-domain <td> --out ${dir}\` to create a root CA there, or point at the directory it wrote.`;
const clusterHint = (dir: string) =>
  `Run \`isthmus join <cluster> --ca <root CA dir> --out ${dir} ...\` to create the cluster CA, or copy all four files from the directory it wrote.`;

export interface FileSpec {
  name: string;
  content: string;
  mode: number;
}

function missing(message: string, cause?: unknown): IsthmusError {
  return new IsthmusError('ISTHMUS_ERR_TRUST_CA_MISSING', message, cause === undefined ? {} : { cause });
}

/** Writes all of `files` into `dir` or none of them; refuses when any already exists. */
export function writeExclusive(dir: string, files: FileSpec[]): void {
  ensureDirectory(dir, 'the CA directory', 0o700);
  const present = files.filter((file) => existsSync(join(dir, file.name))).map((file) => file.name);
  const refuse = (names: string[]) =>
    new IsthmusError(
      'ISTHMUS_ERR_TRUST_CA_EXISTS',
      `${dir} already holds ${names.join(', ')}; refusing to overwrite a CA. Choose another --out directory, or remove those files if you really mean to replace that CA.`,
    );
  if (present.length > 0) throw refuse(present);
  const created: string[] = [];
  try {
    for (const file of files) {
      const path = join(dir, file.name);
      const fd = openSync(path, 'wx', file.mode);
      created.push(path);
      try {
        writeSync(fd, file.content);
        // A CA key that exists only in the page cache is lost with the machine; sync before we report success.
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    }
  } catch (err) {
    // Leave nothing half-written: a lone key would block the next attempt and trust no one.
    for (const path of created) rmSync(path, { force: true });
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw refuse([(err as NodeJS.ErrnoException).path ?? 'a CA file']);
    throw pathError(err, (err as NodeJS.ErrnoException).path ?? dir, 'write-file', 'the CA file');
  }
}

function readCaFile(dir: string, name: string, hint: string): string {
  const path = join(dir, name);
  try {
    return readFileSync(path, 'utf8');
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw missing(existsSync(dir) ? `${path} does not exist. ${hint}` : `There is no CA directory ${dir} (looked for ${name}). ${hint}`, cause);
    }
    throw missing(`${path} could not be read (${code ?? (cause as Error).message}). Check its owner and permissions. ${hint}`, cause);
  }
}

function singleCertificate(pem: string, path: string, hint: string): X509Certificate {
  let certs: X509Certificate[];
  try {
    certs = parseCertificates(pem);
  } catch (cause) {
    throw missing(`${path} is not usable: ${(cause as Error).message} ${hint}`, cause);
  }
  if (certs.length !== 1) throw missing(`${path} holds ${certs.length} certificates; it must hold exactly one. ${hint}`);
  return certs[0] as X509Certificate;
}

function checkPair(dir: string, certName: string, keyName: string, certPem: string, keyPem: string, hint: string): void {
  try {
    verifyKeyMatchesCert(certPem, keyPem, { cert: join(dir, certName), key: join(dir, keyName) });
  } catch (cause) {
    throw missing(`${(cause as Error).message} ${hint}`, cause);
  }
}

function checkRootCert(cert: X509Certificate, path: string, hint: string): string {
  if (!cert.ca || !isSignedBy(cert, cert)) throw missing(`${path} is not a self-signed root CA certificate. ${hint}`);
  const trustDomain = spiffeIdsOf(cert).map(trustDomainOf).find((domain) => domain !== undefined);
  if (!trustDomain) throw missing(`${path} has no spiffe://<trust-domain> URI SAN, so Isthmus cannot tell which trust domain it serves. ${hint}`);
  return trustDomain;
}

function clusterCaIdentity(cert: X509Certificate): SpiffeId | undefined {
  const [id] = spiffeIdsOf(cert);
  try {
    return id === undefined ? undefined : parseSpiffeId(id);
  } catch {
    return undefined;
  }
}

export function writeRootCa(dir: string, ca: CertAndKey): void {
  verifyKeyMatchesCert(ca.certPem, ca.keyPem);
  writeExclusive(dir, [
    { name: 'root-key.pem', content: ca.keyPem, mode: 0o600 },
    { name: 'root-cert.pem', content: ca.certPem, mode: 0o644 },
  ]);
}

export function readRootCa(dir: string): CertAndKey & { trustDomain: string } {
  const hint = rootHint(dir);
  const certPem = readCaFile(dir, 'root-cert.pem', hint);
  const keyPem = readCaFile(dir, 'root-key.pem', hint);
  const trustDomain = checkRootCert(singleCertificate(certPem, join(dir, 'root-cert.pem'), hint), join(dir, 'root-cert.pem'), hint);
  checkPair(dir, 'root-cert.pem', 'root-key.pem', certPem, keyPem, hint);
  return { certPem, keyPem, trustDomain };
}

export function writeClusterCa(dir: string, files: ClusterCaFiles): void {
  verifyKeyMatchesCert(files.caCert, files.caKey);
  writeExclusive(dir, [
    { name: 'ca-key.pem', content: files.caKey, mode: 0o600 },
    { name: 'ca-cert.pem', content: files.caCert, mode: 0o644 },
    { name: 'root-cert.pem', content: files.rootCert, mode: 0o644 },
    { name: 'cert-chain.pem', content: files.certChain, mode: 0o644 },
  ]);
}

/** The four files of a cluster's CA directory, as `join` and `ca rotate-intermediate` write them. */
export interface ClusterCaFiles { caCert: string; caKey: string; rootCert: string; certChain: string }

const clusterCaFiles: { name: string; field: keyof ClusterCaFiles; mode: number }[] = [
  // The key first: a reader between two renames sees a key that does not match its certificate and
  // is refused (and reads again), never a certificate whose key it cannot have.
  { name: 'ca-key.pem', field: 'caKey', mode: 0o600 },
  { name: 'ca-cert.pem', field: 'caCert', mode: 0o644 },
  { name: 'cert-chain.pem', field: 'certChain', mode: 0o644 },
  { name: 'root-cert.pem', field: 'rootCert', mode: 0o644 },
];

/**
 * Replaces the CA files of an existing cluster directory in place, each with a synced temporary
 * file renamed over it, so a running federation or gateway reading the directory sees each file
 * whole, old or new. `isthmus ca rotate-intermediate` uses it (join writes new directories only).
 */
export function replaceClusterCa(dir: string, files: ClusterCaFiles): void {
  verifyKeyMatchesCert(files.caCert, files.caKey);
  for (const { name, field, mode } of clusterCaFiles) {
    const path = join(dir, name);
    const temp = `${path}.${process.pid}.new`;
    const fd = openSync(temp, 'w', mode);
    try {
      writeSync(fd, files[field]);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    chmodSync(temp, mode);
    renameSync(temp, path);
  }
}

export function readClusterCa(dir: string): { ca: CertAndKey; rootCert: string; certChain: string; trustDomain: string; cluster: string } {
  const hint = clusterHint(dir);
  const path = (name: string) => join(dir, name);
  const certPem = readCaFile(dir, 'ca-cert.pem', hint);
  const keyPem = readCaFile(dir, 'ca-key.pem', hint);
  const rootCert = readCaFile(dir, 'root-cert.pem', hint);
  const certChain = readCaFile(dir, 'cert-chain.pem', hint);

  const intermediate = singleCertificate(certPem, path('ca-cert.pem'), hint);
  const root = singleCertificate(rootCert, path('root-cert.pem'), hint);
  const rootDomain = checkRootCert(root, path('root-cert.pem'), hint);
  if (!intermediate.ca) throw missing(`${path('ca-cert.pem')} is not a CA certificate. ${hint}`);
  checkPair(dir, 'ca-cert.pem', 'ca-key.pem', certPem, keyPem, hint);
  if (!isSignedBy(intermediate, root)) {
    throw missing(`${path('ca-cert.pem')} was not signed by ${path('root-cert.pem')}: the files come from different CAs. ${hint}`);
  }
  let chain: X509Certificate[];
  try {
    chain = parseCertificates(certChain);
  } catch (cause) {
    throw missing(`${path('cert-chain.pem')} is not usable: ${(cause as Error).message} ${hint}`, cause);
  }
  if (chain[0]?.fingerprint256 !== intermediate.fingerprint256 || chain[chain.length - 1]?.fingerprint256 !== root.fingerprint256) {
    throw missing(`${path('cert-chain.pem')} must hold ca-cert.pem first and root-cert.pem last. ${hint}`);
  }

  const parsed = clusterCaIdentity(intermediate);
  if (!parsed || parsed.cluster === undefined || parsed.role !== 'ca') {
    throw missing(`${path('ca-cert.pem')} does not carry a spiffe://<td>/cluster/<cluster>/ca identity, so it is not an Isthmus cluster CA. ${hint}`);
  }
  if (parsed.trustDomain !== rootDomain) {
    throw missing(`${path('ca-cert.pem')} is for trust domain "${parsed.trustDomain}" but ${path('root-cert.pem')} is the root of "${rootDomain}". ${hint}`);
  }
  return { ca: { certPem, keyPem }, rootCert, certChain, trustDomain: parsed.trustDomain, cluster: parsed.cluster };
}
