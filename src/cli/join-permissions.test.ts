import { describe, expect, test } from 'vitest';
import { describePermission, grantHint, readPermissions, writePermissions, type SeenObjects } from './join-permissions.js';

const secrets = ['isthmus-cluster-ca', 'isthmus-etcd-client'];
const all = ['Secret isthmus-cluster-ca', 'Secret isthmus-etcd-client', 'ConfigMap isthmus-cluster'];
const described = (seen: SeenObjects, force: boolean) => writePermissions(seen, secrets, force).map(describePermission);

describe('the permissions join --kubeconfig asks for before writing', () => {
  test('reads: the namespace at the cluster scope, each Secret and the ConfigMap by name in isthmus-system', () => {
    expect(readPermissions(secrets).map(describePermission)).toEqual([
      'get namespaces "isthmus-system" at the cluster scope',
      'get secrets "isthmus-cluster-ca" in namespace isthmus-system',
      'get secrets "isthmus-etcd-client" in namespace isthmus-system',
      'get configmaps "isthmus-cluster" in namespace isthmus-system',
    ]);
  });

  test.each([
    ['a first join: the namespace and every object created', { namespace: false, found: [], unread: [] }, false,
      ['create namespaces at the cluster scope', 'create secrets in namespace isthmus-system', 'create configmaps in namespace isthmus-system']],
    ['the namespace is there (made by kubectl): no right on namespaces beyond get', { namespace: true, found: [], unread: [] }, false,
      ['create secrets in namespace isthmus-system', 'create configmaps in namespace isthmus-system']],
    ['a --force join over an earlier one: updates, by name, and no creates', { namespace: true, found: all, unread: [] }, true,
      ['update secrets "isthmus-cluster-ca" in namespace isthmus-system', 'update secrets "isthmus-etcd-client" in namespace isthmus-system', 'update configmaps "isthmus-cluster" in namespace isthmus-system']],
    ['an earlier join without --force: nothing to write (the check refuses on what is there)', { namespace: true, found: all, unread: [] }, false, []],
    ['half of an earlier join with --force: create what is missing, update what is there', { namespace: true, found: ['Secret isthmus-cluster-ca'], unread: [] }, true,
      ['update secrets "isthmus-cluster-ca" in namespace isthmus-system', 'create secrets in namespace isthmus-system', 'create configmaps in namespace isthmus-system']],
    ['unreadable namespace and ConfigMap with --force: both writes it may need', { namespace: undefined, found: [], unread: ['ConfigMap isthmus-cluster'] }, true,
      ['create namespaces at the cluster scope', 'create secrets in namespace isthmus-system', 'create configmaps in namespace isthmus-system', 'update configmaps "isthmus-cluster" in namespace isthmus-system']],
  ] as const)('%s', (_name, seen, force, expected) => {
    expect(described({ ...seen, found: [...seen.found], unread: [...seen.unread] }, force)).toEqual(expected);
  });

  test('the hint groups what is missing into the ClusterRole and Role rules that grant it', () => {
    const missing = [...readPermissions(secrets).slice(0, 2), ...writePermissions({ namespace: false, found: [], unread: [] }, secrets, false)];
    expect(grantHint(missing)).toBe('a ClusterRole with {apiGroups: [""], resources: [namespaces], verbs: [get, create]} and a Role in isthmus-system with {apiGroups: [""], resources: [secrets], verbs: [get, create]}, {apiGroups: [""], resources: [configmaps], verbs: [create]}');
  });
});
