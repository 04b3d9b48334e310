/**
 * The RBAC permissions `isthmus join --kubeconfig` uses, as plain data (no I/O): join asks the
 * API server about each (SelfSubjectAccessReview) before it writes anything, and refuses with
 * every missing one named, so a user fixes their Role once rather than once per failed write.
 */
import { controlPlane } from './control-plane-objects.js';

/** One request join makes: a verb on a core-group resource, in isthmus-system or at the cluster scope (namespaces). */
export interface Permission {
  verb: 'get' | 'create' | 'update';
  resource: 'namespaces' | 'secrets' | 'configmaps';
  /** undefined: the cluster scope. */
  namespace?: string | undefined;
  /** The object, for verbs that name one (an RBAC rule may list resourceNames). */
  name?: string | undefined;
}

/**
 * What join finds in the cluster before writing: whether the namespace exists (undefined: not
 * allowed to read it), the objects there (`Secret isthmus-cluster-ca`, …) and those it may not read.
 */
export interface SeenObjects { namespace: boolean | undefined; found: string[]; unread: string[] }

const ns = controlPlane.namespace;
/** The objects in isthmus-system join writes, as `seen` names them (`Secret isthmus-cluster-ca`, `ConfigMap isthmus-cluster`). */
export function objectLabels(secrets: readonly string[]): { label: string; resource: 'secrets' | 'configmaps'; name: string }[] {
  return [
    ...secrets.map((name) => ({ resource: 'secrets' as const, name, label: `Secret ${name}` })),
    { resource: 'configmaps' as const, name: controlPlane.configMap, label: `ConfigMap ${controlPlane.configMap}` },
  ];
}

/** The reads of the preflight check: the namespace, then each Secret and the ConfigMap. */
export function readPermissions(secrets: readonly string[]): Permission[] {
  return [
    { verb: 'get', resource: 'namespaces', name: ns },
    ...objectLabels(secrets).map(({ resource, name }): Permission => ({ verb: 'get', resource, namespace: ns, name })),
  ];
}

/**
 * The writes of the join that follows: create the namespace unless it is known to exist, create
 * each object not known to be there and (with --force) update each that is or may be there.
 */
export function writePermissions(seen: SeenObjects, secrets: readonly string[], force: boolean): Permission[] {
  const permissions: Permission[] = [];
  if (seen.namespace !== true) permissions.push({ verb: 'create', resource: 'namespaces' });
  for (const { resource, name, label } of objectLabels(secrets)) {
    const present = seen.found.includes(label);
    const unread = seen.unread.includes(label);
    if (!present) permissions.push({ verb: 'create', resource, namespace: ns });
    if ((present || unread) && force) permissions.push({ verb: 'update', resource, namespace: ns, name });
  }
  // Several creates of one resource are one permission.
  return permissions.filter((p, i) => permissions.findIndex((q) => describePermission(q) === describePermission(p)) === i);
}

/** `create secrets in namespace isthmus-system`, `get namespaces "isthmus-system" at the cluster scope`. */
export function describePermission(p: Permission): string {
  const named = p.name !== undefined && p.verb !== 'create' ? ` "${p.name}"` : '';
  return `${p.verb} ${p.resource}${named} ${p.namespace === undefined ? 'at the cluster scope' : `in namespace ${p.namespace}`}`;
}

/** The RBAC rules that grant `missing`: a ClusterRole for the cluster scope, a Role in isthmus-system for the rest. */
export function grantHint(missing: Permission[]): string {
  const rules = (scoped: Permission[]) => [...new Set(scoped.map((p) => p.resource))]
    .map((resource) => `{apiGroups: [""], resources: [${resource}], verbs: [${[...new Set(scoped.filter((p) => p.resource === resource).map((p) => p.verb))].join(', ')}]}`);
  const cluster = rules(missing.filter((p) => p.namespace === undefined));
  const role = rules(missing.filter((p) => p.namespace !== undefined));
  return [
    ...(cluster.length > 0 ? [`a ClusterRole with ${cluster.join(', ')}`] : []),
    ...(role.length > 0 ? [`a Role in ${ns} with ${role.join(', ')}`] : []),
  ].join(' and ');
}
