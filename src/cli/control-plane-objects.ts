/**
 * `isthmus join --kubeconfig`: the cluster's CA files and cluster.yaml go into the cluster as
 * the objects `deploy/multi-cluster/base/` mounts, instead of into a directory. Names, keys and
 * paths in the pods are that folder's: change them together (test/manifests.test.ts checks that
 * every file the configs name is mounted from an object join writes).
 */
export const controlPlane = {
  namespace: 'isthmus-system',
  /** cluster.yaml, and root-cert.pem: all the gateway pods need; the CA key stays in the Secret. */
  configMap: 'isthmus-cluster',
  /** ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem: mounted by the federation only. */
  caSecret: 'isthmus-cluster-ca',
  /** ca.pem, client.pem, client-key.pem: the federation's etcd client certificate, when etcd speaks TLS. */
  etcdSecret: 'isthmus-etcd-client',
  /** The gateway pods' ServiceAccount: its projected token buys the gateway certificate (kubernetes.gatewayServiceAccount). */
  gatewayServiceAccount: 'isthmus-gateway',
} as const;

/** Where cluster.yaml names the etcd files: projected under /etc/isthmus/etcd/ beside it. */
export const etcdFilesInPod = { ca: 'etcd/ca.pem', cert: 'etcd/client.pem', key: 'etcd/client-key.pem' } as const;

/**
 * A gateway pod as `base/gateway.yaml` runs it: listening on every pod address on the container
 * ports, and buying its certificate with the projected token beside cluster.yaml (`tokenFile`,
 * relative to it), whose audience is the federation's `kubernetes.tokenAudience`.
 */
export const gatewayPod = {
  listen: '0.0.0.0:15443',
  admin: '0.0.0.0:15021',
  tokenFile: 'token',
} as const;

/** The files of a join, by the object and key the pods mount them from. */
export interface ClusterObjects {
  configMap: Record<string, string>;
  secrets: { name: string; data: Record<string, string> }[];
}

/** The CA files of a join: the intermediate, its key, the root, and the chain. */
export interface ClusterCaFiles { caCert: string; caKey: string; rootCert: string; certChain: string }

/**
 * What a join into a cluster writes, as plain data: ConfigMap isthmus-cluster (cluster.yaml and
 * the public root), Secret isthmus-cluster-ca, and Secret isthmus-etcd-client when etcd's files
 * are given (keyed by their names under etcd/ in the pod).
 */
export function clusterObjects(clusterYaml: string, ca: ClusterCaFiles, etcd: { ca?: string; cert?: string; key?: string }): ClusterObjects {
  const etcdData = Object.fromEntries(Object.entries(etcd).map(([which, pem]) => [etcdFilesInPod[which as keyof typeof etcdFilesInPod].slice('etcd/'.length), pem]));
  return {
    configMap: { 'cluster.yaml': clusterYaml, 'root-cert.pem': ca.rootCert },
    secrets: [
      { name: controlPlane.caSecret, data: { 'ca-cert.pem': ca.caCert, 'ca-key.pem': ca.caKey, 'root-cert.pem': ca.rootCert, 'cert-chain.pem': ca.certChain } },
      ...(Object.keys(etcdData).length > 0 ? [{ name: controlPlane.etcdSecret, data: etcdData }] : []),
    ],
  };
}
