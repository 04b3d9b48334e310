/**
 * How a client of etcd proves itself and checks etcd: the CA that signed etcd's server
 * certificate, and this client's certificate and key (etcd's --client-cert-auth). Every reader
 * of etcd (the federation service, the CLI, `isthmus dash`, `isthmus dev up`, the tests) loads
 * its files here, so a bad file reads the same everywhere: which file, given how, and what to do.
 */
import { readFileSync } from 'node:fs';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import tls, { connect as tlsConnect } from 'node:tls';
import { resolve } from 'node:path';
import { IsthmusError } from '../core/errors.js';
import { checkCurrent, pemCertificates, readCertAndKey, readTlsFile } from '../core/tls-files.js';

/** Paths of the TLS files of an etcd client; all optional (https:// alone trusts Node's public CAs and NODE_EXTRA_CA_CERTS). */
export interface EtcdTlsFiles {
  ca?: string | undefined;
  cert?: string | undefined;
  key?: string | undefined;
}

/** The files' contents, checked; `undefined` for a plain-text (http://) etcd. */
export interface EtcdTls {
  files: EtcdTlsFiles;
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

const roles = {
  ca: { what: 'etcd CA certificate', given: '--etcd-ca, ISTHMUS_ETCD_CA or etcd.ca in the cluster config', todo: 'pass the CA that signed etcd\'s server certificate (etcd\'s --trusted-ca-file; `isthmus ca init-etcd` writes it as ca.pem)' },
  cert: { what: 'etcd client certificate', given: '--etcd-cert, ISTHMUS_ETCD_CERT or etcd.cert in the cluster config', todo: 'pass a client certificate signed by etcd\'s CA (`isthmus ca issue-etcd-client <name>` writes client-<name>.pem)' },
  key: { what: 'etcd client key', given: '--etcd-key, ISTHMUS_ETCD_KEY or etcd.key in the cluster config', todo: 'pass the key written together with the client certificate (client-<name>-key.pem)' },
} as const;

function fileInvalid(role: keyof typeof roles, path: string, problem: string, cause?: unknown): IsthmusError {
  const { what, given, todo } = roles[role];
  return new IsthmusError('ISTHMUS_ERR_ETCD_TLS_FILE_INVALID', `The ${what} ${path} (${given}) ${problem}; ${todo}.`, { ...(cause === undefined ? {} : { cause }), details: { file: path, role } });
}

/** Every endpoint of one etcd speaks the same: all plain text or all TLS. */
function schemeOf(endpoints: readonly string[]): 'http' | 'https' {
  const schemes = new Set(endpoints.map((e) => (/^https:\/\//i.test(e) ? 'https' : 'http')));
  if (schemes.size > 1) {
    throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `etcd endpoints ${endpoints.join(', ')} mix http:// and https://; the members of one etcd all serve clients the same way: use https:// for all of them when etcd has TLS on.`);
  }
  return schemes.has('https') ? 'https' : 'http';
}

/**
 * Reads and checks the TLS files for `endpoints`. Paths are resolved against `baseDir` (the
 * cluster config's directory) or the working directory. A certificate needs its key and the
 * other way round; TLS files with http:// endpoints are refused rather than silently unused.
 */
export function loadEtcdTls(endpoints: readonly string[], files: EtcdTlsFiles | undefined, opts: { baseDir?: string; now?: Date } = {}): EtcdTls | undefined {
  const given = { ca: files?.ca || undefined, cert: files?.cert || undefined, key: files?.key || undefined };
  const scheme = schemeOf(endpoints);
  const any = given.ca !== undefined || given.cert !== undefined || given.key !== undefined;
  if (scheme === 'http') {
    if (!any) return undefined;
    throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `etcd TLS files were given (--etcd-ca/--etcd-cert/--etcd-key) but the etcd endpoint ${endpoints[0] ?? ''} is http://, which never uses them: write it as https://.`);
  }
  if ((given.cert === undefined) !== (given.key === undefined)) {
    const [has, lacks] = given.cert === undefined ? (['key', 'cert'] as const) : (['cert', 'key'] as const);
    throw new IsthmusError('ISTHMUS_ERR_ETCD_TLS_FILE_INVALID', `An etcd client ${has === 'cert' ? 'certificate' : 'key'} was given without its ${lacks === 'cert' ? 'certificate' : 'key'}: pass both ${roles[lacks].given.split(',')[0]} and ${roles[has].given.split(',')[0]}.`, { details: { role: lacks } });
  }
  const now = opts.now ?? new Date();
  const path = (p: string) => resolve(opts.baseDir ?? '.', p);
  const resolved: EtcdTlsFiles = {
    ...(given.ca ? { ca: path(given.ca) } : {}),
    ...(given.cert ? { cert: path(given.cert) } : {}),
    ...(given.key ? { key: path(given.key) } : {}),
  };
  const tls: EtcdTls = { files: resolved };
  if (resolved.ca) {
    tls.ca = readTlsFile('ca', resolved.ca, fileInvalid);
    const cas = pemCertificates('ca', resolved.ca, tls.ca, fileInvalid);
    if (!cas.some((c) => c.ca)) throw fileInvalid('ca', resolved.ca, 'holds no CA certificate (basicConstraints CA:TRUE)');
    for (const c of cas) checkCurrent('ca', resolved.ca, c, now, fileInvalid);
  }
  if (resolved.cert && resolved.key) {
    Object.assign(tls, readCertAndKey({ cert: resolved.cert, key: resolved.key }, { cert: 'cert', key: 'key', certLabel: 'client certificate' }, now, fileInvalid));
  }
  return tls;
}

/**
 * The roots an etcd without --etcd-ca is checked against: Node's bundled public CAs and the
 * file NODE_EXTRA_CA_CERTS names, as Node's own HTTPS client has them. Given explicitly to gRPC
 * and to etcdHttpGet alike, because gRPC's own default leaves NODE_EXTRA_CA_CERTS out, and a
 * diagnosis must judge with the roots the connection used.
 */
function defaultRoots(): Buffer {
  const extra = process.env.NODE_EXTRA_CA_CERTS;
  let extraPem = '';
  try {
    if (extra) extraPem = readFileSync(extra, 'utf8');
  } catch {
    // Node itself only warns about an unreadable NODE_EXTRA_CA_CERTS; so do we, by ignoring it.
  }
  // Read where needed: `rootCertificates` is a lazy getter that builds 140 strings.
  return Buffer.from([...tls.rootCertificates, extraPem].join('\n'));
}

/**
 * gRPC names the server in TLS's SNI even when it is an IP address, and Node 20 warns about that
 * (DEP0123) on the process's stderr, in the middle of a CLI command's output. The name is only
 * SNI: the certificate is still checked against the IP address dialled. Only that warning is
 * dropped, and only once the process makes gRPC credentials for etcd (below).
 */
function silenceIpServernameWarning(): void {
  const emit = process.emitWarning;
  if ((emit as { isthmusFiltered?: boolean }).isthmusFiltered) return;
  const filtered = function (this: unknown, warning: string | Error, ...rest: unknown[]) {
    const code = typeof rest[0] === 'object' && rest[0] !== null ? (rest[0] as { code?: string }).code : rest[1];
    if (code === 'DEP0123') return;
    return (emit as (...args: unknown[]) => void).call(process, warning, ...rest);
  };
  process.emitWarning = Object.assign(filtered, { isthmusFiltered: true }) as typeof process.emitWarning;
}

/** etcd3's `credentials` option: gRPC's createSsl arguments. */
export function grpcCredentials(tls: EtcdTls): { rootCertificate: Buffer; privateKey?: Buffer; certChain?: Buffer } {
  silenceIpServernameWarning();
  return {
    rootCertificate: tls.ca ?? defaultRoots(),
    ...(tls.key ? { privateKey: tls.key } : {}),
    ...(tls.cert ? { certChain: tls.cert } : {}),
  };
}

export interface EtcdHttpAnswer { status: number; headers: IncomingHttpHeaders; body: string }

/**
 * A GET of etcd's HTTP side (`/health`, `/version`), which listens on the same client URL as
 * gRPC and asks the same TLS of its clients.
 */
export async function etcdHttpGet(endpoint: string, path: string, tls: EtcdTls | undefined, timeoutMs: number): Promise<EtcdHttpAnswer> {
  const url = new URL(path, `${endpoint.replace(/\/+$/, '')}/`);
  return await new Promise((resolvePromise, reject) => {
    const options = { agent: false as const, timeout: timeoutMs, ...(tls ? { ca: tls.ca ?? defaultRoots(), cert: tls.cert, key: tls.key } : {}) };
    const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(url, options, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => { if (body.length < 4096) body += chunk; });
      res.on('end', () => resolvePromise({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error(`no answer from ${url.origin} within ${timeoutMs} ms`), { code: 'ETIMEDOUT' })));
    req.on('error', reject);
    req.end();
  });
}

const untrustedServer = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'UNABLE_TO_GET_ISSUER_CERT', 'CERT_SIGNATURE_FAILURE', 'CERT_UNTRUSTED',
]);

