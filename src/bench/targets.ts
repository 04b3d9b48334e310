import type { MeshFile } from '../dev/dev-mesh.js';

export type ScenarioName = 'baseline' | 'same-cluster' | 'cross-cluster';

/** One path through the mesh, as the load generator addresses it. */
export interface Target {
  scenario: ScenarioName;
  /** The hops, for the report. */
  route: string;
  /** host:port of the first hop: the app itself or the client sidecar's proxy port. */
  firstHop: string;
  /** Origin-form for the app, absolute-form (what `curl -x` sends) for the proxy. */
  path: string;
  host: string;
  /** Where the answer must come from, checked before measuring. */
  expect: { service: string; cluster: string };
}

/**
 * The three paths the bench compares, from the dev mesh's mesh.json: the origin directly (the
 * baseline every "added" figure subtracts), a chain inside one cluster, and a chain through the
 * remote cluster's east-west gateway. `ledger` runs only in `west`, so asking for it from `east`
 * must cross; `hello` runs in both, so asking from `east` stays local.
 */
export function benchTargets(mesh: MeshFile): Target[] {
  const east = mesh.clusters.east;
  const west = mesh.clusters.west;
  if (!east || !west) throw new Error('the bench needs clusters "east" and "west" in mesh.json');
  const ledgerApp = west.services.find((s) => s.name === 'ledger')?.instances[0];
  if (!ledgerApp) throw new Error('mesh.json lists no ledger instance in west');
  return [
    {
      scenario: 'baseline', route: `direct → west ledger app (${ledgerApp})`,
      firstHop: ledgerApp, path: '/', host: ledgerApp, expect: { service: 'ledger', cluster: 'west' },
    },
    {
      scenario: 'same-cluster', route: `east client sidecar (${east.client.proxy}) → east hello sidecar inbound → app`,
      firstHop: east.client.proxy, path: 'http://hello.demo.mesh/', host: 'hello.demo.mesh', expect: { service: 'hello', cluster: 'east' },
    },
    {
      scenario: 'cross-cluster', route: `east client sidecar (${east.client.proxy}) → west gateway (${west.gateways[0] ?? '?'}) → west ledger sidecar inbound → app`,
      firstHop: east.client.proxy, path: 'http://ledger.demo.mesh/', host: 'ledger.demo.mesh', expect: { service: 'ledger', cluster: 'west' },
    },
  ];
}
