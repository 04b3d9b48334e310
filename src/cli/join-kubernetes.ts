/**
 * The Kubernetes side of `isthmus join --kubeconfig`: reach the cluster through a kubeconfig
 * context, see what an earlier join left there, and write the namespace, Secrets and ConfigMap.
 * Every refusal is told as what to grant or fix (RBAC verb, resource, namespace; context names).
 */
import { resolve } from 'node:path';
import { AuthorizationV1Api, CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { describeError, IsthmusError } from '../core/errors.js';
import { statusOf } from '../federation/kubernetes/kube-watch.js';
import { controlPlane, type ClusterObjects } from './control-plane-objects.js';
import { describePermission, grantHint, objectLabels, readPermissions, writePermissions, type Permission, type SeenObjects } from './join-permissions.js';
import type { CheckResult } from './preflight.js';

type Kind = 'secrets' | 'configmaps' | 'namespaces' | 'selfsubjectaccessreviews';
const kindName: Record<Kind, string> = { secrets: 'Secret', configmaps: 'ConfigMap', namespaces: 'Namespace', selfsubjectaccessreviews: 'SelfSubjectAccessReview' };
const labels = { 'app.kubernetes.io/part-of': 'isthmus' };

/** One cluster's API, as a kubeconfig context reaches it. */
export class ClusterTarget {
  private constructor(private readonly core: CoreV1Api, private readonly authorization: AuthorizationV1Api, readonly kubeconfig: string, readonly context: string, readonly server: string) {}

  /**
   * Loads the kubeconfig and picks the context (the file's current-context when none is named).
   * Throws ISTHMUS_ERR_CONFIG_INVALID naming the file, or the context and the ones there are.
   */
  static open(kubeconfig: string, context: string | undefined): ClusterTarget {
    const file = resolve(kubeconfig);
    const kc = new KubeConfig();
    try {
      kc.loadFromFile(file);
    } catch (err) {
      throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `could not load the kubeconfig ${file}: ${describeError(err).split('\n')[0]}; point --kubeconfig at the file kubectl uses (kind writes ~/.kube/config)`, { cause: err });
    }
    const names = kc.getContexts().map((c) => c.name);
    const wanted = context ?? kc.getCurrentContext();
    if (!wanted || !kc.getContextObject(wanted)) {
      const known = names.length > 0 ? `it has ${names.join(', ')}` : 'it has none';
      throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', context
        ? `the kubeconfig ${file} has no context "${context}" (${known}); name one of those with --context`
        : `the kubeconfig ${file} has no current-context (${known}); name one with --context`);
    }
    kc.setCurrentContext(wanted);
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `context "${wanted}" of the kubeconfig ${file} names no cluster that the file defines; fix the file or pick another --context`);
    return new ClusterTarget(kc.makeApiClient(CoreV1Api), kc.makeApiClient(AuthorizationV1Api), file, wanted, cluster.server);
  }

  /**
   * The permissions the context's user lacks, asked of the API server one SelfSubjectAccessReview
   * each (what `kubectl auth can-i` does), so nothing needs to be tried, and nothing written, to know.
   */
  async missing(permissions: readonly Permission[]): Promise<Permission[]> {
    const missing: Permission[] = [];
    for (const p of permissions) {
      const review = await this.call('create', 'selfsubjectaccessreviews', describePermission(p), () => this.authorization.createSelfSubjectAccessReview({
        body: {
          apiVersion: 'authorization.k8s.io/v1', kind: 'SelfSubjectAccessReview',
          spec: { resourceAttributes: { verb: p.verb, group: '', resource: p.resource, ...(p.namespace ? { namespace: p.namespace } : {}), ...(p.name && p.verb !== 'create' ? { name: p.name } : {}) } },
        },
      }));
      if (review?.status?.allowed !== true) missing.push(p);
    }
    return missing;
  }

  /**
   * Which of the objects join writes exist already (`Secret isthmus-cluster-ca`, …), and whether
   * the namespace does; what `unreadable` names (reads the user lacks) is reported unread.
   */
  async existing(secrets: readonly string[], unreadable: readonly Permission[] = []): Promise<SeenObjects> {
    const denied = (resource: string, name: string) => unreadable.some((p) => p.resource === resource && p.name === name);
    const namespace = denied('namespaces', controlPlane.namespace) ? undefined : await this.read('namespaces', controlPlane.namespace) !== undefined;
    const found: string[] = [];
    const unread: string[] = [];
    // Read even where the namespace is missing: the API server answers 404 for the object.
    for (const { label, resource, name } of objectLabels(secrets)) {
      if (denied(resource, name)) unread.push(label);
      else if (await this.read(resource, name)) found.push(label);
    }
    return { namespace, found, unread };
  }

  /**
   * Creates the namespace when absent, then the Secrets and the ConfigMap; with `replace`, an
   * existing one is replaced (at the resourceVersion just read, so a concurrent writer is
   * noticed), else it is ISTHMUS_ERR_KUBERNETES_CONFLICT. Returns what was written.
   */
  async write(objects: ClusterObjects, replace: boolean): Promise<string[]> {
    const written: string[] = [];
    if (!(await this.read('namespaces', controlPlane.namespace))) {
      await this.call('create', 'namespaces', controlPlane.namespace, () => this.core.createNamespace({ body: { metadata: { name: controlPlane.namespace, labels } } }), true);
      written.push(`Namespace ${controlPlane.namespace}`);
    }
    const namespace = controlPlane.namespace;
    for (const secret of objects.secrets) {
      const body = { apiVersion: 'v1', kind: 'Secret', type: 'Opaque', metadata: { name: secret.name, namespace, labels }, data: base64(secret.data) };
      await this.put('secrets', secret.name, replace,
        () => this.core.createNamespacedSecret({ namespace, body }),
        (resourceVersion) => this.core.replaceNamespacedSecret({ namespace, name: secret.name, body: { ...body, metadata: { ...body.metadata, resourceVersion } } }));
      written.push(`Secret ${secret.name}`);
    }
    const body = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: controlPlane.configMap, namespace, labels }, data: objects.configMap };
    await this.put('configmaps', controlPlane.configMap, replace,
      () => this.core.createNamespacedConfigMap({ namespace, body }),
      (resourceVersion) => this.core.replaceNamespacedConfigMap({ namespace, name: controlPlane.configMap, body: { ...body, metadata: { ...body.metadata, resourceVersion } } }));
    written.push(`ConfigMap ${controlPlane.configMap}`);
    return written;
  }

  private async put(kind: 'secrets' | 'configmaps', name: string, replace: boolean, create: () => Promise<unknown>, update: (resourceVersion: string) => Promise<unknown>): Promise<void> {
    const current = await this.read(kind, name);
    if (!current) return void await this.call('create', kind, name, create);
    if (!replace) throw this.conflict(kind, name, 'exists already');
    await this.call('update', kind, name, () => update(current.resourceVersion));
  }

  /** The object's resourceVersion, or undefined when it does not exist. */
  private async read(kind: Kind, name: string): Promise<{ resourceVersion: string } | undefined> {
    try {
      const object = await this.call('get', kind, name, () => (kind === 'namespaces'
        ? this.core.readNamespace({ name })
        : kind === 'secrets' ? this.core.readNamespacedSecret({ namespace: controlPlane.namespace, name }) : this.core.readNamespacedConfigMap({ namespace: controlPlane.namespace, name })));
      return { resourceVersion: (object as { metadata?: { resourceVersion?: string } }).metadata?.resourceVersion ?? '' };
    } catch (err) {
      if (statusOf((err as IsthmusError).cause) === 404) return undefined;
      throw err;
    }
  }

  /** One request, its failure told in join's words: which verb, resource and namespace, and what to do. */
  private async call<T>(verb: string, kind: Kind, name: string, request: () => Promise<T>, existsIsFine = false): Promise<T | undefined> {
    try {
      return await request();
    } catch (err) {
      const status = statusOf(err);
      if (status === 409 && existsIsFine) return undefined;
      const where = kind === 'namespaces' || kind === 'selfsubjectaccessreviews' ? 'at the cluster scope' : `in namespace ${controlPlane.namespace}`;
      if (status === 403) {
        throw new IsthmusError('ISTHMUS_ERR_KUBERNETES_FORBIDDEN', `context "${this.context}" may not ${verb} ${kind} ${where} (${kubeMessage(err)}); grant its user RBAC verb "${verb}" on resource "${kind}" (apiGroups [""]) ${where}, or use a context with more rights`, { cause: err });
      }
      if (status === 409) throw this.conflict(kind, name, 'changed while join was writing it', err);
      if (status === 401) {
        throw new IsthmusError('ISTHMUS_ERR_KUBERNETES_UNREACHABLE', `the Kubernetes API server ${this.server} did not accept the credentials of context "${this.context}" (401); log in again (refresh the kubeconfig) or pick another --context`, { cause: err });
      }
      if (status === undefined) {
        throw new IsthmusError('ISTHMUS_ERR_KUBERNETES_UNREACHABLE', `could not reach the Kubernetes API server ${this.server} of context "${this.context}" (${describeError(err).split('\n')[0]}); check that the cluster runs and that --kubeconfig and --context name it`, { cause: err });
      }
      throw new IsthmusError('ISTHMUS_ERR_KUBERNETES_UNREACHABLE', `the Kubernetes API server ${this.server} answered ${verb} ${kindName[kind]} ${name} with ${status} (${kubeMessage(err)})`, { cause: err });
    }
  }

  private conflict(kind: Kind, name: string, what: string, cause?: unknown): IsthmusError {
    return new IsthmusError('ISTHMUS_ERR_KUBERNETES_CONFLICT', `${kindName[kind]} ${name} in namespace ${controlPlane.namespace} ${what}; run the join again, with --force to replace it`, cause === undefined ? {} : { cause });
  }
}

