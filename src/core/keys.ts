/**
 * The federation store's key layout (docs/federation.md, "Key layout"). Every key the
 * project reads or writes is built here, so the layout lives in one place.
 */
export const prefix = '/isthmus/v1';

export const keys = {
  all: `${prefix}/`,
  clusters: `${prefix}/clusters/`,
  cluster: (cluster: string) => `${prefix}/clusters/${cluster}`,
  alive: (cluster: string) => `${prefix}/clusters/${cluster}/alive`,
  gateways: `${prefix}/gateways/`,
  gatewaysOf: (cluster: string) => `${prefix}/gateways/${cluster}/`,
  gateway: (cluster: string, id: string) => `${prefix}/gateways/${cluster}/${id}`,
  exports: `${prefix}/exports/`,
  exportsOf: (cluster: string) => `${prefix}/exports/${cluster}/`,
  export: (cluster: string, ns: string, service: string) => `${prefix}/exports/${cluster}/${ns}/${service}`,
  /**
   * The operator's intent to export (persistent, survives restarts), as a Kubernetes
   * ServiceExport. The leased `/exports/...` record is what the federation service publishes
   * from it while the cluster is alive. Listed in docs/federation.md.
   */
  serviceExports: `${prefix}/serviceexports/`,
  serviceExportsOf: (cluster: string) => `${prefix}/serviceexports/${cluster}/`,
  serviceExport: (cluster: string, ns: string, service: string) => `${prefix}/serviceexports/${cluster}/${ns}/${service}`,
  bundles: `${prefix}/trust/bundles/`,
  bundle: (trustDomain: string) => `${prefix}/trust/bundles/${trustDomain}`,
  intermediates: `${prefix}/trust/intermediates/`,
  intermediate: (cluster: string) => `${prefix}/trust/intermediates/${cluster}`,
  /** Which roots the certificates a cluster's federation issued and saw still chain to, leased (docs/trust.md, "Root rotation"). */
  issued: `${prefix}/trust/issued/`,
  issuedOf: (cluster: string) => `${prefix}/trust/issued/${cluster}`,
  policies: `${prefix}/policies/`,
  policy: (kind: string, ns: string, name: string) => `${prefix}/policies/${kind}/${ns}/${name}`,
  sloPolicies: `${prefix}/policies/slo/`,
  sloStatuses: `${prefix}/slostatus/`,
  /** Which verdict on an objective was last acted on (docs/federation.md). */
  sloStatus: (ns: string, name: string) => `${prefix}/slostatus/${ns}/${name}`,
  /** Sidecar-reported request counters of one cluster, leased (docs/federation.md). */
  traffic: `${prefix}/traffic/`,
  trafficOf: (cluster: string) => `${prefix}/traffic/${cluster}`,
  /** A cluster's recent failover, ejection and SLO events, leased (docs/federation.md). */
  events: `${prefix}/events/`,
  eventsOf: (cluster: string) => `${prefix}/events/${cluster}`,
  /** A bootstrap token that bought its certificate, by the token's SHA-256: never accepted again (docs/federation.md). */
  usedTokens: `${prefix}/tokens/used/`,
  usedToken: (hash: string) => `${prefix}/tokens/used/${hash}`,
  /** A service's progressive delivery, persistent (docs/rollouts.md). */
  rollouts: `${prefix}/rollouts/`,
  rollout: (ns: string, service: string) => `${prefix}/rollouts/${ns}/${service}`,
  /** Which federation drives every rollout now, under that federation's own lease (docs/rollouts.md). */
  rolloutDriver: `${prefix}/rolloutdriver`,
  probes: `${prefix}/probes/`,
  probe: (from: string, to: string) => `${prefix}/probes/${from}/${to}`,
} as const;

/** Current version of every JSON value we write; readers refuse versions they do not know. */
export const recordVersion = 1;
