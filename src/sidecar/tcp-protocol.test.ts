import { describe, expect, test } from 'vitest';
import type { CatalogService } from '../model/catalog.js';
import { catalogProtocol, listenerProtocol } from './tcp-protocol.js';

const exported = (...portsPerCluster: { port: number; protocol: string }[][]): { services: CatalogService[] } => ({
  services: [{
    namespace: 'demo', name: 'redis',
    clusters: portsPerCluster.map((ports, i) => ({ cluster: `c${i}`, region: 'r', zones: [], gateways: [], identities: [], ports })),
  }],
});

describe('catalogProtocol: what the exporting clusters declare for a service', () => {
  test.each([
    ['one cluster, tcp', exported([{ port: 6379, protocol: 'tcp' }]), 'tcp'],
    ['two clusters, both tcp', exported([{ port: 6379, protocol: 'tcp' }], [{ port: 7000, protocol: 'tcp' }]), 'tcp'],
    ['one cluster, http', exported([{ port: 8080, protocol: 'http' }]), 'http'],
    ['clusters that disagree: http, the default, wins', exported([{ port: 6379, protocol: 'tcp' }], [{ port: 8080, protocol: 'http' }]), 'http'],
    ['a service with tcp and http ports', exported([{ port: 6379, protocol: 'tcp' }, { port: 8080, protocol: 'http' }]), 'http'],
    ['exported with no ports', exported([]), undefined],
    ['not exported at all', { services: [] }, undefined],
  ] as const)('%s → %s', (_what, catalog, expected) => {
    expect(catalogProtocol(catalog, 'demo', 'redis')).toBe(expected);
  });

  test('no catalog yet: unknown', () => {
    expect(catalogProtocol(undefined, 'demo', 'redis')).toBeUndefined();
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
