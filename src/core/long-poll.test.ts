import { expect, test } from 'vitest';
import { CatalogSnapshotSchema, GatewayRoutesSchema, LocalEndpointsSchema } from '../model/records.js';
import { snapshotProblem } from './long-poll.js';

// What a sidecar or gateway refuses from the federation API, and the reason it logs.
test.each([
  ['catalog', CatalogSnapshotSchema, null, '/: expected object'],
  ['catalog', CatalogSnapshotSchema, [], '/: expected object'],
  ['catalog', CatalogSnapshotSchema, { clusters: [], services: [], invalidKeys: [] }, '/revision: expected required property'],
  ['catalog', CatalogSnapshotSchema, { revision: '7', clusters: [], services: [], invalidKeys: [] }, '/revision: expected integer'],
  ['catalog', CatalogSnapshotSchema, { revision: 7, clusters: {}, services: [], invalidKeys: [] }, '/clusters: expected array'],
  ['catalog', CatalogSnapshotSchema, { revision: 7, clusters: [], services: [{ namespace: 'demo', name: 'x', clusters: [{ cluster: 'e', region: 'us', zones: [{ zone: 'a', healthy: -1, total: 1 }], gateways: [], identities: [], ports: [] }] }], invalidKeys: [] },
    '/services/0/clusters/0/zones/0/healthy: expected integer to be greater or equal to 0'],
  ['catalog', CatalogSnapshotSchema, { revision: 7, clusters: [], services: [], invalidKeys: [] }, undefined],
  ['endpoints', LocalEndpointsSchema, { version: null, cluster: 'east', services: [] }, '/version: expected integer'],
  ['endpoints', LocalEndpointsSchema, { version: 1, cluster: 'east', services: [{ namespace: 'demo', name: 'client' }] }, '/services/0/endpoints: expected required property'],
  ['endpoints', LocalEndpointsSchema, { version: 1, cluster: 'east', services: [{ namespace: 'demo', name: 'client', endpoints: [{ address: 'a:1', zone: 'a', healthy: true, labels: { v: 2 } }] }] }, '/services/0/endpoints/0/labels/v: expected string'],
  ['endpoints', LocalEndpointsSchema, { version: 1, cluster: 'east', services: [{ namespace: 'demo', name: 'client', endpoints: [] }] }, undefined],
  ['routes', GatewayRoutesSchema, { version: 1, cluster: 'east', services: [{ namespace: 'demo', name: 'c', identities: [], endpoints: [{ address: 'a', zone: 'a', healthy: 'yes' }] }] }, '/services/0/endpoints/0/healthy: expected boolean'],
  ['routes', GatewayRoutesSchema, { version: 1, cluster: 'east', services: [{ namespace: 'demo', name: 'c', endpoints: [] }] }, '/services/0/identities: expected required property'],
  // A newer federation may add fields; an older reader takes the snapshot anyway.
  ['routes', GatewayRoutesSchema, { version: 1, cluster: 'east', services: [], addedLater: true }, undefined],
])('%s %j → %s', (_kind, schema, value, problem) => {
  expect(snapshotProblem(schema, value)).toBe(problem);
});
