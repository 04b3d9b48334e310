/*
 * What `isthmus inject` adds to a pod, as plain data; no YAML and no I/O (inject.ts splices it
 * into the user's text). Ports are the defaults of docs/architecture.md, "Contracts".
 *
 * The sidecar runs as a native sidecar (Kubernetes 1.29+): the first init container, with
 * `restartPolicy: Always`. It starts, and passes its startup probe, before the app's containers
 * and the user's own init containers, so their first calls find the proxy; it is stopped after
 * them; and a Job's pod completes when its containers do.
 *
 * Traffic reaches the sidecar through the standard proxy variables (proxy mode): no iptables,
 * so no NET_ADMIN capability and no privileged init container. An app that ignores
 * HTTP_PROXY uses a fixed listener instead (docs/sidecar.md). Capturing traffic with iptables is
 * a later mode (docs/kubernetes.md).
 */

import { meshProtocol, type MeshProtocol } from '../model/port-protocol.js';

export const sidecarName = 'isthmus-sidecar';
/** The name of the sidecar container's inbound port; the Kubernetes adapter reads it from each Pod. */
export const sidecarInboundPortName = 'isthmus-in';
export const defaultImage = 'ghcr.io/isthmus-mesh/isthmus:0.1.0';
/** The audience of the projected ServiceAccount token; the federation's TokenReview asks for it. */
export const defaultTokenAudience = 'isthmus';

const ports = { outbound: 15001, inbound: 15006, admin: 15020 };
const paths = { config: '/etc/isthmus-sidecar', token: '/var/run/secrets/isthmus', state: '/var/lib/isthmus' };
/** The ConfigMaps every injected pod of a namespace mounts (docs/kubernetes.md). */
export const namespaceConfigMaps = { sidecar: 'isthmus-sidecar', rootCert: 'isthmus-root-cert' };

export const volumeNames = ['isthmus-sidecar-config', 'isthmus-token', 'isthmus-state'] as const;

export interface InjectOptions {
  image: string;
  tokenAudience: string;
}

export interface PodFacts {
  /** The mesh service the pod serves. */
  service: string;
  /**
   * The ports the app listens on, in the order its containers declare them (TCP ones only), with
   * what each speaks (from the port's name, as for a Service port: `grpc-…` is h2c, `redis` and
   * `tcp-…` are TCP). The sidecar's inbound hands mTLS traffic to each on loopback; the first is
   * where a caller that names no port goes.
   */
  appPorts: AppPortFacts[];
  /** The pod's `isthmus.dev/access-log` annotation: where the sidecar writes its access log (`--access-log`). */
  accessLog?: string;
  /** The pod's `isthmus.dev/upgrade-to-http2: "true"` annotation (`--upgrade-to-http2`). */
  upgradeToHttp2?: boolean;
}

/** The pod annotation that turns a sidecar's access log on (docs/sidecar.md, "Access log"). */
export const accessLogAnnotation = 'isthmus.dev/access-log';
/** Where a pod's sidecar may write it: its container's log (its root file system is read-only). */
export const accessLogTargets: readonly string[] = ['/dev/stdout', '/dev/stderr'];
/** The pod annotation that sends the app's HTTP/1.1 requests to other sidecars as HTTP/2 (docs/sidecar.md, "HTTP/1.1 or HTTP/2 between sidecars"). */
export const upgradeToHttp2Annotation = 'isthmus.dev/upgrade-to-http2';

export interface AppPortFacts {
  port: number;
  protocol: MeshProtocol;
  /**
   * The ports callers name for it, when a Service of the same input selects the pod and targets
   * this container port from other ports (`port: 9000, targetPort: 9090`); absent when none does.
   */
  servicePorts?: number[];
}

/** What inject reads from a Service in the same input: whom it selects, and its ports' targets. */
export interface ServiceFacts {
  namespace?: string | undefined;
  selector: Record<string, string>;
  ports: { port: number; targetPort?: number | string | undefined; name?: string | undefined; appProtocol?: string | undefined }[];
}

