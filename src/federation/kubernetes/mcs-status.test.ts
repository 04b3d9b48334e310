import { describe, expect, test } from 'vitest';
import type { CatalogServiceCluster } from '../../model/catalog.js';
import type { ExportSummary, ServiceSummary } from './kube-objects.js';
import { conditionsDiffer, mcsStatus, type McsInput } from './mcs-status.js';

const port80 = [{ name: 'http', port: 80, protocol: 'http' }];

function exporter(cluster: string, ports = port80, serviceType?: 'Headless'): CatalogServiceCluster {
  return { cluster, region: 'us', zones: [], gateways: [], identities: [], ports, ...(serviceType ? { serviceType } : {}) };
}

const service = (ports = port80, headless = false): ServiceSummary => ({ namespace: 'demo', name: 'ledger', type: 'ClusterIP', headless, ports: ports.map((p) => ({ ...p, protocol: p.protocol as 'http' })), serviceAccount: 'ledger' });
const serviceExport: ExportSummary = { namespace: 'demo', name: 'ledger', createdAt: '2026-01-02T00:00:00Z', generation: 1, conditions: [] };

function input(over: Partial<McsInput>): McsInput {
  return {
    cluster: 'east',
    catalog: { services: [] },
    exportedAt: new Map(),
    exports: new Map(),
    services: new Map(),
    hasNamespace: () => true,
    now: '2026-01-03T00:00:00Z',
    ...over,
  };
}

