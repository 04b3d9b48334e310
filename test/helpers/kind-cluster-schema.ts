import { Type } from '../../src/core/typebox.js';

/*
 * kind's cluster config, kind.x-k8s.io/v1alpha4 `Cluster`, as kind's Go types define it
 * (pkg/apis/config/v1alpha4/types.go in sigs.k8s.io/kind). kind publishes no JSON schema and no
 * npm package carries one, so this is written by hand from those types. kind decodes the file
 * strictly (an unknown field is an error), hence `additionalProperties: false` throughout.
 */

const strict = { additionalProperties: false } as const;
const patchesJson6902 = Type.Array(Type.Object({
  group: Type.String(), version: Type.String(), kind: Type.String(), patch: Type.String(),
}, strict));

const Mount = Type.Object({
  containerPath: Type.String(),
  hostPath: Type.String(),
  readOnly: Type.Optional(Type.Boolean()),
  selinuxRelabel: Type.Optional(Type.Boolean()),
  propagation: Type.Optional(Type.Union([Type.Literal('None'), Type.Literal('HostToContainer'), Type.Literal('Bidirectional')])),
}, strict);

const PortMapping = Type.Object({
  containerPort: Type.Integer({ minimum: 1, maximum: 65535 }),
  hostPort: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535 })),
  listenAddress: Type.Optional(Type.String()),
  protocol: Type.Optional(Type.Union([Type.Literal('TCP'), Type.Literal('UDP'), Type.Literal('SCTP')])),
}, strict);

const Node = Type.Object({
  role: Type.Union([Type.Literal('control-plane'), Type.Literal('worker')]),
  image: Type.Optional(Type.String()),
  labels: Type.Optional(Type.Record(Type.String(), Type.String())),
  extraMounts: Type.Optional(Type.Array(Mount)),
  extraPortMappings: Type.Optional(Type.Array(PortMapping)),
  kubeadmConfigPatches: Type.Optional(Type.Array(Type.String())),
  kubeadmConfigPatchesJSON6902: Type.Optional(patchesJson6902),
}, strict);

const Networking = Type.Object({
  ipFamily: Type.Optional(Type.Union([Type.Literal('ipv4'), Type.Literal('ipv6'), Type.Literal('dual')])),
  apiServerPort: Type.Optional(Type.Integer({ minimum: -1, maximum: 65535 })),
  apiServerAddress: Type.Optional(Type.String()),
  podSubnet: Type.Optional(Type.String()),
  serviceSubnet: Type.Optional(Type.String()),
  disableDefaultCNI: Type.Optional(Type.Boolean()),
  kubeProxyMode: Type.Optional(Type.Union([Type.Literal('iptables'), Type.Literal('ipvs'), Type.Literal('nftables'), Type.Literal('none')])),
  dnsSearch: Type.Optional(Type.Array(Type.String())),
}, strict);

export const KindClusterSchema = Type.Object({
  kind: Type.Literal('Cluster'),
  apiVersion: Type.Literal('kind.x-k8s.io/v1alpha4'),
  name: Type.Optional(Type.String({ pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$' })),
  featureGates: Type.Optional(Type.Record(Type.String(), Type.Boolean())),
  runtimeConfig: Type.Optional(Type.Record(Type.String(), Type.String())),
  networking: Type.Optional(Networking),
  nodes: Type.Optional(Type.Array(Node, { minItems: 1 })),
  kubeadmConfigPatches: Type.Optional(Type.Array(Type.String())),
  kubeadmConfigPatchesJSON6902: Type.Optional(patchesJson6902),
  containerdConfigPatches: Type.Optional(Type.Array(Type.String())),
  containerdConfigPatchesJSON6902: Type.Optional(Type.Array(Type.String())),
}, strict);

/*
 * kustomize's `kustomization.yaml` (kustomize.config.k8s.io/v1beta1 Kustomization), only the
 * fields deploy/ uses, as kustomize's api/types defines them; kustomize reads it strictly too.
 * Not an API object: no server and no OpenAPI document knows it.
 */
const Generator = Type.Object({
  name: Type.String(),
  namespace: Type.Optional(Type.String()),
  behavior: Type.Optional(Type.Union([Type.Literal('create'), Type.Literal('replace'), Type.Literal('merge')])),
  files: Type.Optional(Type.Array(Type.String())),
  literals: Type.Optional(Type.Array(Type.String())),
  envs: Type.Optional(Type.Array(Type.String())),
  type: Type.Optional(Type.String()),
}, strict);

export const KustomizationSchema = Type.Object({
  apiVersion: Type.Literal('kustomize.config.k8s.io/v1beta1'),
  kind: Type.Literal('Kustomization'),
  namespace: Type.Optional(Type.String()),
  resources: Type.Optional(Type.Array(Type.String())),
  generatorOptions: Type.Optional(Type.Object({
    disableNameSuffixHash: Type.Optional(Type.Boolean()),
    labels: Type.Optional(Type.Record(Type.String(), Type.String())),
    annotations: Type.Optional(Type.Record(Type.String(), Type.String())),
  }, strict)),
  configMapGenerator: Type.Optional(Type.Array(Generator)),
  secretGenerator: Type.Optional(Type.Array(Generator)),
  labels: Type.Optional(Type.Array(Type.Object({
    pairs: Type.Record(Type.String(), Type.String()),
    includeSelectors: Type.Optional(Type.Boolean()),
    includeTemplates: Type.Optional(Type.Boolean()),
  }, strict))),
  patches: Type.Optional(Type.Array(Type.Object({
    path: Type.Optional(Type.String()),
    patch: Type.Optional(Type.String()),
    target: Type.Optional(Type.Record(Type.String(), Type.String())),
  }, strict))),
}, strict);