/** A Service's plain object (from YAML) as ServiceFacts; undefined when it selects nothing. */
export function serviceFacts(raw: unknown): ServiceFacts | undefined {
  const obj = isObj(raw) ? raw : {};
  const metadata = isObj(obj.metadata) ? obj.metadata : {};
  const spec = isObj(obj.spec) ? obj.spec : {};
  const selector = isObj(spec.selector) ? Object.fromEntries(Object.entries(spec.selector).filter((e): e is [string, string] => typeof e[1] === 'string')) : {};
  if (Object.keys(selector).length === 0) return undefined;
  const ports = list(spec.ports).filter(isObj).flatMap((p) => {
    if (typeof p.port !== 'number' || (p.protocol ?? 'TCP') !== 'TCP') return [];
    const targetPort = typeof p.targetPort === 'number' || typeof p.targetPort === 'string' ? p.targetPort : undefined;
    return [{ port: p.port, targetPort, name: typeof p.name === 'string' ? p.name : undefined, appProtocol: typeof p.appProtocol === 'string' ? p.appProtocol : undefined }];
  });
  return { namespace: typeof metadata.namespace === 'string' ? metadata.namespace : undefined, selector, ports };
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

/**
 * The service a pod serves: its `app.kubernetes.io/name` label, else its `app` label, else the
 * workload's name (the same choice `kubectl` users make for a Service's selector).
 */
export function podFacts(workloadName: string, podLabels: unknown, podSpec: unknown, services: readonly ServiceFacts[] = [], namespace?: string): PodFacts {
  const labels = isObj(podLabels) ? podLabels : {};
  const named = labels['app.kubernetes.io/name'] ?? labels.app;
  const service = typeof named === 'string' && named !== '' ? named : workloadName;
  const spec = isObj(podSpec) ? podSpec : {};
  // Services of the same input that select this pod (same namespace when both say one).
  const selecting = services.filter((s) => (s.namespace === undefined || namespace === undefined || s.namespace === namespace)
    && Object.entries(s.selector).every(([key, value]) => labels[key] === value));
  const appPorts = new Map<number, AppPortFacts>();
  for (const p of list(spec.containers).filter(isObj).flatMap((c) => list(c.ports).filter(isObj))) {
    if ((p.protocol ?? 'TCP') !== 'TCP' || typeof p.containerPort !== 'number' || appPorts.has(p.containerPort)) continue;
    const name = typeof p.name === 'string' ? p.name : undefined;
    const containerPort = p.containerPort;
    // As the endpoints controller resolves targetPort: a number, or the container port's name; absent, the Service port.
    const targeting = selecting.flatMap((s) => s.ports).filter((sp) => (sp.targetPort ?? sp.port) === containerPort || (name !== undefined && sp.targetPort === name));
    const servicePorts = [...new Set(targeting.map((sp) => sp.port))];
    const protocol = targeting[0] ? meshProtocol(targeting[0].appProtocol, targeting[0].name ?? name) : meshProtocol(undefined, name);
    appPorts.set(containerPort, { port: containerPort, protocol, ...(servicePorts.some((sp) => sp !== containerPort) ? { servicePorts } : {}) });
  }
  return { service, appPorts: [...appPorts.values()] };
}

/** The variables each app container gets: every plain-http call goes to the sidecar, except in-cluster names. */
export function proxyEnv(): { name: string; value: string }[] {
  const proxy = `http://127.0.0.1:${ports.outbound}`;
  // Kubernetes names (.svc, .cluster.local) and loopback stay direct; clusterset names
  // (<svc>.<ns>.svc.clusterset.local) and <svc>.<ns>.mesh go through the sidecar.
  const direct = 'localhost,127.0.0.1,::1,.svc,.cluster.local';
  return [
    { name: 'HTTP_PROXY', value: proxy },
    { name: 'http_proxy', value: proxy },
    { name: 'NO_PROXY', value: direct },
    { name: 'no_proxy', value: direct },
  ];
}

/**
 * `--inbound-app` for the first app port (callers naming no port, or one not listed, reach it),
 * `--inbound-port` for each other one, under each Service port that targets it
 * (`9000=9090/h2c`) or its own number; a protocol only when it is not HTTP.
 */
function inboundArgs(appPorts: PodFacts['appPorts']): string[] {
  const [first, ...more] = appPorts;
  if (!first) return [];
  const entry = (named: number, p: AppPortFacts) => `${named}${named === p.port ? '' : `=${p.port}`}${p.protocol === 'http' ? '' : `/${p.protocol}`}`;
  return [
    '--inbound-app', `127.0.0.1:${first.port}`,
    ...first.protocol === 'http' ? [] : ['--inbound-app-protocol', first.protocol],
    ...more.flatMap((p) => (p.servicePorts ?? [p.port]).flatMap((named) => ['--inbound-port', entry(named, p)])),
  ];
}

export function sidecarContainer(facts: PodFacts, options: InjectOptions): Obj {
  const admin = { path: '/readyz', port: 'isthmus-admin' };
  return {
    name: sidecarName,
    image: options.image,
    restartPolicy: 'Always',
    args: [
      'sidecar', '--config', `${paths.config}/sidecar.yaml`,
      '--namespace', '$(POD_NAMESPACE)', '--service', facts.service, '--zone', '$(ISTHMUS_ZONE)',
      ...inboundArgs(facts.appPorts),
      ...(facts.accessLog ? ['--access-log', facts.accessLog] : []),
      ...(facts.upgradeToHttp2 ? ['--upgrade-to-http2'] : []),
    ],
    env: [
      { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
      // Set on pods where the cluster copies the node's topology labels onto them; empty
      // elsewhere, and the sidecar config's zone applies.
      { name: 'ISTHMUS_ZONE', valueFrom: { fieldRef: { fieldPath: 'metadata.labels[\'topology.kubernetes.io/zone\']' } } },
      { name: 'ISTHMUS_LOG_FORMAT', value: 'json' },
    ],
    ports: [
      { name: 'isthmus-out', containerPort: ports.outbound, protocol: 'TCP' },
      // The federation's Kubernetes adapter finds the inbound by this name: callers dial <pod IP>:<it>.
      { name: sidecarInboundPortName, containerPort: ports.inbound, protocol: 'TCP' },
      { name: 'isthmus-admin', containerPort: ports.admin, protocol: 'TCP' },
    ],
    // The app's containers start once this passes: the certificate and the catalog are loaded.
    startupProbe: { httpGet: admin, periodSeconds: 1, failureThreshold: 120 },
    readinessProbe: { httpGet: admin, periodSeconds: 5, failureThreshold: 3 },
    resources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { cpu: '1', memory: '256Mi' } },
    securityContext: {
      runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532,
      allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] },
    },
    volumeMounts: [
      { name: 'isthmus-sidecar-config', mountPath: paths.config, readOnly: true },
      { name: 'isthmus-token', mountPath: paths.token, readOnly: true },
      { name: 'isthmus-state', mountPath: paths.state },
    ],
  };
}

export function sidecarVolumes(options: InjectOptions): Obj[] {
  return [
    {
      name: 'isthmus-sidecar-config',
      projected: {
        sources: [
          { configMap: { name: namespaceConfigMaps.sidecar, items: [{ key: 'sidecar.yaml', path: 'sidecar.yaml' }] } },
          { configMap: { name: namespaceConfigMaps.rootCert, items: [{ key: 'root-cert.pem', path: 'root-cert.pem' }] } },
        ],
      },
    },
    {
      name: 'isthmus-token',
      projected: {
        // 0444 in decimal: readable by the sidecar's user whatever user the app runs as.
        defaultMode: 292,
        sources: [{ serviceAccountToken: { audience: options.tokenAudience, expirationSeconds: 3600, path: 'token' } }],
      },
    },
    { name: 'isthmus-state', emptyDir: { sizeLimit: '16Mi' } },
  ];
}
