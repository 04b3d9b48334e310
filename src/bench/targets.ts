import type { MeshFile } from '../dev/dev-mesh.js';

/** The path a request takes: straight to the app, or one of the two chains. */
export type ScenarioName = 'baseline' | 'same-cluster' | 'cross-cluster';
export type ChainName = Exclude<ScenarioName, 'baseline'>;
/** Whose proxies carry it: ours, the peer chain's (nginx/HAProxy), or none (the baseline). */
export type Side = 'isthmus' | 'peer' | 'origin';

/** Where a request ends: which service in which cluster answers it. */
export interface Destination {
  service: string;
  cluster: string;
}

/** One path through the mesh, as the load generator addresses it. */
export interface Target {
  scenario: ScenarioName;
  side: Side;
  /** The hops, for the report. */
  route: string;
  /** host:port of the first hop: the app itself or the client sidecar's proxy port. */
  firstHop: string;
  /** Origin-form for the app, absolute-form (what `curl -x` sends) for the proxy. */
  path: string;
  host: string;
  /** Where the answer must come from, checked before measuring. */
  expect: Destination;
}

/**
 * How a target is named in tables: `baseline hello` (straight to the app a chain ends at),
 * `isthmus cross-cluster`, `peer same-cluster`.
 */
export const targetLabel = (t: { scenario: ScenarioName; side: Side; expect: Destination }) => (t.side === 'origin' ? `${t.scenario} ${t.expect.service}` : `${t.side} ${t.scenario}`);

/** The same service in the same cluster: a chain's row and the baseline it is measured against. */
export const sameDestination = (a: Destination, b: Destination) => a.service === b.service && a.cluster === b.cluster;

/** Every answer is this many bytes, whichever chain carried it (the sample app pads its JSON). */
export const responseBytes = 1024;
const query = `?size=${responseBytes}`;

/** The cluster the load generator's requests start in (its client sidecar or the peer outbound). */
export const clientCluster = 'east';

/** Where each chain ends. `ledger` runs only in `west`, so asking for it from `east` must cross. */
export const chainDestinations: Record<ChainName, Destination> = {
  'same-cluster': { service: 'hello', cluster: 'east' },
  'cross-cluster': { service: 'ledger', cluster: 'west' },
};

/** The apps the chains end at, from mesh.json: the peer chain ends at the same ones. */
export function chainOrigins(mesh: MeshFile): Record<ChainName, string> {
  const origin = (d: Destination) => {
    const address = mesh.clusters[d.cluster]?.services.find((s) => s.name === d.service)?.instances[0];
    if (!address) throw new Error(`mesh.json lists no ${d.service} instance in ${d.cluster}`);
    return address;
  };
  return { 'same-cluster': origin(chainDestinations['same-cluster']), 'cross-cluster': origin(chainDestinations['cross-cluster']) };
}

/** The mesh name a chain asks for: its destination app's service in the samples' namespace. */
const hostOf = (scenario: ChainName) => `${chainDestinations[scenario].service}.demo.mesh`;

/**
 * The paths the bench compares, in the order it measures them at each rate. Each chain has a
 * baseline of its own, the app it ends at asked directly, measured just before it: "added" is a
 * chain's figure minus its own app's, so a difference between the two apps (processes, clusters'
 * addresses) is not charged to either chain. Then the chain through our mesh and through the
 * peer chain, one after the other. `peerOutbound` is the peer chain's outbound nginx; without it
 * only our chains are measured.
 */
export function benchTargets(mesh: MeshFile, peerOutbound?: string): Target[] {
  const east = mesh.clusters.east;
  const west = mesh.clusters.west;
  if (!east || !west) throw new Error('the bench needs clusters "east" and "west" in mesh.json');
  const origins = chainOrigins(mesh);
  const baseline = (scenario: ChainName): Target => {
    const { service, cluster } = chainDestinations[scenario];
    return {
      scenario: 'baseline', side: 'origin', route: `direct → ${cluster} ${service} app (${origins[scenario]})`,
      firstHop: origins[scenario], path: `/${query}`, host: origins[scenario], expect: chainDestinations[scenario],
    };
  };
  const peer = (scenario: ChainName, route: string): Target[] => (peerOutbound === undefined ? [] : [{
    scenario, side: 'peer', route, firstHop: peerOutbound, path: `http://${hostOf(scenario)}/${query}`, host: hostOf(scenario), expect: chainDestinations[scenario],
  }]);
  return [
    baseline('same-cluster'),
    {
      scenario: 'same-cluster', side: 'isthmus', route: `east client sidecar (${east.client.proxy}) → east hello sidecar inbound → app`,
      firstHop: east.client.proxy, path: `http://${hostOf('same-cluster')}/${query}`, host: hostOf('same-cluster'), expect: chainDestinations['same-cluster'],
    },
    ...peer('same-cluster', `nginx outbound (${peerOutbound ?? ''}) → nginx inbound (client certificate required) → east hello app (${origins['same-cluster']})`),
    baseline('cross-cluster'),
    {
      scenario: 'cross-cluster', side: 'isthmus', route: `east client sidecar (${east.client.proxy}) → west gateway (${west.gateways[0] ?? '?'}) → west ledger sidecar inbound → app`,
      firstHop: east.client.proxy, path: `http://${hostOf('cross-cluster')}/${query}`, host: hostOf('cross-cluster'), expect: chainDestinations['cross-cluster'],
    },
    ...peer('cross-cluster', `nginx outbound (${peerOutbound ?? ''}) → HAProxy gateway (SNI passthrough) → nginx inbound (client certificate required) → west ledger app (${origins['cross-cluster']})`),
  ];
}

