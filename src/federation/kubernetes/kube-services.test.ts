import { describe, expect, test } from 'vitest';
import { meshProtocol, summarizePod, summarizeService, type EndpointSummary, type PodSummary, type ServiceSummary, type SliceSummary } from './kube-objects.js';
import { kubeServices } from './kube-services.js';

const ledger: ServiceSummary = { namespace: 'demo', name: 'ledger', type: 'ClusterIP', headless: false, ports: [{ name: 'http', port: 80, protocol: 'http' }], serviceAccount: 'ledger' };

/** An endpoint of pod `pod-<last octet>` (every such pod runs a sidecar whose inbound is 15006), unless `conditions` says otherwise. */
function endpoint(address: string, conditions: Partial<EndpointSummary> = {}): EndpointSummary {
  return { addresses: [address], ready: true, serving: true, terminating: false, pod: `pod-${address.split(/[.:]/).at(-1)}`, ...conditions };
}

function slice(endpoints: EndpointSummary[], ports: SliceSummary['ports'] = [{ name: 'http', port: 8080 }]): SliceSummary {
  return { namespace: 'demo', name: `ledger-${endpoints.length}`, service: 'ledger', ports, endpoints };
}

const nodes = new Map([['node-b', { name: 'node-b', zone: 'b', region: 'us' }]]);
const pods = new Map<string, PodSummary>(['pod-1', 'pod-2'].map((name) => [`demo/${name}`, { namespace: 'demo', name, inboundPort: 15006 }]));
const compute = (slices: SliceSummary[], service = ledger) => kubeServices({ services: [service], slices, nodes, pods, defaultZone: 'a' });
const instances = (slices: SliceSummary[], service = ledger) => compute(slices, service).services[0]?.instances;

describe('Services and EndpointSlices as the federation sees them', () => {
  test.each([
    ['ready endpoints are healthy instances at their sidecar\'s inbound, not the app\'s slice port', [endpoint('10.0.0.1')], [{ address: '10.0.0.1:15006', zone: 'a', ready: true }]],
    ['a not-ready endpoint is listed, not healthy', [endpoint('10.0.0.1', { ready: false, serving: false })], [{ address: '10.0.0.1:15006', zone: 'a', ready: false }]],
    ['a terminating endpoint is left out while another is ready', [endpoint('10.0.0.1'), endpoint('10.0.0.2', { ready: false, serving: true, terminating: true })], [{ address: '10.0.0.1:15006', zone: 'a', ready: true }]],
    ['when all terminate, those still serving carry traffic', [endpoint('10.0.0.1', { ready: false, serving: true, terminating: true }), endpoint('10.0.0.2', { ready: false, serving: false, terminating: true })], [{ address: '10.0.0.1:15006', zone: 'a', ready: true }]],
    ['zone from the endpoint, else from its node', [endpoint('10.0.0.1', { zone: 'c' }), endpoint('10.0.0.2', { nodeName: 'node-b' })], [{ address: '10.0.0.1:15006', zone: 'c', ready: true }, { address: '10.0.0.2:15006', zone: 'b', ready: true }]],
    ['IPv6 addresses are bracketed', [endpoint('fd00::1', { pod: 'pod-1' })], [{ address: '[fd00::1]:15006', zone: 'a', ready: true }]],
    ['an endpoint whose pod runs no sidecar is left out', [endpoint('10.0.0.1'), endpoint('10.0.0.3')], [{ address: '10.0.0.1:15006', zone: 'a', ready: true }]],
    ['an endpoint that is not a pod is left out', [endpoint('10.0.0.1', { pod: undefined })], []],
  ])('%s', (_name, endpoints, expected) => {
    expect(instances([slice(endpoints)])).toEqual(expected);
  });

  test('only slices that carry the Service\'s first port (by name) give instances', () => {
    expect(instances([slice([endpoint('10.0.0.1')], [{ name: 'metrics', port: 9090 }, { name: 'http', port: 8080 }])])).toEqual([{ address: '10.0.0.1:15006', zone: 'a', ready: true }]);
    expect(instances([slice([endpoint('10.0.0.1')], [{ name: 'metrics', port: 9090 }])])).toEqual([]);
  });

  test('endpoints left out are reported with the reason', () => {
    const { skipped } = compute([slice([endpoint('10.0.0.1'), endpoint('10.0.0.3'), endpoint('10.0.0.4', { pod: undefined })])]);
    expect(skipped).toEqual([
      { service: 'demo/ledger', address: '10.0.0.3', reason: 'no-sidecar' },
      { service: 'demo/ledger', address: '10.0.0.4', reason: 'not-a-pod' },
    ]);
  });

  test('a Pod: the sidecar\'s inbound is its container port named isthmus-in, in an init container or a container; other pods are not kept', () => {
    const pod = (spec: unknown) => summarizePod({ metadata: { namespace: 'demo', name: 'ledger-1' }, spec });
    const sidecar = { name: 'isthmus-sidecar', ports: [{ name: 'isthmus-out', containerPort: 15001 }, { name: 'isthmus-in', containerPort: 15106, protocol: 'TCP' }] };
    const app = { name: 'app', ports: [{ name: 'http', containerPort: 8080 }] };
    expect(pod({ initContainers: [sidecar], containers: [app] })).toEqual({ namespace: 'demo', name: 'ledger-1', inboundPort: 15106 });
    expect(pod({ containers: [app, sidecar] })).toEqual({ namespace: 'demo', name: 'ledger-1', inboundPort: 15106 });
    expect(pod({ containers: [app] })).toBeUndefined();
    expect(pod({ containers: [{ name: 'x', ports: [{ name: 'isthmus-in', containerPort: 15006, protocol: 'UDP' }] }] })).toBeUndefined();
  });

  test('ExternalName services are not listed; headless ones are, as Headless', () => {
    const { services } = kubeServices({ services: [{ ...ledger, type: 'ExternalName' }, { ...ledger, name: 'db', headless: true }], slices: [], nodes, pods, defaultZone: 'a' });
    expect(services.map((s) => [s.name, s.serviceType])).toEqual([['db', 'Headless']]);
  });

  test('a Service object: TCP ports only, protocol from appProtocol or the port name, service account from the annotation', () => {
    const summary = summarizeService({
      metadata: { namespace: 'demo', name: 'db', annotations: { 'isthmus.dev/service-account': 'db-sa' } },
      spec: { type: 'ClusterIP', clusterIP: 'None', ports: [{ name: 'tcp-pg', port: 5432, protocol: 'TCP' }, { name: 'dns', port: 53, protocol: 'UDP' }, { name: 'web', port: 80, appProtocol: 'http' }] },
    });
    expect(summary).toEqual({
      namespace: 'demo', name: 'db', type: 'ClusterIP', headless: true, serviceAccount: 'db-sa',
      ports: [{ name: 'tcp-pg', port: 5432, protocol: 'tcp' }, { name: 'web', port: 80, protocol: 'http' }],
    });
  });

  test.each([
    [undefined, undefined, 'http'], ['tcp', undefined, 'tcp'], [undefined, 'tcp-db', 'tcp'], [undefined, 'grpc-api', 'h2c'],
    ['kubernetes.io/h2c', undefined, 'h2c'], ['grpc', 'http-web', 'h2c'], [undefined, 'http2-api', 'h2c'], ['http', 'grpc', 'http'],
    ['kubernetes.io/ws', undefined, 'http'], [undefined, 'redis', 'tcp'],
  ])('appProtocol %s, port name %s: %s', (appProtocol, name, expected) => {
    expect(meshProtocol(appProtocol, name)).toBe(expected);
  });
});
