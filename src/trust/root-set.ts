/**
 * A set of trusted roots as PEM text, compared as a set: each certificate's surrounding
 * whitespace aside, duplicates dropped, in any order. Sidecars, gateways and the federation's
 * trust feed all ask whether the roots they were told differ from the ones they hold; a small
 * module of its own so that a sidecar does not load the bundle checks (bundle.ts) to ask it.
 */

/** The roots trimmed, without duplicates, sorted: two sets of roots are the same when these are. */
export function canonicalRoots(roots: readonly string[]): string[] {
  return [...new Set(roots.map((pem) => pem.trim()))].sort();
}

export function sameRoots(a: readonly string[], b: readonly string[]): boolean {
  const left = canonicalRoots(a);
  const right = canonicalRoots(b);
  return left.length === right.length && left.every((pem, i) => pem === right[i]);
}
