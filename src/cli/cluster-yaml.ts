/**
 * The cluster.yaml a join writes, from plain data (no I/O). Two forms: a directory join's, run on
 * a host with the files beside it; and a join into a Kubernetes cluster's, run in the pods of
 * deploy/multi-cluster/base/, where the paths are those the pods mount (control-plane-objects.ts).
 */
import { stringify } from 'yaml';
import { defaultTokenAudience } from '../inject/sidecar-spec.js';
import { controlPlane, etcdFilesInPod, gatewayPod } from './control-plane-objects.js';

export interface ClusterYamlInput {
  cluster: string;
  region: string;
  zones: string[];
  trustDomain: string;
  etcdEndpoints: string[];
  /** etcd's CA and the federation's client certificate and key, as paths on this host. */
  etcdFiles: { ca?: string; cert?: string; key?: string };
  federation: { host: string; advertise?: string | undefined; apiPort: number; dashboardPort: number; leaseTtl: string };
  /** The gateways' addresses other clusters dial. */
  gateways: string[];
  /** Written into a Kubernetes cluster (`join --kubeconfig`). */
  inCluster: boolean;
}

export function clusterYaml(input: ClusterYamlInput): string {
  const { inCluster } = input;
  const zone = input.zones[0];
  const config = {
    cluster: input.cluster,
    region: input.region,
    zones: input.zones,
    trustDomain: input.trustDomain,
    // In a pod, etcd's files are Secret isthmus-etcd-client's, projected beside cluster.yaml.
    etcd: {
      endpoints: input.etcdEndpoints,
      ...(inCluster ? Object.fromEntries(Object.keys(input.etcdFiles).map((which) => [which, etcdFilesInPod[which as keyof typeof etcdFilesInPod]])) : input.etcdFiles),
    },
    federation: {
      host: input.federation.host,
      ...(input.federation.advertise ? { advertise: input.federation.advertise } : {}),
      apiPort: input.federation.apiPort, dashboardPort: input.federation.dashboardPort, leaseTtl: input.federation.leaseTtl,
      // A federation pod stops for an update far more often than for good: the next one takes its records over.
      ...(inCluster ? { onStop: 'keep' } : {}),
    },
    certificates: { workloadTtl: '24h', caDir: '.' },
    gateways: input.gateways.map((address, i) => (inCluster
      // A gateway pod cannot bind the address other clusters dial (a node's or a load balancer's):
      // it listens on the pod's, advertises that one, serves its probes on every pod address, and
      // buys its certificate with its ServiceAccount token: it never holds the CA key.
      ? { id: `gw-${i + 1}`, address: gatewayPod.listen, advertise: address, zone, admin: gatewayPod.admin, tokenFile: gatewayPod.tokenFile }
      : { id: `gw-${i + 1}`, address, zone })),
    ...(inCluster
      ? {
        platform: 'kubernetes',
        kubernetes: { tokenAudience: defaultTokenAudience, gatewayServiceAccount: `${controlPlane.namespace}/${controlPlane.gatewayServiceAccount}` },
      }
      : {}),
    services: [],
  };
  if (inCluster) {
    return `# Written by \`isthmus join --kubeconfig\` into ConfigMap ${controlPlane.configMap}. Services come from the\n# cluster's Services and ServiceExports (platform: kubernetes, docs/kubernetes.md).\n${stringify(config)}`;
  }
  return `# Written by \`isthmus join\`. Services of the local platform go under services:, e.g.\n#   services:\n#     - name: hello\n#       namespace: demo\n#       ports: [{ port: 8080, protocol: http }]\n#       instances: [{ address: "127.0.0.1:8080", zone: ${zone} }]\n${stringify(config)}`;
}
