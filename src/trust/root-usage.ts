import { X509Certificate } from 'node:crypto';
import { isSignedBy } from './verify.js';

/** What `isthmus ca remove-root` reads from etcd, as plain data. */
export interface RootUsageInput {
  /** The root about to leave its bundle. */
  rootPem: string;
  /** Clusters of the root's trust domain (their cluster records). */
  clusters: string[];
  /** `/trust/intermediates/<c>` of those clusters. */
  intermediates: { cluster: string; certificate: string }[];
  /** `/trust/issued/<c>` records (leased: a cluster whose federation is down has none). */
  issued: { cluster: string; roots: { root: string; leaves: number; until: string }[] }[];
  now: Date;
}

/**
 * Why the root is still in use, one reason per cluster and cause; empty when nothing the mesh
 * can see chains to it. Three causes: a cluster still signs with an intermediate of this root;
 * certificates a federation issued (or saw its gateways present) under it are still held; a
 * cluster publishes no record of its certificates, so nobody can say (its federation is down).
 */
export function rootUsage(input: RootUsageInput): string[] {
  const root = new X509Certificate(input.rootPem);
  const mine = new Set(input.clusters);
  const reasons: string[] = [];
  for (const { cluster, certificate } of input.intermediates) {
    if (!mine.has(cluster)) continue;
    let signedByRoot = false;
    try {
      signedByRoot = isSignedBy(new X509Certificate(certificate), root);
    } catch {
      // An unreadable record is `isthmus check`'s to report; it is not this root's intermediate.
    }
    if (signedByRoot) reasons.push(`cluster ${cluster} still signs with an intermediate of this root: run \`isthmus ca rotate-intermediate -c <${cluster}'s cluster.yaml> --ca <new root dir>\``);
  }
  const recorded = new Set(input.issued.map((r) => r.cluster));
  for (const record of input.issued) {
    if (!mine.has(record.cluster)) continue;
    const held = record.roots.find((r) => r.root === root.fingerprint256 && r.leaves > 0 && Date.parse(r.until) > input.now.getTime());
    if (held) reasons.push(`${held.leaves} certificate(s) of cluster ${record.cluster} still chain to it (the last valid until ${held.until}): wait until its workloads and gateways have renewed`);
  }
  for (const cluster of input.clusters) {
    if (!recorded.has(cluster)) reasons.push(`cluster ${cluster} publishes no record of its certificates (is its federation running?), so nothing says they have moved to the new root`);
  }
  return reasons;
}
