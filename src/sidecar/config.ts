import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Type, type Static } from '../core/typebox.js';
import { parse as parseYaml } from 'yaml';
import { IsthmusError, isIsthmusError } from '../core/errors.js';
import { readUserFile } from '../core/user-paths.js';
import { ListenerTlsSchema, loadListenerTls, type ListenerTls } from '../core/tls-files.js';
import { dnsLabelPattern } from '../core/names.js';
import { durationPattern, parseDuration, validate } from '../core/validate.js';
import { TimeoutsSchema } from './timeouts.js';

const hostPort = (description: string) => Type.String({ pattern: '^[^:\\s]+:[0-9]{1,5}$', description });
const label = (description: string) => Type.String({ pattern: dnsLabelPattern, description });
const appProtocol = (description: string) => Type.Union([Type.Literal('http'), Type.Literal('tcp')], { description });

/** `isthmus sidecar --config <file>`: one workload instance's sidecar. */
export const SidecarConfigSchema = Type.Object({
  cluster: label('the cluster this workload runs in'),
  zone: label('the zone of this instance'),
  namespace: label('namespace of the workload'),
  service: label('service of the workload'),
  federation: Type.Object({
    url: Type.String({ pattern: '^https://', description: 'the federation API of this cluster, https://host:15010' }),
    rootCert: Type.String({ description: 'root-cert.pem of the cluster, to trust the federation API (relative to this file)' }),
  }, { additionalProperties: false }),
  token: Type.Optional(Type.String({ description: 'bootstrap token from `isthmus register` (or use tokenFile)' })),
  tokenFile: Type.Optional(Type.String({ description: 'file holding the bootstrap token' })),
  stateDir: Type.String({ description: 'where the certificate and the last catalog are kept, so a restart works with the federation down' }),
  outbound: Type.Object({
    listen: hostPort('the app\'s HTTP proxy (HTTP_PROXY), default port 15001'),
    upgradeToHttp2: Type.Optional(Type.Boolean({
      description: 'send the app\'s HTTP/1.1 requests to other sidecars as HTTP/2 streams on one kept connection per destination, not on pooled HTTP/1.1 connections (default false: HTTP/2 costs more CPU per request; docs/sidecar.md, "HTTP/1.1 or HTTP/2 between sidecars")',
    })),
  }, { additionalProperties: false }),
  inbound: Type.Optional(Type.Object({
    listen: hostPort('the mTLS listener other sidecars and gateways connect to, default port 15006'),
    app: hostPort('where the app itself listens (loopback)'),
    // One field for what the app speaks, like a Kubernetes port's appProtocol.
    appProtocol: Type.Optional(Type.Union([Type.Literal('http'), Type.Literal('h2c'), Type.Literal('tcp')], {
      description: 'what the app speaks: http (HTTP/1.1, the default), h2c (HTTP/2 over cleartext, as a gRPC server does) or tcp (bytes piped to the app\'s port)',
    })),
    idleTimeout: Type.Optional(Type.String({ pattern: durationPattern, description: 'appProtocol tcp: close a connection after this long without a byte either way (default: timeouts.tunnelIdle)' })),
    ports: Type.Optional(Type.Array(Type.Object({
      port: Type.Integer({ minimum: 1, maximum: 65535, description: 'the port callers name (the Kubernetes Service port): in the authority of an HTTP request, in the ALPN isthmus-tcp/<port> of a TCP listener' }),
      app: Type.Optional(hostPort('where the app listens for it (default: inbound.app\'s host and this port)')),
      appProtocol: Type.Optional(Type.Union([Type.Literal('http'), Type.Literal('h2c'), Type.Literal('tcp')], { description: 'what the app speaks on it (default http)' })),
    }, { additionalProperties: false }), { description: 'more app ports behind the same inbound listener; a caller that names none of them reaches inbound.app' })),
  }, { additionalProperties: false })),
  admin: Type.Object({
    listen: hostPort('/healthz, /readyz, /metrics, /routes and POST /trace (docs/security.md); loopback unless you mean otherwise'),
    tls: Type.Optional(ListenerTlsSchema),
  }, { additionalProperties: false, default: { listen: '127.0.0.1:15020' } }),
  /** For apps that cannot use a proxy (HTTP), and for plain TCP services: one listener per upstream service. */
  listeners: Type.Array(Type.Object({
    service: label('upstream service'),
    namespace: label('its namespace'),
    listen: hostPort('where the app connects, e.g. 127.0.0.1:9001'),
    protocol: Type.Optional(appProtocol('http or tcp; left out, each connection follows the protocol the catalog declares for the service (for port, if set)')),
    port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535, description: 'which port of a multi-port service this listener reaches (its Service port): sent as the HTTP authority\'s port, or as ALPN isthmus-tcp/<port>' })),
    idleTimeout: Type.Optional(Type.String({ pattern: durationPattern, description: 'TCP connections: close after this long without a byte either way (default 1h)' })),
  }, { additionalProperties: false }), { default: [] }),
  timeouts: Type.Optional(TimeoutsSchema),
  retryBuffer: Type.Optional(Type.Integer({ minimum: 0, maximum: 64 * 1024 * 1024, description: 'bytes of a request body kept so a failed attempt can be resent elsewhere (default 1048576); a larger body is streamed and never retried' })),
  reportInterval: Type.Optional(Type.String({ pattern: durationPattern, description: 'how often traffic counts go to the federation, e.g. 5s (default 5s)' })),
  warmUpRequests: Type.Optional(Type.Integer({ minimum: 0, maximum: 10_000, description: 'requests sent through a private copy of the data plane before the sidecar serves, so its first real requests do not run cold code (default 1000; 0: none)' })),
  accessLog: Type.Optional(Type.Object({
    file: Type.String({ minLength: 1, description: 'where each request and TCP connection gets a line: /dev/stdout (the container\'s log), /dev/stderr, or a file appended to (relative to this file)' }),
    format: Type.Optional(Type.Union([Type.Literal('json'), Type.Literal('text')], { description: 'json (default): one JSON object per line; text: one line of fields for people' })),
  }, { additionalProperties: false, description: 'a line per request (inbound and outbound) and per TCP connection; absent: none (docs/sidecar.md, "Access log")' })),
}, { additionalProperties: false });

