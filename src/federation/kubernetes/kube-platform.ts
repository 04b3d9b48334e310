import { AuthenticationV1Api, CoreV1Api, CustomObjectsApi, DiscoveryV1Api, KubeConfig, Watch } from '@kubernetes/client-node';
import { IsthmusError, describeError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import type { Catalog } from '../../model/catalog.js';
import type { LoadedClusterConfig } from '../config.js';
import type { LocalService } from '../local-services.js';
import type { Platform } from '../platform.js';
import {
  summarizeExport, summarizeNamespace, summarizeNode, summarizePod, summarizeService, summarizeSlice, metaOf,
  type ExportSummary, type NamespaceSummary, type NodeSummary, type PodSummary, type ServiceSummary, type SliceSummary,
} from './kube-objects.js';
import { inMesh } from './kube-namespaces.js';
import { kubeServices, type SkippedEndpoint } from './kube-services.js';
import { backoffMs, KubeWatch, statusOf, type WatchSource } from './kube-watch.js';
import { conditionsDiffer, mcsStatus, type ServiceImportSpec, type SkippedCounts } from './mcs-status.js';

const mcs = { group: 'multicluster.x-k8s.io', version: 'v1alpha1' } as const;
const managedBy = { 'app.kubernetes.io/managed-by': 'isthmus' };

interface ImportSummary { namespace: string; name: string; managed: boolean; written: string }

/**
 * The `kubernetes` platform: a cluster's services from its API server, through
 * @kubernetes/client-node. Watches Namespaces, Services, EndpointSlices, Pods (which run the
 * sidecar, and its inbound port: what callers dial), Nodes and the MCS API's
 * ServiceExports (multicluster.x-k8s.io/v1alpha1) and ServiceImports; writes the mesh's imports
 * as ServiceImports and the truth about each export as its status conditions (Valid, Conflict);
 * checks workloads' projected ServiceAccount tokens with TokenReview. Loaded only when
 * cluster.yaml says `platform: kubernetes`.
 */
export class KubernetesPlatform implements Platform {
  readonly kind = 'kubernetes';
  private readonly core: CoreV1Api;
  private readonly discovery: DiscoveryV1Api;
  private readonly custom: CustomObjectsApi;
  private readonly authentication: AuthenticationV1Api;
  private readonly watches: KubeWatch<unknown>[] = [];
  private readonly serviceWatches: KubeWatch<ServiceSummary>[] = [];
  private readonly sliceWatches: KubeWatch<SliceSummary>[] = [];
  private readonly exportWatches: KubeWatch<ExportSummary>[] = [];
  private readonly importWatches: KubeWatch<ImportSummary>[] = [];
  private readonly podWatches: KubeWatch<PodSummary>[] = [];
  /** What the last skipped-endpoints log said, so it is said again only when it changes. */
  private skippedSaid = '{}';
  /** Endpoints left out of the mesh per `<ns>/<service>`: told on the ServiceExport's Valid condition. */
  private skipped = new Map<string, SkippedCounts>();
  private readonly nodeWatch: KubeWatch<NodeSummary>;
  private readonly namespaceWatch: KubeWatch<NamespaceSummary>;
  private current: LocalService[] = [];
  private onChange: () => void = () => undefined;
  private recompute: NodeJS.Immediate | undefined;
  private view: { catalog: Catalog; exportedAt: ReadonlyMap<string, string> } | undefined;
  private reconciling = false;
  private reconcileAgain = false;
  private retry: NodeJS.Timeout | undefined;
  private failures = 0;
  private stopped = false;

  constructor(private readonly loaded: LoadedClusterConfig, private readonly log: Logger, kubeConfig?: KubeConfig) {
    const kc = kubeConfig ?? loadKubeConfig(loaded);
    this.core = kc.makeApiClient(CoreV1Api);
    this.discovery = kc.makeApiClient(DiscoveryV1Api);
    this.custom = kc.makeApiClient(CustomObjectsApi);
    this.authentication = kc.makeApiClient(AuthenticationV1Api);
    const stream = new Watch(kc);
    const { namespaces } = loaded.config.kubernetes;
    const scopes: (string | undefined)[] = namespaces.length > 0 ? [...namespaces] : [undefined];
    const make = <T>(source: WatchSource, summarize: (raw: unknown) => T | undefined, list: KubeWatch<T>[] | undefined, onChange: () => void) => {
      const watch = new KubeWatch<T>({ source, stream, summarize, onChange, log: log.child({ watch: source.what }) });
      this.watches.push(watch as KubeWatch<unknown>);
      list?.push(watch);
      return watch;
    };
    const changed = () => this.scheduleRecompute();
    const repair = () => this.scheduleReconcile();
    for (const ns of scopes) {
      const where = ns ? ` in ${ns}` : '';
      make({
        what: `services${where}`, path: ns ? `/api/v1/namespaces/${ns}/services` : '/api/v1/services',
        list: async () => listed(ns ? await this.core.listNamespacedService({ namespace: ns }) : await this.core.listServiceForAllNamespaces()),
      }, summarizeService, this.serviceWatches, changed);
      make({
        what: `endpointslices${where}`, path: ns ? `/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices` : '/apis/discovery.k8s.io/v1/endpointslices',
        list: async () => listed(ns ? await this.discovery.listNamespacedEndpointSlice({ namespace: ns }) : await this.discovery.listEndpointSliceForAllNamespaces()),
      }, summarizeSlice, this.sliceWatches, changed);
      // Which pods run a sidecar, and its inbound port: the address callers dial (kube-services.ts).
      make({
        what: `pods${where}`, path: ns ? `/api/v1/namespaces/${ns}/pods` : '/api/v1/pods',
        list: async () => listed(ns ? await this.core.listNamespacedPod({ namespace: ns }) : await this.core.listPodForAllNamespaces()),
      }, summarizePod, this.podWatches, changed);
      make({
        what: `serviceexports${where}`, path: mcsPath('serviceexports', ns),
        list: async () => listed(ns ? await this.custom.listNamespacedCustomObject({ ...mcs, namespace: ns, plural: 'serviceexports' }) : await this.custom.listClusterCustomObject({ ...mcs, plural: 'serviceexports' })),
      }, summarizeExport, this.exportWatches, changed);
      make({
        what: `serviceimports${where}`, path: mcsPath('serviceimports', ns),
        list: async () => listed(ns ? await this.custom.listNamespacedCustomObject({ ...mcs, namespace: ns, plural: 'serviceimports' }) : await this.custom.listClusterCustomObject({ ...mcs, plural: 'serviceimports' })),
      }, summarizeImport, this.importWatches, repair);
    }
    this.nodeWatch = make({ what: 'nodes', path: '/api/v1/nodes', list: async () => listed(await this.core.listNode()) }, summarizeNode, undefined, changed);
    // Which namespaces exist, are being deleted, and what their isthmus.dev/mesh label says (kube-namespaces.ts).
    this.namespaceWatch = make({ what: 'namespaces', path: '/api/v1/namespaces', list: async () => listed(await this.core.listNamespace()) }, summarizeNamespace, undefined, changed);
  }

  async start(onChange: () => void): Promise<void> {
    for (const watch of this.watches) watch.start();
    // The federation publishes only once it has seen the whole cluster: exporting half a list
    // would withdraw endpoints that are merely not listed yet.
    await Promise.all(this.watches.map((w) => w.synced));
    this.current = this.computeServices();
    this.onChange = onChange;
    this.log.info({ services: this.current.length, namespaces: this.loaded.config.kubernetes.namespaces }, 'kubernetes platform synced');
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.recompute) clearImmediate(this.recompute);
    clearTimeout(this.retry);
    await Promise.all(this.watches.map((w) => w.stop()));
  }

  services(): LocalService[] {
    return this.current;
  }

  skippedEndpoints(): Record<string, number> {
    const total: Record<string, number> = { 'no-sidecar': 0, 'not-a-pod': 0 };
    for (const counts of this.skipped.values()) {
      for (const [reason, count] of Object.entries(counts)) total[reason] = (total[reason] ?? 0) + count;
    }
    return total;
  }

  exports(): ReadonlyMap<string, string> {
    const out = new Map<string, string>();
    for (const e of this.exportsInMesh()) out.set(`${e.namespace}/${e.name}`, e.createdAt);
    return out;
  }

  private inMesh(namespace: string): boolean {
    const { namespaces, requireMeshLabel } = this.loaded.config.kubernetes;
    return inMesh(namespace, { namespaces: this.namespaceWatch.items, listed: namespaces, requireMeshLabel });
  }

  private servicesInMesh(): ServiceSummary[] {
    return this.serviceWatches.flatMap((w) => [...w.items.values()]).filter((s) => this.inMesh(s.namespace));
  }

  private exportsInMesh(): ExportSummary[] {
    return this.exportWatches.flatMap((w) => [...w.items.values()]).filter((e) => this.inMesh(e.namespace));
  }

  meshChanged(view: { catalog: Catalog; exportedAt: ReadonlyMap<string, string> }): void {
    this.view = view;
    this.scheduleReconcile();
  }

  readonly reviewToken = async (token: string): Promise<{ namespace: string; serviceAccount: string }> => {
    const audience = this.loaded.config.kubernetes.tokenAudience;
    let review;
    try {
      review = await this.authentication.createTokenReview({ body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: [audience] } } });
    } catch (err) {
      throw new IsthmusError('ISTHMUS_ERR_KUBERNETES_UNREACHABLE', `the Kubernetes API did not review the ServiceAccount token (${describeError(err).split('\n')[0]}); check that the federation's ServiceAccount may create tokenreviews`, { cause: err });
    }
    const status = review.status;
    if (!status?.authenticated) {
      throw new IsthmusError('ISTHMUS_ERR_TRUST_TOKEN_INVALID', `the Kubernetes API did not accept the ServiceAccount token${status?.error ? ` (${status.error})` : ''}; mount a projected token with audience "${audience}"`);
    }
    if (!(status.audiences ?? []).includes(audience)) {
      throw new IsthmusError('ISTHMUS_ERR_TRUST_TOKEN_INVALID', `the ServiceAccount token is not for audience "${audience}"; mount a projected token with that audience`);
    }
    // The identity is the reviewed account's, never anything the caller said.
    const match = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(status.user?.username ?? '');
    if (!match) throw new IsthmusError('ISTHMUS_ERR_TRUST_IDENTITY_DENIED', `${status.user?.username ?? 'the token\'s user'} is not a ServiceAccount; only pods get workload certificates`);
    return { namespace: match[1] as string, serviceAccount: match[2] as string };
  };

  // --- reading ---

  private scheduleRecompute(): void {
    if (this.recompute || this.stopped) return;
    // Many events arrive in one burst (a list, a rollout): recompute once after them.
    this.recompute = setImmediate(() => {
      this.recompute = undefined;
      this.current = this.computeServices();
      this.onChange();
      this.scheduleReconcile();
    });
  }

  private computeServices(): LocalService[] {
    const pods = this.podWatches.length === 1 ? (this.podWatches[0] as KubeWatch<PodSummary>).items : new Map(this.podWatches.flatMap((w) => [...w.items]));
    const { services, skipped } = kubeServices({
      services: this.servicesInMesh(),
      slices: this.sliceWatches.flatMap((w) => [...w.items.values()]).filter((s) => this.inMesh(s.namespace)),
      nodes: this.nodeWatch.items,
      pods,
      defaultZone: this.loaded.config.zones[0] ?? 'default',
    });
    this.reportSkipped(skipped);
    return services;
  }

  /**
   * Endpoints without a sidecar are not instances; say so once per change, with a count per
   * service, and keep the counts for the ServiceExports' status (where kubectl users look).
   */
  private reportSkipped(skipped: SkippedEndpoint[]): void {
    const perService: Record<string, SkippedCounts> = {};
    for (const { service, reason } of skipped) {
      const counts = perService[service] ??= {};
      counts[reason] = (counts[reason] ?? 0) + 1;
    }
    this.skipped = new Map(Object.entries(perService));
    const said = JSON.stringify(perService);
    if (said === this.skippedSaid) return;
    this.skippedSaid = said;
    if (skipped.length === 0) return void this.log.info('every endpoint of the mesh\'s Services runs a sidecar again');
    this.log.warn({ skipped: skipped.length, perService, example: skipped[0] }, 'endpoints left out of the mesh: their pod has no isthmus sidecar (inject it with `isthmus inject`), or they are not pods');
  }

  // --- writing: ServiceImports and ServiceExport status ---

  private scheduleReconcile(): void {
    if (this.stopped || !this.view) return;
    if (this.reconciling) {
      this.reconcileAgain = true;
      return;
    }
    this.reconciling = true;
    void this.reconcile().then(() => {
      this.failures = 0;
    }, (err: unknown) => {
      this.failures += 1;
      const delay = backoffMs(this.failures);
      this.log.warn({ err: describeError(err), retryInMs: delay }, 'could not update ServiceImports or ServiceExport status; retrying');
      clearTimeout(this.retry);
      this.retry = setTimeout(() => this.scheduleReconcile(), delay);
      this.retry.unref();
    }).finally(() => {
      this.reconciling = false;
      if (this.reconcileAgain) {
        this.reconcileAgain = false;
        this.scheduleReconcile();
      }
    });
  }

  private async reconcile(): Promise<void> {
    const view = this.view;
    if (!view) return;
    const services = new Map(this.servicesInMesh().map((s) => [`${s.namespace}/${s.name}`, s]));
    const exportsHere = new Map(this.exportsInMesh().map((e) => [`${e.namespace}/${e.name}`, e]));
    const desired = mcsStatus({
      cluster: this.loaded.config.cluster,
      catalog: view.catalog,
      exportedAt: view.exportedAt,
      exports: exportsHere,
      services,
      hasNamespace: (ns) => this.inMesh(ns),
      skipped: this.skipped,
      now: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    });
    const observed = new Map(this.importWatches.flatMap((w) => [...w.items.values()]).map((i) => [`${i.namespace}/${i.name}`, i]));
    for (const [id, spec] of desired.imports) {
      const seen = observed.get(id);
      if (seen && !seen.managed) continue; // someone else's ServiceImport: not ours to change
      if (seen?.written === importFingerprint(spec)) continue;
      await this.writeImport(spec, seen !== undefined);
    }
    for (const [id, seen] of observed) {
      if (!seen.managed || desired.imports.has(id)) continue;
      await this.ignoreMissing(this.custom.deleteNamespacedCustomObject({ ...mcs, namespace: seen.namespace, plural: 'serviceimports', name: seen.name }));
    }
    for (const [id, conditions] of desired.conditions) {
      const serviceExport = exportsHere.get(id) as ExportSummary;
      if (!conditionsDiffer(serviceExport.conditions, conditions)) continue;
      await this.ignoreMissing(this.custom.patchNamespacedCustomObjectStatus({
        ...mcs, namespace: serviceExport.namespace, plural: 'serviceexports', name: serviceExport.name,
        body: [{ op: 'add', path: '/status', value: { conditions } }],
      }));
    }
  }

  private async writeImport(spec: ServiceImportSpec, exists: boolean): Promise<void> {
    const target = { ...mcs, namespace: spec.namespace, plural: 'serviceimports', name: spec.name };
    const body = {
      apiVersion: `${mcs.group}/${mcs.version}`,
      kind: 'ServiceImport',
      metadata: { name: spec.name, namespace: spec.namespace, labels: managedBy, annotations: { [fingerprintAnnotation]: importFingerprint(spec) } },
      // No cluster-set VIP: clients reach <svc>.<ns>.svc.clusterset.local through their sidecar, by name.
      spec: { type: spec.type, ports: spec.ports, ips: [] as string[] },
    };
    if (exists) {
      // Merge patch: no resourceVersion to race on, and fields other controllers set are kept.
      await this.ignoreMissing(this.custom.patchNamespacedCustomObject({ ...target, body: [{ op: 'add', path: '/spec', value: body.spec }, { op: 'add', path: '/metadata/annotations', value: body.metadata.annotations }] }));
    } else {
      try {
        await this.custom.createNamespacedCustomObject({ ...mcs, namespace: spec.namespace, plural: 'serviceimports', body });
      } catch (err) {
        if (statusOf(err) !== 409) throw err; // made meanwhile: our watch brings it, and the next pass patches it
      }
    }
    await this.ignoreMissing(this.custom.patchNamespacedCustomObjectStatus({ ...target, body: [{ op: 'add', path: '/status', value: { clusters: spec.clusters.map((cluster) => ({ cluster })) } }] }));
  }

  /** A 404 means the object went away meanwhile; the watch tells us and the next pass decides again. */
  private async ignoreMissing(request: Promise<unknown>): Promise<void> {
    try {
      await request;
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
    }
  }
}

