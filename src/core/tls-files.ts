import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type RequestListener, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { resolve } from 'node:path';
import { httpDateNow } from './utc-text.js';
import { IsthmusError } from './errors.js';
import { pathProblemReason } from './path-problem.js';
import { Type, type Static } from './typebox.js';

/**
 * Reading PEM certificates and keys that a user named, for etcd clients (federation/etcd-tls.ts)
 * and for HTTPS listeners (below): every problem is an error that names the file, where it was
 * given and what to do, raised before anything connects or listens. `invalid` makes that error,
 * so each caller keeps its own code and wording.
 */
export type TlsFileProblem<Role extends string> = (role: Role, path: string, problem: string, cause?: unknown) => IsthmusError;

export function readTlsFile<Role extends string>(role: Role, path: string, invalid: TlsFileProblem<Role>): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw invalid(role, path, `cannot be read: ${pathProblemReason('read-file', (err as NodeJS.ErrnoException).code)}`, err);
  }
}

export function pemCertificates<Role extends string>(role: Role, path: string, pem: Buffer, invalid: TlsFileProblem<Role>): X509Certificate[] {
  const blocks = pem.toString('utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw invalid(role, path, 'holds no PEM certificate');
  try {
    return blocks.map((block) => new X509Certificate(block));
  } catch (err) {
    throw invalid(role, path, `holds a certificate that cannot be parsed (${(err as Error).message})`, err);
  }
}

export function checkCurrent<Role extends string>(role: Role, path: string, cert: X509Certificate, now: Date, invalid: TlsFileProblem<Role>): void {
  if (new Date(cert.validTo) <= now) throw invalid(role, path, `expired at ${new Date(cert.validTo).toISOString()}`);
  if (new Date(cert.validFrom) > now) throw invalid(role, path, `is not valid before ${new Date(cert.validFrom).toISOString()} (is this machine's clock right?)`);
}

/** A certificate file (leaf first, then its chain) and the leaf's key, read and checked against each other. */
export function readCertAndKey<Role extends string>(
  paths: { cert: string; key: string }, roles: { cert: Role; key: Role; certLabel: string }, now: Date, invalid: TlsFileProblem<Role>,
): { cert: Buffer; key: Buffer } {
  const cert = readTlsFile(roles.cert, paths.cert, invalid);
  const key = readTlsFile(roles.key, paths.key, invalid);
  const [leaf] = pemCertificates(roles.cert, paths.cert, cert, invalid) as [X509Certificate, ...X509Certificate[]];
  checkCurrent(roles.cert, paths.cert, leaf, now, invalid);
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch (err) {
    throw invalid(roles.key, paths.key, 'is not a PEM private key', err);
  }
  if (!leaf.checkPrivateKey(privateKey)) throw invalid(roles.key, paths.key, `does not belong to the ${roles.certLabel} ${paths.cert}`);
  return { cert, key };
}

/**
 * `tls: { cert, key }` of an HTTP listener (the dashboard, the admin ports): when set, it serves
 * HTTPS with these files instead of plain HTTP (docs/security.md, "Endpoints").
 */
export const ListenerTlsSchema = Type.Object({
  cert: Type.String({ minLength: 1, description: 'PEM certificate the listener serves (then its chain), naming the address clients dial' }),
  key: Type.String({ minLength: 1, description: 'PEM private key of cert' }),
}, { additionalProperties: false });
export type ListenerTlsFiles = Static<typeof ListenerTlsSchema>;

/** The files' contents, checked, for `https.createServer`. */
export interface ListenerTls { cert: Buffer; key: Buffer }

/**
 * Reads a listener's certificate and key. `given` says where the paths came from ("--tls-cert
 * and --tls-key", "admin.tls in the sidecar config"), for the error; relative paths are resolved
 * against `baseDir` (the config file's directory) or the working directory.
 */
export function loadListenerTls(files: ListenerTlsFiles, given: string, opts: { baseDir?: string; now?: Date } = {}): ListenerTls {
  const invalid: TlsFileProblem<'certificate' | 'key'> = (role, path, problem, cause) => new IsthmusError(
    'ISTHMUS_ERR_LISTENER_TLS_FILE_INVALID',
    `The listener's TLS ${role} ${path} (${given}) ${problem}; pass a PEM ${role === 'certificate' ? 'certificate (then its chain) that names the address clients dial' : 'private key that belongs to the certificate'}.`,
    { ...(cause === undefined ? {} : { cause }), details: { file: path, role } },
  );
  const path = (p: string) => resolve(opts.baseDir ?? '.', p);
  return readCertAndKey({ cert: path(files.cert), key: path(files.key) }, { cert: 'certificate', key: 'key', certLabel: 'certificate' }, opts.now ?? new Date(), invalid);
}

/**
 * An HTTP server for a listener that may have `tls`: plain HTTP without, HTTPS with (no client
 * certificate asked: who may call what is still decided per request, by operator token or
 * loopback). Typed as the HTTP server both are to their handlers and to server-limits.ts.
 */
export function createListenerServer(tls: ListenerTls | undefined, handler: RequestListener): HttpServer {
  // The Date field is ours: node:http writes it with Date#toUTCString, which reads the time-zone
  // tables of Node's ICU data into memory for nothing (core/utc-text.ts).
  const dated: RequestListener = (req, res) => {
    res.sendDate = false;
    res.setHeader('date', httpDateNow());
    handler(req, res);
  };
  return tls === undefined ? createHttpServer(dated) : createHttpsServer({ cert: tls.cert, key: tls.key, minVersion: 'TLSv1.2' }, dated) as unknown as HttpServer;
}
