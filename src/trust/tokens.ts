/**
 * Bootstrap tokens for the `local` platform: `isthmus register` issues one, the workload
 * presents it once to get its first certificate, and renews with that certificate afterwards.
 * Once it has bought a certificate it is spent (the federation records it in etcd), so a token
 * copied from a config file or a log later buys nothing.
 * Only a SHA-256 of each token is stored, so the registry file is useless to whoever reads it.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { IsthmusError } from '../core/errors.js';
import { parseSpiffeId } from './spiffe.js';

export interface TokenRecord {
  /** SHA-256 of the whole token string, lower-case hex. */
  hash: string;
  identity: string;
  /** ISO 8601. */
  expiresAt: string;
}

/**
 * How long `isthmus register`'s token is accepted unless `--token-ttl` says otherwise. A token
 * only has to live from `register` until the sidecar first starts, which a deploy does within
 * minutes; 15 minutes leaves room for a slow image pull or rollout, while a token copied from a
 * log, a shell history or a config file later buys nothing (it is single-use besides).
 */
export const defaultTokenTtl = '15m';

const prefix = 'isth_';
// 32 random bytes are 43 base64url characters without padding. The prefix lets secret scanners
// and people recognise a leaked token; the fixed shape lets us refuse junk before hashing.
const tokenShape = /^isth_[A-Za-z0-9_-]{43}$/;
const hashShape = /^[0-9a-f]{64}$/;

function tokenInvalid(message: string): IsthmusError {
  return new IsthmusError('ISTHMUS_ERR_TRUST_TOKEN_INVALID', message);
}

function hashToken(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

export function issueToken(opts: { identity: string; ttlSeconds: number; now?: Date }): { token: string; record: TokenRecord } {
  parseSpiffeId(opts.identity);
  if (!Number.isFinite(opts.ttlSeconds) || opts.ttlSeconds <= 0) {
    throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `A token lifetime must be a positive number of seconds, got ${String(opts.ttlSeconds)}.`);
  }
  const now = opts.now ?? new Date();
  const token = prefix + randomBytes(32).toString('base64url');
  return {
    token,
    record: {
      hash: hashToken(token).toString('hex'),
      identity: opts.identity,
      expiresAt: new Date(now.getTime() + opts.ttlSeconds * 1000).toISOString(),
    },
  };
}

/**
 * Returns the identity a token was issued for. Every record is compared, in constant time, so
 * the time taken says nothing about which stored hash came close.
 */
export function verifyToken(token: string, records: TokenRecord[], now: Date = new Date()): string {
  return acceptToken(token, records, now).identity;
}

/** verifyToken's check, returning the record the token matched (its hash names it in the used-token keys). */
export function acceptToken(token: string, records: TokenRecord[], now: Date = new Date()): TokenRecord {
  if (typeof token !== 'string' || !tokenShape.test(token)) {
    throw tokenInvalid('The bootstrap token is malformed: expected "isth_" followed by 43 base64url characters. Copy the whole token `isthmus register` printed.');
  }
  const presented = hashToken(token);
  let match: TokenRecord | undefined;
  for (const record of records) {
    if (typeof record.hash !== 'string' || !hashShape.test(record.hash)) continue;
    if (timingSafeEqual(presented, Buffer.from(record.hash, 'hex')) && match === undefined) match = record;
  }
  if (!match) {
    throw tokenInvalid('The bootstrap token is not known to this cluster: it was never issued here, or was removed. Issue a new one with `isthmus register`.');
  }
  const expiresAt = Date.parse(match.expiresAt);
  if (Number.isNaN(expiresAt) || now.getTime() >= expiresAt) {
    throw tokenInvalid(
      `The bootstrap token for ${match.identity} expired at ${match.expiresAt}. Issue a new one with \`isthmus register\` ` +
        '(tokens are for the first certificate only; renewals use the certificate).',
    );
  }
  return match;
}