const fingerprintAnnotation = 'isthmus.dev/import';

/** What we wrote into a ServiceImport, compact, kept as an annotation so a change is seen without keeping whole objects. */
function importFingerprint(spec: ServiceImportSpec): string {
  return JSON.stringify([spec.type, spec.ports.map((p) => [p.name ?? '', p.port, p.appProtocol ?? '']), spec.clusters]);
}

function summarizeImport(raw: unknown): ImportSummary {
  const meta = metaOf(raw);
  const written = meta.annotations[fingerprintAnnotation];
  return { namespace: meta.namespace, name: meta.name, managed: meta.labels['app.kubernetes.io/managed-by'] === 'isthmus', written: typeof written === 'string' ? written : '' };
}

function mcsPath(plural: string, ns: string | undefined): string {
  return ns ? `/apis/${mcs.group}/${mcs.version}/namespaces/${ns}/${plural}` : `/apis/${mcs.group}/${mcs.version}/${plural}`;
}

function listed(list: { items?: unknown; metadata?: { resourceVersion?: string } }): { items: unknown[]; resourceVersion: string } {
  return { items: Array.isArray(list.items) ? list.items : [], resourceVersion: list.metadata?.resourceVersion ?? '' };
}

function loadKubeConfig(loaded: LoadedClusterConfig): KubeConfig {
  const kc = new KubeConfig();
  const { context } = loaded.config.kubernetes;
  try {
    if (loaded.kubeconfigPath) kc.loadFromFile(loaded.kubeconfigPath);
    else if (process.env.KUBERNETES_SERVICE_HOST) kc.loadFromCluster();
    else kc.loadFromDefault();
    if (context) kc.setCurrentContext(context);
  } catch (err) {
    throw new IsthmusError('ISTHMUS_ERR_KUBERNETES_UNREACHABLE', `could not load the kubeconfig${loaded.kubeconfigPath ? ` ${loaded.kubeconfigPath}` : ''}: ${(err as Error).message}; set kubernetes.kubeconfig (and kubernetes.context) in ${loaded.path}`, { cause: err });
  }
  if (!kc.getCurrentCluster()) {
    throw new IsthmusError('ISTHMUS_ERR_KUBERNETES_UNREACHABLE', `the kubeconfig has no cluster for context "${kc.getCurrentContext()}"; set kubernetes.kubeconfig and kubernetes.context in ${loaded.path}`);
  }
  return kc;
}