export type SidecarConfig = Static<typeof SidecarConfigSchema> & {
  rootCertPem: string; bootstrapToken?: string | undefined; stateDirPath: string;
  /** `admin.tls`'s files, read and checked: the admin port serves HTTPS with them. */
  adminTls?: ListenerTls | undefined;
  /** How often traffic counts go to the federation (default 5 s); from `reportInterval`, or set by `isthmus dev up` and tests. */
  reportIntervalMs?: number | undefined;
};

/**
 * Values the command line sets over the file's, for a config shared by many workloads: in a
 * Kubernetes pod, `isthmus inject` passes the pod's namespace, service and zone this way (the
 * file comes from a ConfigMap of the namespace). An empty value is ignored, so a downward-API
 * variable the pod lacks (no zone label on the pod) leaves the file's value in force.
 */
export interface SidecarOverrides {
  namespace?: string | undefined;
  service?: string | undefined;
  zone?: string | undefined;
  /** `inbound.app`: where the app listens; `inbound.listen` keeps the file's value or 0.0.0.0:15006. */
  inboundApp?: string | undefined;
  /** `inbound.appProtocol`. */
  inboundAppProtocol?: string | undefined;
  /** `inbound.ports`, each `<port>[=<app port>][/<protocol>]` (the app on inbound.app's host, at that port unless another is given). */
  inboundPort?: string[] | undefined;
  /** `accessLog.file` (the format stays the file's, json unless set). */
  accessLog?: string | undefined;
  /** `outbound.upgradeToHttp2: true`; absent or false leaves the file's. */
  upgradeToHttp2?: boolean | undefined;
}

/** `inbound.ports` with every app address filled in. */
export function appPortsOf(inbound: NonNullable<Static<typeof SidecarConfigSchema>['inbound']>): { port: number; address: string; protocol: 'http' | 'h2c' | 'tcp' }[] {
  const host = inbound.app.slice(0, inbound.app.lastIndexOf(':'));
  return (inbound.ports ?? []).map((p) => ({ port: p.port, address: p.app ?? `${host}:${p.port}`, protocol: p.appProtocol ?? 'http' }));
}

