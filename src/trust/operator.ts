/**
 * The operator credential (docs/trust.md, "Operators"): a person's certificate,
 * `spiffe://<td>/operator/<name>`, clientAuth only, issued by `isthmus operator issue` from the
 * root or a cluster intermediate; and a short-lived token signed with its key that carries the
 * certificate, for places where a client certificate is awkward (a browser, a plain-HTTP admin
 * port). Both are verified against the mesh bundle with Node's crypto and the same chain rules
 * as every mesh certificate (verify.ts), so nothing secret is stored anywhere to check them.
 *
 * Token: `isthop_<payload>.<signature>`, both base64url. The payload is JSON
 * `{"v":1,"chain":[<DER base64>...],"iat":<s>,"exp":<s>}` and the signature is the operator key's
 * SHA-256 signature over the payload's base64url text (as JWS signs its encoded parts).
 */
import { createPrivateKey, sign, verify, X509Certificate } from 'node:crypto';
import { IsthmusError } from '../core/errors.js';
import { parseSpiffeId } from './spiffe.js';
import { parseCertificates, verifyChain } from './verify.js';
import { notAfterOf } from './x509-facts.js';

export interface VerifiedOperator {
  /** spiffe://<td>/operator/<name> */
  identity: string;
  name: string;
  trustDomain: string;
  /** When the credential stops counting: the token's expiry, or the chain's for a certificate. */
  notAfter: Date;
}

const tokenPrefix = 'isthop_';
/** A token outlives no working day: long enough for a dashboard session, short enough that a leaked one soon means nothing. */
export const maxTokenTtlSeconds = 12 * 3600;
// A chain of four certificates is well under this; anything larger is junk or an attack on the parser.
const maxTokenLength = 16 * 1024;
const clockSkewSeconds = 60;

function invalid(message: string, cause?: unknown): IsthmusError {
  return new IsthmusError('ISTHMUS_ERR_AUTH_CREDENTIAL_INVALID', message, cause === undefined ? {} : { cause });
}

/**
 * Checks an operator certificate chain (leaf first) against `rootsPem`: the chain rules of
 * verify.ts (signatures, validity, CA flags, the root of the leaf's own trust domain), clientAuth,
 * and an `/operator/<name>` ID. With `trustDomain`, an operator of another trust domain is refused.
 */
export function verifyOperatorCertificate(opts: { chainPem: string[]; rootsPem: string[]; trustDomain?: string; now?: Date }): VerifiedOperator {
  const [leafPem, ...intermediates] = opts.chainPem;
  if (leafPem === undefined) throw invalid('No operator certificate was presented. Issue one with `isthmus operator issue --name <you> --ca-dir <CA dir>`.');
  let verified;
  try {
    verified = verifyChain({ leafPem, intermediatesPem: intermediates, rootsPem: opts.rootsPem, purpose: 'client', ...(opts.now ? { now: opts.now } : {}) });
  } catch (cause) {
    throw invalid(`The operator certificate does not verify: ${(cause as Error).message}`, cause);
  }
  const id = verified.identity === undefined ? undefined : parseSpiffeId(verified.identity);
  if (id?.operator === undefined || verified.identity === undefined) {
    throw new IsthmusError(
      'ISTHMUS_ERR_AUTH_FORBIDDEN',
      `${verified.identity ?? 'A certificate without a SPIFFE ID'} is not an operator (spiffe://<td>/operator/<name>); a workload or cluster certificate does not administer the mesh. ` +
        'Use the credential `isthmus operator issue` wrote.',
    );
  }
  if (opts.trustDomain !== undefined && id.trustDomain !== opts.trustDomain) {
    throw new IsthmusError('ISTHMUS_ERR_AUTH_FORBIDDEN', `${verified.identity} is an operator of trust domain "${id.trustDomain}"; this component belongs to "${opts.trustDomain}". Issue an operator credential from its CA.`);
  }
  return { identity: verified.identity, name: id.operator, trustDomain: id.trustDomain, notAfter: verified.notAfter };
}

