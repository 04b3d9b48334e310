import { describe, expect, test } from 'vitest';
import { isIsthmusError } from '../core/errors.js';
import { clusterRoleId, parseSpiffeId, trustDomainOf, validateTrustDomain, workloadId, type ClusterRole } from './spiffe.js';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return isIsthmusError(err) ? err.code : `not an IsthmusError: ${String(err)}`;
  }
  return undefined;
}

describe('validateTrustDomain', () => {
  test.each(['example.org', 'prod.example.org', 'a', 'a-1.b-2', 'x'.repeat(63) + '.org', '1.2.3.4'])('accepts %s', (td) => {
    expect(validateTrustDomain(td)).toBe(td);
  });

  test.each([
    ['', 'empty'],
    ['Example.org', 'upper case'],
    ['example.org.', 'trailing dot'],
    ['-example.org', 'label starts with a hyphen'],
    ['example-.org', 'label ends with a hyphen'],
    ['exa_mple.org', 'underscore'],
    ['example..org', 'empty label'],
    ['example.org:443', 'port'],
    ['x'.repeat(64) + '.org', 'label over 63'],
    [`${'a.'.repeat(127)}ab`, 'name over 253'],
    ['spiffe://example.org', 'a whole ID'],
  ])('refuses %j (%s)', (td) => {
    expect(codeOf(() => validateTrustDomain(td))).toBe('ISTHMUS_ERR_TRUST_SPIFFE_INVALID');
  });

  test('the message says what a valid trust domain looks like', () => {
    expect(() => validateTrustDomain('Bad_Domain')).toThrow(/lower-case DNS name/);
  });
});

describe('building IDs', () => {
  test.each([
    ['example.org', 'default', 'web', 'spiffe://example.org/ns/default/sa/web'],
    ['td', 'kube-system', 'coredns', 'spiffe://td/ns/kube-system/sa/coredns'],
    ['td', 'a', 'svc.account', 'spiffe://td/ns/a/sa/svc.account'],
  ])('workloadId(%s, %s, %s)', (td, ns, sa, expected) => {
    expect(workloadId(td, ns, sa)).toBe(expected);
    expect(parseSpiffeId(expected)).toEqual({ trustDomain: td, path: expected.slice(`spiffe://${td}`.length), namespace: ns, serviceAccount: sa });
  });

  test.each([
    ['Example.org', 'ns', 'sa'],
    ['td', 'Default', 'sa'],
    ['td', 'a/b', 'sa'],
    ['td', '', 'sa'],
    ['td', 'ns', ''],
    ['td', 'ns', '..'],
    ['td', 'x'.repeat(64), 'sa'],
  ])('workloadId refuses (%j, %j, %j)', (td, ns, sa) => {
    expect(codeOf(() => workloadId(td, ns, sa))).toBe('ISTHMUS_ERR_TRUST_SPIFFE_INVALID');
  });

  test.each(['gateway', 'federation', 'ca'] as const)('clusterRoleId for role %s round-trips', (role) => {
    const id = clusterRoleId('example.org', 'east-1', role);
    expect(id).toBe(`spiffe://example.org/cluster/east-1/${role}`);
    expect(parseSpiffeId(id)).toMatchObject({ trustDomain: 'example.org', cluster: 'east-1', role });
  });

  test.each([
    ['example.org', 'East', 'gateway'],
    ['example.org', 'east', 'admin'],
    ['example.org', 'a.b', 'ca'],
  ])('clusterRoleId refuses (%j, %j, %j)', (td, cluster, role) => {
    expect(codeOf(() => clusterRoleId(td, cluster, role as ClusterRole))).toBe('ISTHMUS_ERR_TRUST_SPIFFE_INVALID');
  });
});

describe('parseSpiffeId', () => {
  test.each([
    ['spiffe://example.org', { trustDomain: 'example.org', path: '' }],
    ['spiffe://example.org/a/b_c/D.e', { trustDomain: 'example.org', path: '/a/b_c/D.e' }],
    ['spiffe://td/ns/a/sa/b/extra', { trustDomain: 'td', path: '/ns/a/sa/b/extra' }],
    ['spiffe://td/ns/a/xx/b', { trustDomain: 'td', path: '/ns/a/xx/b' }],
    ['spiffe://td/cluster/c/anything', { trustDomain: 'td', path: '/cluster/c/anything', cluster: 'c', role: 'anything' }],
  ])('parses %s', (uri, expected) => {
    expect(parseSpiffeId(uri)).toEqual(expected);
  });

  test.each([
    ['', 'empty'],
    ['https://example.org/ns/a/sa/b', 'other scheme'],
    ['SPIFFE://example.org/a', 'upper-case scheme'],
    ['spiffe:/example.org/a', 'one slash'],
    ['spiffe://', 'no trust domain'],
    ['spiffe:///a', 'empty trust domain'],
    ['spiffe://Example.org/a', 'upper-case trust domain'],
    ['spiffe://user@example.org/a', 'userinfo'],
    ['spiffe://example.org:8443/a', 'port'],
    ['spiffe://example.org/', 'trailing slash'],
    ['spiffe://example.org/a//b', 'empty segment'],
    ['spiffe://example.org/a/./b', 'dot segment'],
    ['spiffe://example.org/a/../b', 'dot-dot segment'],
    ['spiffe://example.org/a%2Fb', 'percent-encoding'],
    ['spiffe://example.org/a?b=c', 'query'],
    ['spiffe://example.org/a#b', 'fragment'],
    ['spiffe://example.org/a b', 'space'],
    [`spiffe://example.org/${'a'.repeat(2048)}`, 'over 2048 characters'],
  ])('refuses %j (%s)', (uri) => {
    expect(codeOf(() => parseSpiffeId(uri))).toBe('ISTHMUS_ERR_TRUST_SPIFFE_INVALID');
  });

  test('trustDomainOf answers undefined instead of throwing', () => {
    expect(trustDomainOf('spiffe://example.org/ns/a/sa/b')).toBe('example.org');
    expect(trustDomainOf('not an id')).toBeUndefined();
  });
});
