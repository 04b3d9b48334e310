import { describe, expect, it } from 'vitest';
import { routeFor, type GatewayRoutes, type RouteDecision } from './routes.js';

const routes: GatewayRoutes = {
  version: 3,
  cluster: 'west',
  services: [
    { namespace: 'demo', name: 'ledger', identities: [], endpoints: [{ address: '127.0.0.1:9001', zone: 'a', healthy: true }, { address: '127.0.0.1:9002', zone: 'b', healthy: false }] },
    { namespace: 'demo', name: 'down', identities: [], endpoints: [{ address: '127.0.0.1:9003', zone: 'a', healthy: false }] },
    {
      namespace: 'demo', name: 'hello-labelled', identities: [],
      endpoints: [
        { address: '127.0.0.1:9011', zone: 'a', healthy: true, labels: { version: 'v1' } },
        { address: '127.0.0.1:9012', zone: 'a', healthy: true, labels: { version: 'v2', track: 'canary' } },
        { address: '127.0.0.1:9013', zone: 'a', healthy: false, labels: { version: 'v2' } },
        { address: '127.0.0.1:9014', zone: 'a', healthy: true, labels: { version: 'v3' } },
        { address: '127.0.0.1:9015', zone: 'a', healthy: false, labels: { version: 'v3' } },
      ],
      subsets: { v1: { version: 'v1' }, v2: { version: 'v2' }, canary: { version: 'v2', track: 'canary' }, v3: { version: 'v3' }, v9: { version: 'v9' } },
    },
  ],
};

const refused = (reason: string) => expect.objectContaining({ kind: 'refuse', reason });

describe('routeFor', () => {
  it.each<[string | undefined, RouteDecision | ReturnType<typeof refused>]>([
    ['ledger.demo.svc.west.isthmus', { kind: 'route', service: 'ledger', namespace: 'demo', endpoints: ['127.0.0.1:9001'] }],
    ['probe.gateway.west.isthmus', { kind: 'probe', cluster: 'west' }],
    // Another cluster's probe must not reach our federation: it measures the wrong path.
    ['probe.gateway.east.isthmus', refused('sni-other-cluster')],
    // A health check the gateway answers itself, for its own cluster's name only.
    ['health.gateway.west.isthmus', { kind: 'health', cluster: 'west' }],
    ['health.gateway.east.isthmus', refused('sni-other-cluster')],
    ['x.health.gateway.west.isthmus', refused('sni-not-mesh')],
    ['ledger.demo.svc.east.isthmus', refused('sni-other-cluster')],
    ['probe.gateway.west.example', refused('sni-not-mesh')],
    ['probe.west.isthmus', refused('sni-not-mesh')],
    ['x.probe.gateway.west.isthmus', refused('sni-not-mesh')],
    ['example.com', refused('sni-not-mesh')],
    [undefined, refused('no-sni')],
    ['hello.demo.svc.west.isthmus', refused('service-not-exported')],
    ['down.demo.svc.west.isthmus', refused('no-healthy-endpoint')],
    // A subset SNI reaches only that ServiceSubset's healthy instances; without one, all of them.
    ['hello-labelled.demo.svc.west.isthmus', { kind: 'route', service: 'hello-labelled', namespace: 'demo', endpoints: ['127.0.0.1:9011', '127.0.0.1:9012', '127.0.0.1:9014'] }],
    ['v1.hello-labelled.demo.svc.west.isthmus', { kind: 'route', service: 'hello-labelled', namespace: 'demo', endpoints: ['127.0.0.1:9011'] }],
    ['v2.hello-labelled.demo.svc.west.isthmus', { kind: 'route', service: 'hello-labelled', namespace: 'demo', endpoints: ['127.0.0.1:9012'] }],
    ['canary.hello-labelled.demo.svc.west.isthmus', { kind: 'route', service: 'hello-labelled', namespace: 'demo', endpoints: ['127.0.0.1:9012'] }],
    ['v3.hello-labelled.demo.svc.west.isthmus', { kind: 'route', service: 'hello-labelled', namespace: 'demo', endpoints: ['127.0.0.1:9014'] }],
    ['v9.hello-labelled.demo.svc.west.isthmus', refused('no-healthy-endpoint')],
    ['v7.hello-labelled.demo.svc.west.isthmus', refused('unknown-subset')],
    ['v1.ledger.demo.svc.west.isthmus', refused('unknown-subset')],
    ['v1.hello.demo.svc.west.isthmus', refused('service-not-exported')],
    ['v1.ledger.demo.svc.east.isthmus', refused('sni-other-cluster')],
  ])('%s → %o', (sni, expected) => {
    expect(routeFor(sni, routes)).toEqual(expected);
  });
});
