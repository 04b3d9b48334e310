import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The policy files of the canary walkthrough `isthmus dev up` prints (README, docs/dev-mesh.md):
 * an HTTPRoute on demo/hello sending 90% to hello-v1 and 10% to hello-v2 (and every request
 * with `x-user-group: beta` to v2), and the same route flipped to 0/100 for blue-green. Both
 * name one route, so applying the second replaces the first and one delete removes it.
 */
export const canaryRouteName = 'hello-canary';

export function canaryRoute(v1: number, v2: number): string {
  return `# isthmus policy apply -f <this file>; isthmus policy delete httproute demo/${canaryRouteName}
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: ${canaryRouteName}, namespace: demo }
spec:
  parentRefs: [{ group: "", kind: Service, name: hello }]
  rules:
    - matches: [{ headers: [{ name: x-user-group, value: beta }] }]
      backendRefs: [{ name: hello-v2 }]
    - backendRefs: [{ name: hello-v1, weight: ${v1} }, { name: hello-v2, weight: ${v2} }]
`;
}

/**
 * The objective the walkthrough's rollout is gated by (docs/rollouts.md): on hello-v2, the
 * backend the rollout moves traffic to, since sidecars count a request under the backend it went to.
 */
export const rolloutObjectiveName = 'hello-v2-fast';
const helloV2Slo = `apiVersion: isthmus.dev/v1alpha1
kind: ServiceLevelObjective
metadata: { name: ${rolloutObjectiveName}, namespace: demo }
spec:
  service: hello-v2
  latency: { percentile: 99, below: 250ms }
  window: 5m
  minRequests: 10
`;

/** Writes `hello-canary.yaml` (90/10), `hello-blue-green.yaml` (0/100) and `hello-v2-slo.yaml` into `dir`; their paths. */
export function writeCanaryFiles(dir: string): { canary: string; blueGreen: string; rolloutSlo: string } {
  const canary = join(dir, 'hello-canary.yaml');
  const blueGreen = join(dir, 'hello-blue-green.yaml');
  const rolloutSlo = join(dir, 'hello-v2-slo.yaml');
  writeFileSync(canary, canaryRoute(90, 10));
  writeFileSync(blueGreen, canaryRoute(0, 100));
  writeFileSync(rolloutSlo, helloV2Slo);
  return { canary, blueGreen, rolloutSlo };
}

/** A service level objective on demo/ledger, for `isthmus policy apply -f` (docs/dashboard.md). */
export const ledgerSlo = `apiVersion: isthmus.dev/v1alpha1
kind: ServiceLevelObjective
metadata: { name: ledger-fast, namespace: demo }
spec:
  service: ledger
  latency: { percentile: 99, below: 250ms }
  success: 99.9
  window: 1h
  minRequests: 20
`;

/** Writes `ledger-slo.yaml` into `dir`; its path. */
export function writeSloFile(dir: string): string {
  const path = join(dir, 'ledger-slo.yaml');
  writeFileSync(path, ledgerSlo);
  return path;
}
