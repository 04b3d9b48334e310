import { silentLogger } from '../../src/core/log.js';
import { parseClusterConfig } from '../../src/federation/config.js';
import { KubernetesPlatform } from '../../src/federation/kubernetes/kube-platform.js';
import type { FakeKubeApiServer } from './fake-kube-api-server.js';

/**
 * The `kubernetes` platform of a cluster "east" (zone a) whose API server is `fake`, as a
 * federation would make it from cluster.yaml. `kubernetes` is more of that section, indented
 * two spaces (`  namespaces: [shop]`). No etcd: the mesh's side is what a test hands meshChanged.
 */
export function testKubePlatform(fake: FakeKubeApiServer, kubernetes = ''): KubernetesPlatform {
  const loaded = parseClusterConfig(`cluster: east
region: us
zones: [a]
trustDomain: mesh.test
etcd: { endpoints: ["http://127.0.0.1:1"] }
platform: kubernetes
kubernetes:
  kubeconfig: ${fake.writeKubeconfig()}
${kubernetes}`, '/tmp/east/cluster.yaml');
  return new KubernetesPlatform(loaded, silentLogger);
}
