import { describe, expect, test } from 'vitest';
import type { CatalogService } from '../model/catalog.js';
import { connectTcpAlpn, listenerProtocol, serviceProtocol } from './tcp-protocol.js';

const exported = (...portsPerCluster: { port: number; protocol: string }[][]): { services: CatalogService[] } => ({
  services: [{
    namespace: 'demo', name: 'redis',
    clusters: portsPerCluster.map((ports, i) => ({ cluster: `c${i}`, region: 'r', zones: [], gateways: [], identities: [], ports })),
  }],
});

describe('serviceProtocol: what the exporting clusters declare for a service', () => {
  test.each([
    ['one cluster, tcp', exported([{ port: 6379, protocol: 'tcp' }]), 'tcp'],
    ['two clusters, both tcp', exported([{ port: 6379, protocol: 'tcp' }], [{ port: 7000, protocol: 'tcp' }]), 'tcp'],
    ['one cluster, http', exported([{ port: 8080, protocol: 'http' }]), 'http'],
    ['clusters that disagree: http, the default, wins', exported([{ port: 6379, protocol: 'tcp' }], [{ port: 8080, protocol: 'http' }]), 'http'],
    ['a service with tcp and http ports', exported([{ port: 6379, protocol: 'tcp' }, { port: 8080, protocol: 'http' }]), 'http'],
    ['exported with no ports', exported([]), undefined],
    ['not exported at all', { services: [] }, undefined],
  ] as const)('%s → %s', (_what, catalog, expected) => {
    expect(serviceProtocol(catalog.services[0])).toBe(expected);
  });

  test('no catalog entry: unknown', () => {
    expect(serviceProtocol(undefined)).toBeUndefined();
  });
});

describe('listenerProtocol: the listener\'s own setting, else the catalog, else http', () => {
  test.each([
    ['tcp', undefined, 'tcp'],
    ['tcp', 'http', 'tcp'],
    ['http', 'tcp', 'http'],
    [undefined, 'tcp', 'tcp'],
    [undefined, 'http', 'http'],
    [undefined, undefined, 'http'],
  ] as const)('configured %s, catalog %s → %s', (configured, fromCatalog, expected) => {
    expect(listenerProtocol(configured, fromCatalog)).toBe(expected);
  });
});

describe('connectTcpAlpn: whether a CONNECT to <service>.<ns>.mesh:<port> is a TCP stream, and the ALPN it offers', () => {
  test.each([
    ['a tcp service, any port: the whole service decides', exported([{ port: 6379, protocol: 'tcp' }]), 443, ['isthmus-tcp']],
    ['a tcp service, its published port: that port first', exported([{ port: 6379, protocol: 'tcp' }]), 6379, ['isthmus-tcp/6379', 'isthmus-tcp']],
    ['no port in the authority', exported([{ port: 6379, protocol: 'tcp' }]), undefined, ['isthmus-tcp']],
    ['an http service: an HTTP CONNECT tunnel as before', exported([{ port: 8080, protocol: 'http' }]), 8080, undefined],
    ['a service with tcp and http ports, its tcp port', exported([{ port: 6379, protocol: 'tcp' }, { port: 8080, protocol: 'http' }]), 6379, ['isthmus-tcp/6379', 'isthmus-tcp']],
    ['a service with tcp and http ports, its http port', exported([{ port: 6379, protocol: 'tcp' }, { port: 8080, protocol: 'http' }]), 8080, undefined],
    ['a service with tcp and http ports, another port: http wins', exported([{ port: 6379, protocol: 'tcp' }, { port: 8080, protocol: 'http' }]), 1, undefined],
  ] as const)('%s', (_what, catalog, port, expected) => {
    expect(connectTcpAlpn(catalog.services[0], port)).toEqual(expected);
  });

  test('a service the catalog does not have: not TCP', () => {
    expect(connectTcpAlpn(undefined, 6379)).toBeUndefined();
  });
});
