import { describe, expect, it } from 'vitest';
import { isIsthmusError } from '../core/errors.js';
import { formatGatewayHealthSni, formatProbeSni, formatServiceSni, parseGatewayHealthSni, parseProbeSni, parseServiceSni } from './sni.js';

describe('formatServiceSni', () => {
  it.each([
    [{ service: 'reviews', namespace: 'shop', cluster: 'west' }, 'reviews.shop.svc.west.isthmus'],
    [{ service: 'Reviews', namespace: 'SHOP', cluster: 'West-1' }, 'reviews.shop.svc.west-1.isthmus'],
    [{ service: 'a', namespace: '0', cluster: 'z9' }, 'a.0.svc.z9.isthmus'],
    [{ service: 'x'.repeat(63), namespace: 'y'.repeat(63), cluster: 'z'.repeat(63) }, `${'x'.repeat(63)}.${'y'.repeat(63)}.svc.${'z'.repeat(63)}.isthmus`],
  ])('formats %o as %s', (target, sni) => {
    expect(formatServiceSni(target)).toBe(sni);
    expect(parseServiceSni(sni)).toEqual({ service: target.service.toLowerCase(), namespace: target.namespace.toLowerCase(), cluster: target.cluster.toLowerCase() });
  });

  it('puts a subset first, as its own label', () => {
    expect(formatServiceSni({ service: 'reviews', namespace: 'shop', cluster: 'west', subset: 'v2' })).toBe('v2.reviews.shop.svc.west.isthmus');
    expect(() => formatServiceSni({ service: 'reviews', namespace: 'shop', cluster: 'west', subset: 'v.2' })).toThrow(expect.toSatisfy((err) => isIsthmusError(err, 'ISTHMUS_ERR_CLUSTER_NAME_INVALID')));
  });

  it.each([
    [{ service: 'reviews', namespace: 'shop', cluster: 'west' }, 'reviews.shop.svc.west.isthmus'],
  ])('formats %o as %s without a subset', (target, sni) => {
    expect(formatServiceSni(target)).toBe(sni);
    expect(parseServiceSni(sni)).toEqual({ service: target.service.toLowerCase(), namespace: target.namespace.toLowerCase(), cluster: target.cluster.toLowerCase() });
  });

  it.each([
    { service: 'reviews.v2', namespace: 'shop', cluster: 'west' },
    { service: 'reviews', namespace: '', cluster: 'west' },
    { service: 'reviews', namespace: 'shop', cluster: '-west' },
    { service: 'rev_iews', namespace: 'shop', cluster: 'west' },
    { service: 'x'.repeat(64), namespace: 'shop', cluster: 'west' },
  ])('refuses %o with ISTHMUS_ERR_CLUSTER_NAME_INVALID', (target) => {
    expect(() => formatServiceSni(target)).toThrow(expect.toSatisfy((err) => isIsthmusError(err, 'ISTHMUS_ERR_CLUSTER_NAME_INVALID')));
  });
});

describe('parseServiceSni', () => {
  it.each([
    ['reviews.shop.svc.west.isthmus', { service: 'reviews', namespace: 'shop', cluster: 'west' }],
    ['svc.svc.svc.svc.isthmus', { service: 'svc', namespace: 'svc', cluster: 'svc' }],
    ['a-1.b-2.svc.c-3.isthmus', { service: 'a-1', namespace: 'b-2', cluster: 'c-3' }],
    ['1.2.svc.3.isthmus', { service: '1', namespace: '2', cluster: '3' }],
    // A ServiceSubset's name first: only that subset's instances.
    ['v2.reviews.shop.svc.west.isthmus', { service: 'reviews', namespace: 'shop', cluster: 'west', subset: 'v2' }],
    ['hello-v2-instances.hello.demo.svc.east.isthmus', { service: 'hello', namespace: 'demo', cluster: 'east', subset: 'hello-v2-instances' }],
  ])('parses %s', (name, expected) => {
    expect(parseServiceSni(name)).toEqual(expected);
  });

  it.each([
    '',
    'isthmus',
    'reviews.shop.svc.west',
    'reviews.shop.svc.west.isthmus.',
    '.reviews.shop.svc.west.isthmus',
    'reviews.shop.svc.west.isthmus.evil.com',
    'V2.reviews.shop.svc.west.isthmus',
    'v_2.reviews.shop.svc.west.isthmus',
    'a.v2.reviews.shop.svc.west.isthmus',
    'v2.reviews.shop.svc.west.isthmus.x',
    'reviews.shop.svc.cluster.local',
    'reviews.shop.pod.west.isthmus',
    'reviews..svc.west.isthmus',
    'reviews.shop.svc..isthmus',
    'Reviews.shop.svc.west.isthmus',
    'reviews.shop.SVC.west.isthmus',
    'reviews.shop.svc.west.ISTHMUS',
    '-reviews.shop.svc.west.isthmus',
    'reviews.shop-.svc.west.isthmus',
    'rev_iews.shop.svc.west.isthmus',
    'reviews.shop.svc.we st.isthmus',
    `${'x'.repeat(64)}.shop.svc.west.isthmus`,
    'reviews.shop.svc.west.isthmus\n',
  ])('refuses %j', (name) => {
    expect(parseServiceSni(name)).toBeUndefined();
  });
});

describe('probe SNI', () => {
  it('formats and parses health.gateway.<cluster>.isthmus, which is neither a probe nor a service', () => {
    expect(formatGatewayHealthSni('West')).toBe('health.gateway.west.isthmus');
    expect(parseGatewayHealthSni('health.gateway.west.isthmus')).toBe('west');
    expect(parseProbeSni('health.gateway.west.isthmus')).toBeUndefined();
    expect(parseGatewayHealthSni('probe.gateway.west.isthmus')).toBeUndefined();
    expect(parseServiceSni('health.gateway.west.isthmus')).toBeUndefined();
    expect(parseGatewayHealthSni('health.gateway.-x.isthmus')).toBeUndefined();
  });

  it('formats and parses probe.gateway.<cluster>.isthmus', () => {
    expect(formatProbeSni('West')).toBe('probe.gateway.west.isthmus');
    expect(parseProbeSni('probe.gateway.west.isthmus')).toBe('west');
  });

  it.each(['probe.gateway.west', 'probe.gateway.-x.isthmus', 'probe.gw.west.isthmus', 'ledger.demo.svc.west.isthmus', 'a.probe.gateway.west.isthmus'])('does not take %s for a probe', (sni) => {
    expect(parseProbeSni(sni)).toBeUndefined();
  });

  it('is never a service SNI', () => {
    expect(parseServiceSni('probe.gateway.west.isthmus')).toBeUndefined();
  });
});
