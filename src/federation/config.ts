import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Type, type Static } from '../core/typebox.js';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { IsthmusError } from '../core/errors.js';
import type { EtcdTlsFiles } from './etcd-tls.js';
import { pathError } from '../core/user-paths.js';
import { dnsLabelPattern } from '../core/names.js';
import { durationPattern, parseDuration, validate } from '../core/validate.js';
import { ListenerTlsSchema } from '../core/tls-files.js';

const label = (description: string) => Type.String({ pattern: dnsLabelPattern, description });
const hostPort = Type.String({ pattern: '^[^:\\s]+:[0-9]{1,5}$', description: 'host:port' });
const duration = (dflt: string, description: string) =>
  Type.String({ pattern: durationPattern, default: dflt, description });

const Instance = Type.Object({
  address: hostPort,
  zone: Type.Optional(label('a zone of this cluster')),
}, { additionalProperties: false });

const Service = Type.Object({
  name: label('service name'),
  namespace: Type.String({ pattern: dnsLabelPattern, default: 'default', description: 'namespace' }),
  serviceAccount: Type.Optional(label('service account; defaults to the service name')),
  ports: Type.Array(Type.Object({
    port: Type.Integer({ minimum: 1, maximum: 65535 }),
    protocol: Type.Union([Type.Literal('http'), Type.Literal('tcp')], { default: 'http' }),
    name: Type.Optional(Type.String()),
  }, { additionalProperties: false }), { default: [{ port: 8080, protocol: 'http' }] }),
  instances: Type.Array(Instance, { default: [] }),
}, { additionalProperties: false });

/** One east-west gateway of this cluster: `isthmus gateway --config <this file> --id <id>` runs it. */
const Gateway = Type.Object({
  id: label('gateway id'),
  address: Type.String({ pattern: '^[^:\\s]+:[0-9]{1,5}$', description: 'host:port the gateway listens on for TLS (default port 15443)' }),
  advertise: Type.Optional(Type.String({ pattern: '^[^:\\s]+:[0-9]{1,5}$', description: 'host:port other clusters dial, published in the gateway\'s record, when it differs from address (a load balancer or NAT in front of the gateway)' })),
  admin: Type.Optional(Type.String({ pattern: '^[^:\\s]+:[0-9]{1,5}$', description: 'host:port of /healthz, /readyz, /metrics, /stats and /debug/connections (default: port 15021 on loopback: the gateway host if it is a loopback address, else 127.0.0.1)' })),
  adminTls: Type.Optional(ListenerTlsSchema),
  zone: Type.Optional(label('zone')),
  clientHelloTimeout: duration('5s', 'a connection whose ClientHello has not arrived by then is refused'),
  connectTimeout: duration('2s', 'how long to wait for a local endpoint to accept'),
  drainTimeout: duration('5s', 'on SIGTERM or SIGINT the gateway withdraws its record and lets the connections it carries end; those still open after this long are closed (0s: at once)'),
  tokenFile: Type.Optional(Type.String({ description: 'a projected ServiceAccount token (Kubernetes) the gateway buys its certificate with, by CSR; absent: it makes its own from the CA key in caDir (relative to this file)' })),
  relay: Type.Union([Type.Literal('native'), Type.Literal('node')], { default: 'native', description: 'what copies the bytes of a routed connection: native (a thread of the native module dist/native/relay.node; the gateway falls back to node, and says so, where it was not built) or node (JavaScript on the main thread)' }),
}, { additionalProperties: false });

/** `platform: kubernetes`: where the adapter finds the API server and what it watches (docs/config.md). */
const Kubernetes = Type.Object({
  kubeconfig: Type.Optional(Type.String({ description: 'kubeconfig file (relative to this file); absent: in-cluster (the pod\'s ServiceAccount), else $KUBECONFIG or ~/.kube/config' })),
  context: Type.Optional(Type.String({ description: 'kubeconfig context; absent: its current-context' })),
  namespaces: Type.Array(Type.String({ pattern: dnsLabelPattern }), { default: [], description: 'namespaces whose Services, EndpointSlices, Pods and ServiceExports are watched; empty: all (a namespace labelled isthmus.dev/mesh: disabled is left out either way)' }),
  requireMeshLabel: Type.Boolean({ default: false, description: 'only namespaces labelled isthmus.dev/mesh: enabled are in the mesh; else every namespace not labelled disabled' }),
  tokenAudience: Type.String({ default: 'isthmus', description: 'audience a workload\'s projected ServiceAccount token must carry (TokenReview)' }),
  gatewayServiceAccount: Type.Optional(Type.String({ pattern: '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?/[a-z0-9]([-.a-z0-9]{0,251}[a-z0-9])?$', description: '<namespace>/<name> of the gateways\' ServiceAccount: its token buys the gateway identity, not a workload one' })),
}, { additionalProperties: false, default: {} });

