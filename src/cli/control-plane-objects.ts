/**
 * `isthmus join --kubeconfig`: the cluster's CA files and cluster.yaml go into the cluster as
 * the objects `deploy/multi-cluster/base/federation.yaml` mounts, instead of into a directory.
 * Names and keys are that manifest's: change them together.
 */
export const controlPlane = {
  namespace: 'isthmus-system',
  /** cluster.yaml */
  configMap: 'isthmus-cluster',
  /** ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem */
  caSecret: 'isthmus-cluster-ca',
  /** ca.pem, client.pem, client-key.pem: the federation's etcd client certificate, when etcd speaks TLS. */
  etcdSecret: 'isthmus-etcd-client',
} as const;

/** Where cluster.yaml names the etcd files: projected under /etc/isthmus/etcd/ beside it. */
export const etcdFilesInPod = { ca: 'etcd/ca.pem', cert: 'etcd/client.pem', key: 'etcd/client-key.pem' } as const;