/**
 * Why a TLS conversation with etcd at `endpoint` fails, in words that say what to do; undefined
 * when TLS is fine (or the failure is not TLS's: refused connection, timeout). gRPC reports all
 * of these as "UNAVAILABLE", so this asks etcd's HTTP side, whose socket errors are precise.
 */
export async function diagnoseEtcdTls(endpoint: string, tls: EtcdTls | undefined, timeoutMs = 2_000): Promise<string | undefined> {
  const plainToTls = `etcd at ${endpoint} speaks TLS, but the address is http://: write it as https:// and pass etcd's CA and a client certificate (--etcd-ca, --etcd-cert, --etcd-key)`;
  let answer: EtcdHttpAnswer;
  try {
    answer = await etcdHttpGet(endpoint, '/health', tls, timeoutMs);
  } catch (err) {
    if (!tls) return (await speaksTls(endpoint, timeoutMs)) ? plainToTls : undefined;
    return describeTlsFailure(endpoint, tls, err as NodeJS.ErrnoException);
  }
  // Go's TLS server answers a plain-text request with 400 "Client sent an HTTP request to an HTTPS server".
  if (!tls && answer.status === 400 && /HTTPS server/i.test(answer.body)) return plainToTls;
  return undefined;
}

/** Whether something at `endpoint` completes a TLS handshake (certificates unchecked: only the protocol is asked). */
async function speaksTls(endpoint: string, timeoutMs: number): Promise<boolean> {
  const { hostname, port } = new URL(endpoint);
  return await new Promise((resolvePromise) => {
    const socket = tlsConnect({ host: hostname.replace(/^\[|\]$/g, ''), port: Number(port || 2379), rejectUnauthorized: false, timeout: timeoutMs });
    const done = (answer: boolean) => { socket.destroy(); resolvePromise(answer); };
    socket.once('secureConnect', () => done(true));
    // A server that asks for a client certificate alerts after the handshake or during it: still TLS.
    socket.once('error', (err: NodeJS.ErrnoException) => done(/^ERR_SSL_.*ALERT/.test(err.code ?? '')));
    socket.once('timeout', () => done(false));
  });
}