describe('what the MCS API objects of a cluster say (KEP-1645)', () => {
  test('every exported service is imported here, from every exporting cluster, with the oldest export\'s ports', () => {
    const { imports } = mcsStatus(input({
      catalog: { services: [{ namespace: 'demo', name: 'ledger', clusters: [exporter('west', [{ name: 'http', port: 8080, protocol: 'http' }]), exporter('north')] }] },
      exportedAt: new Map([['west/demo/ledger', '2026-01-01T00:00:00Z'], ['north/demo/ledger', '2025-12-31T00:00:00Z']]),
    }));
    expect(imports.get('demo/ledger')).toEqual({ namespace: 'demo', name: 'ledger', type: 'ClusterSetIP', ports: [{ name: 'http', port: 80, protocol: 'TCP', appProtocol: 'http' }], clusters: ['north', 'west'] });
  });

  test.each([
    [undefined, 'exported to the mesh by cluster east'],
    [{ 'no-sidecar': 2 }, 'exported to the mesh by cluster east; 2 endpoints left out of the mesh: 2 whose pod has no isthmus sidecar (inject the workload with `isthmus inject`)'],
    [{ 'not-a-pod': 1 }, 'exported to the mesh by cluster east; 1 endpoint left out of the mesh: 1 not a pod (an EndpointSlice without a Pod targetRef; the mesh dials only pods\' sidecars)'],
    [{ 'no-sidecar': 1, 'not-a-pod': 1 }, 'exported to the mesh by cluster east; 2 endpoints left out of the mesh: 1 whose pod has no isthmus sidecar (inject the workload with `isthmus inject`), 1 not a pod (an EndpointSlice without a Pod targetRef; the mesh dials only pods\' sidecars)'],
  ])('endpoints left out of the mesh (%j) are counted in the Valid condition\'s message, which stays True', (counts, message) => {
    const { conditions } = mcsStatus(input({
      exports: new Map([['demo/ledger', serviceExport]]), services: new Map([['demo/ledger', service()]]),
      ...(counts ? { skipped: new Map([['demo/ledger', counts]]) } : {}),
    }));
    expect(conditions.get('demo/ledger')?.find((c) => c.type === 'Valid')).toMatchObject({ status: 'True', reason: 'ServiceExported', message });
  });

  test('a headless export is imported as Headless; a namespace this cluster lacks gets no import', () => {
    const catalog = { services: [{ namespace: 'demo', name: 'ledger', clusters: [exporter('west', port80, 'Headless')] }] };
    expect(mcsStatus(input({ catalog })).imports.get('demo/ledger')?.type).toBe('Headless');
    expect(mcsStatus(input({ catalog, hasNamespace: () => false })).imports.size).toBe(0);
  });

  test.each([
    ['no Service', undefined, [['Valid', 'False', 'NoService'], ['Conflict', 'False', 'NoConflicts']]],
    ['an ExternalName Service', { ...service(), type: 'ExternalName' }, [['Valid', 'False', 'ServiceUnsupported'], ['Conflict', 'False', 'NoConflicts']]],
    ['the oldest export', service(), [['Valid', 'True', 'ServiceExported'], ['Conflict', 'False', 'NoConflicts']]],
  ])('a ServiceExport with %s', (_name, svc, expected) => {
    const { conditions } = mcsStatus(input({
      catalog: { services: svc ? [{ namespace: 'demo', name: 'ledger', clusters: [exporter('east')] }] : [] },
      exports: new Map([['demo/ledger', serviceExport]]),
      services: new Map(svc ? [['demo/ledger', svc]] : []),
    }));
    expect(conditions.get('demo/ledger')?.map((c) => [c.type, c.status, c.reason])).toEqual(expected);
  });

  test('ports that differ from an older export in another cluster: Conflict=True, naming the field and the winner', () => {
    const { conditions } = mcsStatus(input({
      catalog: { services: [{ namespace: 'demo', name: 'ledger', clusters: [exporter('east', [{ name: 'http', port: 8080, protocol: 'http' }]), exporter('west')] }] },
      exportedAt: new Map([['west/demo/ledger', '2026-01-01T00:00:00Z'], ['east/demo/ledger', '2026-01-02T00:00:00Z']]),
      exports: new Map([['demo/ledger', serviceExport]]),
      services: new Map([['demo/ledger', service([{ name: 'http', port: 8080, protocol: 'http' }])]]),
    }));
    const conflict = conditions.get('demo/ledger')?.find((c) => c.type === 'Conflict');
    expect(conflict).toMatchObject({ status: 'True', reason: 'PortConflict', observedGeneration: 1, lastTransitionTime: '2026-01-03T00:00:00Z' });
    expect(conflict?.message).toContain('spec.ports');
    expect(conflict?.message).toContain('cluster west');
  });

  // west's export is older: east's whole port set is compared with west's.
  const threePorts = [{ name: 'http', port: 80, protocol: 'http' }, { name: 'grpc', port: 9000, protocol: 'h2c' }, { name: 'redis', port: 6379, protocol: 'tcp' }];
  test.each([
    ['the same three ports', threePorts, 'False/NoConflicts'],
    ['the same ports in another order', [...threePorts].reverse(), 'False/NoConflicts'],
    ['the second port on another number', [threePorts[0], { ...threePorts[1], port: 9001 }, threePorts[2]], 'True/PortConflict'],
    ['the second port speaking HTTP/1.1, not h2c', [threePorts[0], { ...threePorts[1], protocol: 'http' }, threePorts[2]], 'True/PortConflict'],
    ['the third port renamed', [threePorts[0], threePorts[1], { ...threePorts[2], name: 'cache' }], 'True/PortConflict'],
    ['one port fewer', threePorts.slice(0, 2), 'True/PortConflict'],
  ])('every port counts: this cluster exports %s', (_name, ours, expected) => {
    const { conditions, imports } = mcsStatus(input({
      catalog: { services: [{ namespace: 'demo', name: 'ledger', clusters: [exporter('west', threePorts)] }] },
      exportedAt: new Map([['west/demo/ledger', '2026-01-01T00:00:00Z']]),
      exports: new Map([['demo/ledger', serviceExport]]),
      services: new Map([['demo/ledger', service(ours as typeof port80)]]),
    }));
    const conflict = conditions.get('demo/ledger')?.find((c) => c.type === 'Conflict');
    expect(`${conflict?.status}/${conflict?.reason}`).toBe(expected);
    // The import carries every port of the winner, each with its appProtocol (none for TCP).
    expect(imports.get('demo/ledger')?.ports).toEqual([
      { name: 'http', port: 80, protocol: 'TCP', appProtocol: 'http' },
      { name: 'grpc', port: 9000, protocol: 'TCP', appProtocol: 'kubernetes.io/h2c' },
      { name: 'redis', port: 6379, protocol: 'TCP' },
    ]);
  });

  test('this cluster\'s own exports count before etcd echoes them, and a stale echo of one it withdrew does not', () => {
    const fresh = mcsStatus(input({ exports: new Map([['demo/ledger', serviceExport]]), services: new Map([['demo/ledger', service()]]) }));
    expect(fresh.imports.get('demo/ledger')?.clusters).toEqual(['east']);
    const withdrawn = mcsStatus(input({ catalog: { services: [{ namespace: 'demo', name: 'ledger', clusters: [exporter('east')] }] } }));
    expect(withdrawn.imports.size).toBe(0);
  });

  test('lastTransitionTime moves only when a condition\'s status does', () => {
    const before = { ...serviceExport, conditions: [{ type: 'Valid', status: 'True' as const, reason: 'ServiceExported', message: '', lastTransitionTime: '2026-01-01T00:00:00Z' }] };
    const { conditions } = mcsStatus(input({ exports: new Map([['demo/ledger', before]]), services: new Map([['demo/ledger', service()]]) }));
    const valid = conditions.get('demo/ledger')?.find((c) => c.type === 'Valid');
    expect(valid?.lastTransitionTime).toBe('2026-01-01T00:00:00Z');
    expect(conditionsDiffer(before.conditions, conditions.get('demo/ledger') ?? [])).toBe(true);
    expect(conditionsDiffer(conditions.get('demo/ledger') ?? [], conditions.get('demo/ledger') ?? [])).toBe(false);
  });
});
