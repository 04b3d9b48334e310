import { keys } from '../core/keys.js';
import type { IssuedRecord } from '../federation/issued-ledger.js';
import type { FederationStore } from '../federation/store.js';
import type { ClusterRecord } from '../model/records.js';
import { rootUsage } from '../trust/root-usage.js';

/**
 * What the mesh can see still chaining to `rootPem`, one reason each (src/trust/root-usage.ts):
 * the intermediates in etcd of the trust domain's clusters, and the certificates each federation
 * issued or saw its gateways present (`/trust/issued/<c>`). Read by `ca remove-root` and `check`.
 */
export async function usesOfRoot(store: FederationStore, rootPem: string, trustDomain: string): Promise<string[]> {
  const clusters = (await store.list<ClusterRecord>(keys.clusters)).records
    .filter((r) => !r.key.slice(keys.clusters.length).includes('/') && r.value.trustDomain === trustDomain)
    .map((r) => r.key.slice(keys.clusters.length));
  const intermediates = (await store.list<{ certificate?: unknown }>(keys.intermediates)).records
    .flatMap((r) => (typeof r.value.certificate === 'string' ? [{ cluster: r.key.slice(keys.intermediates.length), certificate: r.value.certificate }] : []));
  const issued = (await store.list<IssuedRecord>(keys.issued)).records
    .filter((r) => Array.isArray(r.value.roots))
    .map((r) => ({ cluster: r.key.slice(keys.issued.length), roots: r.value.roots }));
  return rootUsage({ rootPem, clusters, intermediates, issued, now: new Date() });
}
