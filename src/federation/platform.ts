import type { Catalog } from '../model/catalog.js';
import type { LocalService } from './local-services.js';

/**
 * Where a cluster's workloads come from. The federation asks a platform only these questions,
 * so `local` (cluster.yaml and `isthmus register`) and `kubernetes` (Services, EndpointSlices,
 * ServiceExports) are interchangeable behind it (docs/architecture.md, "Processes").
 */
export interface Platform {
  readonly kind: 'local' | 'kubernetes';
  /** Resolves once the platform's first view is complete; `onChange` is called whenever it moves. */
  start(onChange: () => void): Promise<void>;
  /** Stops every watch and timer the platform started. */
  stop(): Promise<void>;
  /** This cluster's services, sorted by namespace and name. */
  services(): LocalService[];
  /**
   * `<ns>/<name>` → when it was exported, where the platform itself says what is exported (a
   * Kubernetes ServiceExport); the federation mirrors it into the export intents in etcd.
   * undefined where intents come from `isthmus export` only.
   */
  exports(): ReadonlyMap<string, string> | undefined;
  /**
   * The mesh changed: the merged catalog, and every cluster's export intents
   * (`<cluster>/<ns>/<name>` → exportedAt). A platform shows it where its users look (ServiceImports).
   */
  meshChanged(view: { catalog: Catalog; exportedAt: ReadonlyMap<string, string> }): void;
  /**
   * Who a workload's bearer token names, checked by the platform (Kubernetes: TokenReview of a
   * projected ServiceAccount token); undefined where bearer tokens are the federation's own
   * single-use bootstrap tokens (local).
   */
  readonly reviewToken: ((token: string) => Promise<{ namespace: string; serviceAccount: string }>) | undefined;
  /**
   * Endpoints of this cluster's services left out of the mesh, counted by reason (Kubernetes:
   * `no-sidecar`, `not-a-pod`); undefined where every endpoint is registered by hand (local).
   */
  skippedEndpoints?(): Record<string, number>;
}
