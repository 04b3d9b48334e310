import { describe, expect, it } from 'vitest';
import { routeFor, type GatewayRoutes, type RouteDecision } from './routes.js';

const routes: GatewayRoutes = {
  version: 3,
  cluster: 'west',
  services: [
    { namespace: 'demo', name: 'ledger', identities: [], endpoints: [{ address: '127.0.0.1:9001', zone: 'a', healthy: true }, { address: '127.0.0.1:9002', zone: 'b', healthy: false }] },
    { namespace: 'demo', name: 'down', identities: [], endpoints: [{ address: '127.0.0.1:9003', zone: 'a', healthy: false }] },
  ],
};

const refused = (reason: string) => expect.objectContaining({ kind: 'refuse', reason });

describe('routeFor', () => {
  it.each<[string | undefined, RouteDecision | ReturnType<typeof refused>]>([
    ['ledger.demo.svc.west.isthmus', { kind: 'route', service: 'ledger', namespace: 'demo', endpoints: ['127.0.0.1:9001'] }],
    ['probe.gateway.west.isthmus', { kind: 'probe', cluster: 'west' }],
    // Another cluster's probe must not reach our federation: it measures the wrong path.
    ['probe.gateway.east.isthmus', refused('sni-other-cluster')],
    ['ledger.demo.svc.east.isthmus', refused('sni-other-cluster')],
    ['probe.gateway.west.example', refused('sni-not-mesh')],
    ['probe.west.isthmus', refused('sni-not-mesh')],
    ['x.probe.gateway.west.isthmus', refused('sni-not-mesh')],
    ['example.com', refused('sni-not-mesh')],
    [undefined, refused('no-sni')],
    ['hello.demo.svc.west.isthmus', refused('service-not-exported')],
    ['down.demo.svc.west.isthmus', refused('no-healthy-endpoint')],
  ])('%s → %o', (sni, expected) => {
    expect(routeFor(sni, routes)).toEqual(expected);
  });
});