/** A token for `ttlSeconds` (at most maxTokenTtlSeconds, and never past the certificate), signed with the operator's key. */
export function mintOperatorToken(opts: { certPem: string; chainPem?: string[]; keyPem: string; ttlSeconds: number; now?: Date }): { token: string; expiresAt: Date } {
  if (!Number.isFinite(opts.ttlSeconds) || opts.ttlSeconds <= 0 || opts.ttlSeconds > maxTokenTtlSeconds) {
    throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `An operator token lives between 1 s and ${maxTokenTtlSeconds / 3600} h; got ${String(opts.ttlSeconds)} s. Pass a shorter --ttl.`);
  }
  const certs = [opts.certPem, ...(opts.chainPem ?? [])].flatMap((pem) => parseCertificates(pem));
  const leaf = certs[0] as X509Certificate;
  const key = createPrivateKey(opts.keyPem);
  if (!leaf.checkPrivateKey(key)) throw invalid('The operator key does not belong to the operator certificate. Use the two files `isthmus operator issue` wrote together.');
  const now = Math.floor((opts.now ?? new Date()).getTime() / 1000);
  const exp = Math.min(now + Math.floor(opts.ttlSeconds), Math.floor(notAfterOf(leaf).getTime() / 1000));
  if (exp <= now) throw invalid(`The operator certificate expired at ${notAfterOf(leaf).toISOString()}. Issue a new one with \`isthmus operator issue\`.`);
  const payload = Buffer.from(JSON.stringify({ v: 1, chain: certs.map((c) => c.raw.toString('base64')), iat: now, exp })).toString('base64url');
  const signature = sign('sha256', Buffer.from(payload), key).toString('base64url');
  return { token: `${tokenPrefix}${payload}.${signature}`, expiresAt: new Date(exp * 1000) };
}

/** Who an operator token speaks for, after checking its shape, times, certificate chain and signature. */
export function verifyOperatorToken(token: string, opts: { rootsPem: string[]; trustDomain?: string; now?: Date }): VerifiedOperator {
  if (typeof token !== 'string' || !token.startsWith(tokenPrefix) || token.length > maxTokenLength) {
    throw invalid(`An operator token starts with "${tokenPrefix}" and is at most ${maxTokenLength} characters. Make one with \`isthmus operator token\`.`);
  }
  const [payload, signature, extra] = token.slice(tokenPrefix.length).split('.');
  if (!payload || !signature || extra !== undefined || !/^[A-Za-z0-9_-]+$/.test(payload) || !/^[A-Za-z0-9_-]+$/.test(signature)) {
    throw invalid('The operator token is malformed (expected isthop_<payload>.<signature>). Copy the whole token `isthmus operator token` printed.');
  }
  let claims: { v?: unknown; chain?: unknown; iat?: unknown; exp?: unknown };
  try {
    claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as typeof claims;
  } catch (cause) {
    throw invalid('The operator token\'s payload is not JSON. Copy the whole token `isthmus operator token` printed.', cause);
  }
  const { v, chain, iat, exp } = claims ?? {};
  if (v !== 1 || !Array.isArray(chain) || chain.length === 0 || chain.length > 5 || !chain.every((c) => typeof c === 'string')
    || typeof iat !== 'number' || typeof exp !== 'number' || !Number.isInteger(iat) || !Number.isInteger(exp)) {
    throw invalid('The operator token does not carry {v: 1, chain, iat, exp}; it was not made by `isthmus operator token` of this version.');
  }
  const nowDate = opts.now ?? new Date();
  const now = nowDate.getTime() / 1000;
  if (exp - iat > maxTokenTtlSeconds || exp <= iat) throw invalid(`The operator token claims a lifetime of ${exp - iat} s; at most ${maxTokenTtlSeconds} s is accepted.`);
  if (now >= exp) throw invalid(`The operator token expired at ${new Date(exp * 1000).toISOString()}. Make a fresh one with \`isthmus operator token\`.`);
  if (iat > now + clockSkewSeconds) throw invalid(`The operator token was made in the future (${new Date(iat * 1000).toISOString()}); check the clocks of both machines.`);
  let certs: X509Certificate[];
  try {
    certs = (chain as string[]).map((der) => new X509Certificate(Buffer.from(der, 'base64')));
  } catch (cause) {
    throw invalid('The operator token carries a certificate that does not parse.', cause);
  }
  const operator = verifyOperatorCertificate({ chainPem: certs.map((c) => c.toString()), rootsPem: opts.rootsPem, ...(opts.trustDomain ? { trustDomain: opts.trustDomain } : {}), now: nowDate });
  const leaf = certs[0] as X509Certificate;
  if (!verify('sha256', Buffer.from(payload), leaf.publicKey, Buffer.from(signature, 'base64url'))) {
    throw invalid(`The operator token's signature does not verify with the key of ${operator.identity}: it was altered, or made with another key.`);
  }
  return { ...operator, notAfter: new Date(Math.min(exp * 1000, operator.notAfter.getTime())) };
}

