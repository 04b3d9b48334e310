import type { NamespaceSummary } from './kube-objects.js';

/** The namespace label that takes a namespace into the mesh (`enabled`) or out of it (`disabled`). */
export const meshLabel = 'isthmus.dev/mesh';

/**
 * Which namespaces of a cluster are in the mesh. Pure, so the rules are tested with a table:
 *
 * - A namespace must exist (the adapter watches Namespaces) and not be terminating: deleting a
 *   namespace unexports its services at once, before its Services' own deletions arrive.
 * - `kubernetes.namespaces`, when not empty, bounds what is watched: a namespace outside it is
 *   never in the mesh.
 * - `isthmus.dev/mesh: disabled` takes a namespace out. With `kubernetes.requireMeshLabel`,
 *   only namespaces labelled `isthmus.dev/mesh: enabled` are in (Istio's and Linkerd's opt-in
 *   style); without it every namespace is in unless it opts out.
 *
 * Out of the mesh means: its Services are not this cluster's services (not exported, not
 * counted), its ServiceExports are not export intents, and it gets no ServiceImports.
 */
export function inMesh(namespace: string, input: {
  namespaces: ReadonlyMap<string, NamespaceSummary>;
  listed: readonly string[];
  requireMeshLabel: boolean;
}): boolean {
  const seen = input.namespaces.get(namespace);
  if (!seen || seen.terminating) return false;
  if (input.listed.length > 0 && !input.listed.includes(namespace)) return false;
  if (seen.mesh === 'disabled') return false;
  return input.requireMeshLabel ? seen.mesh === 'enabled' : true;
}
