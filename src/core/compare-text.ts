/**
 * Orders two strings by their UTF-16 code units, the same on every machine.
 *
 * Isthmus sorts names (clusters, zones, services, addresses, policy keys) to make catalogs,
 * snapshots and tables come out in one order. `String.prototype.localeCompare` would order them by
 * the process's locale, so two federations started with different `LANG` could serialise the same
 * catalog differently, and its first call builds an ICU collator: about 3 MB of RSS that a sidecar
 * then keeps for good (measured on Node 20, docs/benchmarks.md). Names in the mesh are DNS labels,
 * addresses and paths, for which code-unit order is the order a reader expects.
 */
export function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