/** The cookie the dashboard keeps an operator token in after `/?token=...` (HttpOnly, SameSite=Strict). */
export const operatorCookie = 'isthmus_operator';

/** The operator token a request carries: `Authorization: Bearer isthop_...`, else the dashboard's cookie. */
export function operatorTokenOf(headers: { authorization?: string | undefined; cookie?: string | undefined }): string | undefined {
  const auth = headers.authorization;
  if (auth?.startsWith('Bearer ')) return auth.slice('Bearer '.length).trim();
  for (const part of (headers.cookie ?? '').split(';')) {
    const [name, value] = part.split('=', 2).map((s) => s.trim());
    if (name === operatorCookie && value) return value;
  }
  return undefined;
}

/** The operator behind a request, or ISTHMUS_ERR_AUTH_CREDENTIAL_MISSING (401), _INVALID (401) or _FORBIDDEN (403). */
export function requireOperator(headers: { authorization?: string | undefined; cookie?: string | undefined }, opts: { rootsPem: string[]; trustDomain?: string; what: string; now?: Date }): VerifiedOperator {
  const token = operatorTokenOf(headers);
  if (token === undefined) {
    throw new IsthmusError(
      'ISTHMUS_ERR_AUTH_CREDENTIAL_MISSING',
      `${opts.what} needs an operator credential: send "Authorization: Bearer <token>" with a token from \`isthmus operator token\` ` +
        '(the CLI does this itself when it finds the credential `isthmus operator issue` wrote: --operator-dir or ISTHMUS_OPERATOR_DIR).',
    );
  }
  return verifyOperatorToken(token, opts);
}

/** 127.0.0.0/8 and ::1, also as IPv4-mapped IPv6: a caller on this machine. */
export function isLoopbackAddress(address: string | undefined): boolean {
  if (address === undefined) return false;
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  return v4.startsWith('127.') || address === '::1';
}

/**
 * The check of every plain-HTTP admin and dashboard endpoint that needs an operator: undefined
 * after answering the request's 401/403 (through `refuse`, as `{error: {code, message}}`), else
 * until when the caller counts (Infinity for a loopback caller where `loopbackSuffices`).
 */
export function admitOperator(
  req: { headers: { authorization?: string | undefined; cookie?: string | undefined }; socket: { remoteAddress?: string | undefined } },
  refuse: (status: number, body: unknown) => void,
  opts: { rootsPem: string[]; trustDomain?: string | undefined; what: string; loopbackSuffices?: boolean },
): number | undefined {
  if (opts.loopbackSuffices && isLoopbackAddress(req.socket.remoteAddress)) return Infinity;
  try {
    return requireOperator(req.headers, opts).notAfter.getTime();
  } catch (err) {
    if (!(err instanceof IsthmusError)) throw err;
    refuse(err.status, { error: err.toJSON() });
    return undefined;
  }
}