/**
 * The preflight check of a join into a cluster: reachable, allowed every request the join will
 * make (all missing permissions at once, in `missing`), and what is there already.
 */
export async function clusterCheck(target: ClusterTarget, secrets: readonly string[], force: boolean): Promise<{ result: Omit<CheckResult, 'name'>; missing: Permission[] }> {
  const failed = (err: unknown) => ({ result: { status: 'failed' as const, detail: describeError(err), hint: `check \`kubectl --context ${target.context} get ns\`` }, missing: [] });
  let missing: Permission[];
  let seen: SeenObjects;
  try {
    missing = await target.missing(readPermissions(secrets));
    // What may be read is read; the writes asked about follow from it (an unread object may need either).
    seen = await target.existing(secrets, missing);
    missing.push(...await target.missing(writePermissions(seen, secrets, force)));
  } catch (err) {
    return failed(err);
  }
  const where = `context ${target.context} (${target.server})`;
  if (missing.length > 0) {
    return {
      result: {
        status: 'failed',
        detail: `${where}: its user may not ${missing.map(describePermission).join('; ')}`,
        hint: `grant them (${grantHint(missing)}), or use a context with more rights; \`kubectl --context ${target.context} auth can-i <verb> <resource> -n ${controlPlane.namespace}\` checks one`,
      },
      missing,
    };
  }
  const found = seen;
  const ok = (result: Omit<CheckResult, 'name'>) => ({ result, missing });
  if (!found.namespace) return ok({ status: 'ok', detail: `${where}: namespace ${controlPlane.namespace} will be created` });
  if (found.found.length === 0) return ok({ status: 'ok', detail: `${where}: nothing of an earlier join in ${controlPlane.namespace}` });
  const detail = `${where}: ${found.found.join(', ')} in ${controlPlane.namespace} from an earlier join`;
  if (force) return ok({ status: 'warn', detail: `${detail}; --force replaces them`, hint: `restart the Deployments afterwards: kubectl --context ${target.context} -n ${controlPlane.namespace} rollout restart deploy` });
  return ok({ status: 'failed', detail, hint: 'pass --force to replace them (the cluster gets a new intermediate CA)' });
}

function base64(data: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v, 'utf8').toString('base64')]));
}

/** The Status message of a refused request (client-node's ApiException carries the body, as text or parsed). */
function kubeMessage(err: unknown): string {
  const body = (err as { body?: unknown }).body;
  let parsed: unknown = body;
  if (typeof body === 'string') {
    try {
      parsed = JSON.parse(body);
    } catch {
      return body.slice(0, 200);
    }
  }
  const message = (parsed as { message?: unknown } | undefined)?.message;
  return typeof message === 'string' ? message : describeError(err).split('\n')[0] ?? '';
}
