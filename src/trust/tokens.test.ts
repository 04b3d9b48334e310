import { createHash } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { issueToken, verifyToken, type TokenRecord } from './tokens.js';
import { failure } from '../../test/helpers/failure.js';

const identity = 'spiffe://example.org/ns/shop/sa/checkout';
const now = new Date('2030-01-01T00:00:00Z');
const later = (seconds: number) => new Date(now.getTime() + seconds * 1000);


describe('issueToken', () => {
  test('makes an isth_ token of 32 random bytes and stores only its SHA-256', () => {
    const { token, record } = issueToken({ identity, ttlSeconds: 600, now });
    expect(token).toMatch(/^isth_[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(token.slice(5), 'base64url')).toHaveLength(32);
    expect(record).toEqual({ hash: createHash('sha256').update(token).digest('hex'), identity, expiresAt: '2030-01-01T00:10:00.000Z' });
    expect(JSON.stringify(record)).not.toContain(token.slice(5));
    expect(issueToken({ identity, ttlSeconds: 600, now }).token).not.toBe(token);
  });

  test.each<[string, Parameters<typeof issueToken>[0], string]>([
    ['an identity that is not a SPIFFE ID', { identity: 'checkout', ttlSeconds: 60 }, 'ISTHMUS_ERR_TRUST_SPIFFE_INVALID'],
    ['a zero lifetime', { identity, ttlSeconds: 0 }, 'ISTHMUS_ERR_CONFIG_INVALID'],
    ['an infinite lifetime', { identity, ttlSeconds: Infinity }, 'ISTHMUS_ERR_CONFIG_INVALID'],
  ])('refuses %s', (_name, opts, code) => {
    expect(failure(() => issueToken(opts)).code).toBe(code);
  });
});

describe('verifyToken', () => {
  const first = issueToken({ identity, ttlSeconds: 600, now });
  const second = issueToken({ identity: 'spiffe://example.org/ns/shop/sa/cart', ttlSeconds: 60, now });
  const records: TokenRecord[] = [first.record, second.record];

  test('returns the identity each token was issued for', () => {
    expect(verifyToken(first.token, records, later(599))).toBe(identity);
    expect(verifyToken(second.token, records, now)).toBe('spiffe://example.org/ns/shop/sa/cart');
  });

  test.each<[string, () => [string, TokenRecord[], Date], RegExp]>([
    ['an expired token', () => [first.token, records, later(601)], /expired at 2030-01-01T00:10:00.000Z.*isthmus register/],
    ['a token at the very instant it expires', () => [second.token, records, later(60)], /expired/],
    ['an unknown token', () => [issueToken({ identity, ttlSeconds: 600, now }).token, records, now], /not known to this cluster/],
    ['a token when no records exist', () => [first.token, [], now], /not known/],
    ['an empty string', () => ['', records, now], /malformed/],
    ['a token without its prefix', () => [first.token.slice(5), records, now], /malformed/],
    ['a truncated token', () => [first.token.slice(0, -1), records, now], /malformed/],
    ['a token with padding', () => [`${first.token}=`, records, now], /malformed/],
    ['a token with whitespace', () => [` ${first.token}`, records, now], /malformed/],
    ['a stored hash instead of the token', () => [first.record.hash, records, now], /malformed/],
    ['a token whose record has an unreadable expiry', () => [first.token, [{ ...first.record, expiresAt: 'soon' }], now], /expired/],
  ])('refuses %s', (_name, args, message) => {
    const result = failure(() => verifyToken(...args()));
    expect(result.code).toBe('ISTHMUS_ERR_TRUST_TOKEN_INVALID');
    expect(result.message).toMatch(message);
  });

  test('skips records with a damaged hash instead of failing on them', () => {
    const damaged: TokenRecord = { hash: 'abc', identity: 'spiffe://example.org/ns/x/sa/y', expiresAt: later(600).toISOString() };
    expect(verifyToken(first.token, [damaged, first.record], now)).toBe(identity);
  });

  test('gives each failure its own message', () => {
    const messages = [
      failure(() => verifyToken('junk', records, now)).message,
      failure(() => verifyToken(issueToken({ identity, ttlSeconds: 1, now }).token, records, now)).message,
      failure(() => verifyToken(first.token, records, later(3600))).message,
    ];
    expect(new Set(messages).size).toBe(3);
  });
});