/** The cluster config file that `isthmus join` writes and `isthmus federation --config` reads. */
export const ClusterConfigSchema = Type.Object({
  cluster: label('cluster name'),
  region: label('region'),
  zones: Type.Array(label('zone'), { minItems: 1 }),
  trustDomain: Type.String({ pattern: '^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$', description: 'trust domain, a DNS name' }),
  etcd: Type.Object({
    endpoints: Type.Array(Type.String({ pattern: '^https?://' }), { minItems: 1 }),
    ca: Type.Optional(Type.String({ minLength: 1, description: 'CA certificate that signed etcd\'s server certificate (relative to this file); default: Node\'s public CAs and NODE_EXTRA_CA_CERTS' })),
    cert: Type.Optional(Type.String({ minLength: 1, description: 'client certificate this cluster\'s federation presents to etcd (relative to this file)' })),
    key: Type.Optional(Type.String({ minLength: 1, description: 'private key of cert (relative to this file)' })),
  }, { additionalProperties: false }),
  federation: Type.Object({
    host: Type.String({ default: '127.0.0.1', description: 'address to listen on (and to advertise, unless advertise is set)' }),
    advertise: Type.Optional(Type.String({ pattern: '^[^:\\s]+:[0-9]{1,5}$', description: 'host:port others reach the API at, when it differs from host:apiPort' })),
    apiPort: Type.Integer({ minimum: 0, maximum: 65535, default: 15010 }),
    dashboardPort: Type.Integer({ minimum: 0, maximum: 65535, default: 15014 }),
    dashboardReads: Type.Union([Type.Literal('operator'), Type.Literal('public')], {
      default: 'operator',
      description: 'who may read the dashboard\'s /api/ data: operators only (an operator token), or anyone who reaches the port; /api/sidecars always needs an operator',
    }),
    dashboardTls: Type.Optional(ListenerTlsSchema),
    leaseTtl: duration('15s', 'TTL of the cluster lease; its records vanish this long after the federation dies'),
    onStop: Type.Union([Type.Literal('withdraw'), Type.Literal('keep')], {
      default: 'withdraw',
      description: 'on a graceful stop: withdraw (revoke the lease, so other clusters drop this cluster\'s exports at once) or keep (leave the lease to expire after leaseTtl, so a federation that replaces this one within it takes its records over and nobody sees them vanish: pod updates)',
    }),
    healthCheckInterval: duration('2s', 'how often local instances are probed'),
    probeInterval: duration('5s', 'how often every other cluster\'s gateways are probed (TLS round trip to their federation)'),
  }, { additionalProperties: false, default: {} }),
  certificates: Type.Object({
    workloadTtl: duration('24h', 'lifetime of workload certificates'),
    caDir: Type.String({ default: '.', description: 'directory with ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem (relative to this file)' }),
  }, { additionalProperties: false, default: {} }),
  gateways: Type.Array(Gateway, { default: [] }),
  platform: Type.Union([Type.Literal('local'), Type.Literal('kubernetes')], { default: 'local', description: 'where workloads come from' }),
  kubernetes: Kubernetes,
  services: Type.Array(Service, { default: [] }),
}, { additionalProperties: false });

export type ClusterConfig = Static<typeof ClusterConfigSchema>;
export type ServiceConfig = Static<typeof Service>;

/** A validated config plus the values derived from it once (paths resolved, durations in seconds). */
export interface LoadedClusterConfig {
  config: Readonly<ClusterConfig>;
  path: string;
  /** The directory that holds the config: registry and token files live beside it. */
  dir: string;
  caDir: string;
  /** etcd.ca, etcd.cert and etcd.key resolved against the config's directory. */
  etcdTls: EtcdTlsFiles;
  leaseTtlSeconds: number;
  workloadTtlSeconds: number;
  healthCheckIntervalMs: number;
  probeIntervalMs: number;
  /** `kubernetes.kubeconfig` resolved against the config's directory; undefined when not set. */
  kubeconfigPath: string | undefined;
}

export function parseClusterConfig(text: string, path: string): LoadedClusterConfig {
  let raw: unknown;
  try {
    raw = parseYaml(text, { logLevel: 'error' });
  } catch (err) {
    const where = err instanceof YAMLParseError && err.linePos ? ` at line ${err.linePos[0].line}` : '';
    throw new IsthmusError('ISTHMUS_ERR_CONFIG_UNREADABLE', `${path} is not valid YAML${where}: ${(err as Error).message.split('\n')[0]}`, { cause: err });
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `${path} must be a YAML mapping with at least cluster, region, zones, trustDomain and etcd (see docs/config.md)`);
  }
  const config = validate(ClusterConfigSchema, raw, path);
  for (const service of config.services) {
    for (const instance of service.instances) {
      if (instance.zone !== undefined && !config.zones.includes(instance.zone)) {
        throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `${path} is not valid:\n  /services/${service.name}/instances: zone "${instance.zone}" is not one of this cluster's zones (${config.zones.join(', ')})`);
      }
    }
  }
  const dir = dirname(resolve(path));
  return {
    config,
    path: resolve(path),
    dir,
    caDir: resolve(dir, config.certificates.caDir),
    etcdTls: {
      ...(config.etcd.ca ? { ca: resolve(dir, config.etcd.ca) } : {}),
      ...(config.etcd.cert ? { cert: resolve(dir, config.etcd.cert) } : {}),
      ...(config.etcd.key ? { key: resolve(dir, config.etcd.key) } : {}),
    },
    leaseTtlSeconds: parseDuration(config.federation.leaseTtl),
    workloadTtlSeconds: parseDuration(config.certificates.workloadTtl),
    healthCheckIntervalMs: parseDuration(config.federation.healthCheckInterval) * 1000,
    probeIntervalMs: parseDuration(config.federation.probeInterval) * 1000,
    kubeconfigPath: config.kubernetes.kubeconfig === undefined ? undefined : resolve(dir, config.kubernetes.kubeconfig),
  };
}

export function loadClusterConfig(path: string): LoadedClusterConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const refused = pathError(err, resolve(path), 'read-file', 'the cluster config');
    throw new IsthmusError(refused.code, `${refused.message} Pass the cluster.yaml that \`isthmus join\` wrote in its --out directory.`, { cause: err });
  }
  return parseClusterConfig(text, path);
}