function describeTlsFailure(endpoint: string, tls: EtcdTls, err: NodeJS.ErrnoException): string | undefined {
  const code = err.code ?? '';
  const message = err.message ?? '';
  const { files } = tls;
  if (untrustedServer.has(code)) {
    return `etcd at ${endpoint} presented a server certificate that ${files.ca ? `the etcd CA ${files.ca} did not sign` : 'no public CA (nor NODE_EXTRA_CA_CERTS) signed, and no --etcd-ca was given'} (${code}): pass the CA that signed etcd's --cert-file with --etcd-ca`;
  }
  if (code === 'CERT_HAS_EXPIRED') return `etcd at ${endpoint} presented an expired server certificate: renew etcd's --cert-file`;
  if (code === 'CERT_NOT_YET_VALID') return `etcd at ${endpoint} presented a server certificate that is not valid yet: check this machine's clock and etcd's`;
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return `etcd at ${endpoint} presented a server certificate that does not name ${new URL(endpoint).hostname} (${message}): dial etcd by a name its certificate holds, or issue its certificate for this one (isthmus ca init-etcd --host)`;
  }
  if (/WRONG_VERSION_NUMBER|wrong version number|packet length too long/i.test(`${code} ${message}`)) {
    return `etcd at ${endpoint} answers in plain text, not TLS: write the address as http://, or turn TLS on in etcd (--cert-file, --key-file)`;
  }
  if (/CERTIFICATE_REQUIRED|certificate required|HANDSHAKE_FAILURE/i.test(`${code} ${message}`) || (!files.cert && /BAD_CERTIFICATE/i.test(code))) {
    return `etcd at ${endpoint} requires a client certificate and none was given: pass one signed by etcd's CA with --etcd-cert and --etcd-key (or ISTHMUS_ETCD_CERT and ISTHMUS_ETCD_KEY, or etcd.cert and etcd.key in the cluster config)`;
  }
  if (/ALERT_BAD_CERTIFICATE|ALERT_UNKNOWN_CA|ALERT_CERTIFICATE_UNKNOWN|bad certificate|unknown ca/i.test(`${code} ${message}`)) {
    return `etcd at ${endpoint} refused the client certificate ${files.cert ?? ''} (${code || message}): it was not signed by the CA etcd trusts (its --trusted-ca-file), or has expired; issue one from that CA (isthmus ca issue-etcd-client)`;
  }
  if (/^ERR_SSL_|^ERR_TLS_|EPROTO/.test(code)) return `the TLS handshake with etcd at ${endpoint} failed (${code}: ${message})`;
  return undefined;
}