/** `--inbound-port 9000=9090/h2c` as an `inbound.ports` entry; anything else is left for the schema to refuse. */
function portEntry(spec: string, host: string | undefined): unknown {
  const match = /^(\d{1,5})(?:=(\d{1,5}))?(?:\/(.+))?$/.exec(spec);
  if (!match) return spec;
  return { port: Number(match[1]), ...(match[2] && host !== undefined ? { app: `${host}:${match[2]}` } : {}), ...(match[3] ? { appProtocol: match[3] } : {}) };
}

function applyOverrides(raw: unknown, overrides: SidecarOverrides): unknown {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return raw;
  const config: Record<string, unknown> = { ...raw };
  for (const key of ['namespace', 'service', 'zone'] as const) if (overrides[key]) config[key] = overrides[key];
  if (overrides.inboundApp) {
    const inbound = typeof config.inbound === 'object' && config.inbound !== null ? config.inbound : { listen: '0.0.0.0:15006' };
    config.inbound = { ...inbound, app: overrides.inboundApp };
  }
  if (overrides.inboundAppProtocol && typeof config.inbound === 'object' && config.inbound !== null) config.inbound = { ...config.inbound, appProtocol: overrides.inboundAppProtocol };
  if (overrides.inboundPort && overrides.inboundPort.length > 0 && typeof config.inbound === 'object' && config.inbound !== null) {
    const app = (config.inbound as { app?: unknown }).app;
    const host = typeof app === 'string' && app.includes(':') ? app.slice(0, app.lastIndexOf(':')) : undefined;
    config.inbound = { ...config.inbound, ports: overrides.inboundPort.map((spec) => portEntry(spec, host)) };
  }
  if (overrides.upgradeToHttp2 && typeof config.outbound === 'object' && config.outbound !== null) config.outbound = { ...config.outbound, upgradeToHttp2: true };
  if (overrides.accessLog) {
    const given = typeof config.accessLog === 'object' && config.accessLog !== null ? config.accessLog : {};
    config.accessLog = { ...given, file: overrides.accessLog };
  }
  return config;
}

export function loadSidecarConfig(path: string, overrides: SidecarOverrides = {}): Readonly<SidecarConfig> {
  let raw: unknown;
  try {
    raw = parseYaml(readUserFile(path, 'the sidecar config'), { logLevel: 'error' });
  } catch (err) {
    if (isIsthmusError(err)) throw err;
    throw new IsthmusError('ISTHMUS_ERR_CONFIG_UNREADABLE', `cannot read sidecar config ${path}: ${(err as Error).message.split('\n')[0]}`, { cause: err });
  }
  const config = validate(SidecarConfigSchema, applyOverrides(raw, overrides), path);
  const dir = dirname(resolve(path));
  const read = (file: string, what: string) => {
    try {
      return readFileSync(resolve(dir, file), 'utf8');
    } catch (err) {
      throw new IsthmusError('ISTHMUS_ERR_CONFIG_UNREADABLE', `${path}: cannot read ${what} ${resolve(dir, file)}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
    }
  };
  const bootstrapToken = config.token ?? (config.tokenFile ? read(config.tokenFile, 'tokenFile').trim() : undefined);
  // A zero interval would report in a busy loop; the pattern alone allows "0s".
  const reportIntervalSeconds = config.reportInterval === undefined ? undefined : parseDuration(config.reportInterval);
  if (reportIntervalSeconds === 0) {
    throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `${path} is not valid:\n  /reportInterval: must be at least 1s, got "0s"`, { details: [{ path: '/reportInterval', message: 'must be at least 1s' }] });
  }
  return Object.freeze({
    ...config, rootCertPem: read(config.federation.rootCert, 'federation.rootCert'), bootstrapToken, stateDirPath: resolve(dir, config.stateDir),
    ...(config.accessLog ? { accessLog: { ...config.accessLog, file: resolve(dir, config.accessLog.file) } } : {}),
    ...(config.admin.tls ? { adminTls: loadListenerTls(config.admin.tls, `admin.tls in ${path}`, { baseDir: dir }) } : {}),
    ...(reportIntervalSeconds === undefined ? {} : { reportIntervalMs: reportIntervalSeconds * 1000 }),
  });
}
