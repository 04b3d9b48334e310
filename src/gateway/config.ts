import { resolve } from 'node:path';
import { IsthmusError } from '../core/errors.js';
import type { RelayKind } from '../core/native-relay.js';
import { parseDuration } from '../core/validate.js';
import { loadClusterConfig, type LoadedClusterConfig } from '../federation/config.js';
import { isLoopbackAddress } from '../trust/operator.js';
import { loadListenerTls, type ListenerTls } from '../core/tls-files.js';

export interface GatewayConfig {
  cluster: string;
  trustDomain: string;
  id: string;
  zone: string;
  listen: { host: string; port: number };
  /**
   * What other clusters dial, published in the gateway's record: `advertise` of its entry (or
   * `--advertise`); undefined: the address the listener bound.
   */
  advertise?: { host: string; port: number } | undefined;
  admin: { host: string; port: number };
  /**
   * Where others reach the admin port, published in the gateway's record (where `isthmus trace`
   * finds it): `--admin-advertise`, in a pod its IP (`status.podIP`); undefined: the admin
   * listen address.
   */
  adminAdvertise?: { host: string; port: number } | undefined;
  /** `adminTls`'s files, read and checked: the admin port serves HTTPS with them. */
  adminTls?: ListenerTls | undefined;
  /** https://host:port of this cluster's federation API. */
  federationUrl: string;
  /** Only root-cert.pem is read from it when `tokenFile` is set. */
  caDir: string;
  /** A ServiceAccount token to buy the gateway certificate with (resolved path); undefined: self-issued from caDir. */
  tokenFile?: string | undefined;
  clientHelloTimeoutMs: number;
  connectTimeoutMs: number;
  /** A spliced connection with no byte either way for this long is closed (default 1 h). */
  idleTimeoutMs: number;
  /** On SIGTERM or SIGINT, how long the connections it carries have to end (docs/gateway.md, "Draining"). */
  drainTimeoutMs: number;
  /** What copies a routed connection's bytes (docs/gateway.md, "The relay"); default native. */
  relay?: RelayKind;
}

/** The gateway runs from its cluster's cluster.yaml: its entry under `gateways:` picked by id. */
export function loadGatewayConfig(configPath: string, id: string | undefined, given: GatewayOverrides = {}): GatewayConfig {
  // Empty values are ignored: a pod's manifest fills them from the downward API, which gives an
  // empty string for what the pod does not have (a zone label, on most clusters).
  const overrides = Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined && v !== '')) as GatewayOverrides;
  // A malformed --advertise is the caller's mistake whatever the file holds: say so first.
  if (overrides.advertise !== undefined) gatewayAdvertise(overrides.advertise, { host: '127.0.0.1', port: 1 }, '--advertise', '--advertise');
  const adminAdvertise = overrides.adminAdvertise === undefined ? undefined : gatewayAdvertise(overrides.adminAdvertise, { host: '127.0.0.1', port: 1 }, '--admin-advertise', '--admin-advertise');
  const loaded: LoadedClusterConfig = loadClusterConfig(configPath);
  const { config } = loaded;
  const ids = config.gateways.map((g) => g.id);
  const entry = id === undefined && ids.length === 1 ? config.gateways[0] : config.gateways.find((g) => g.id === id);
  if (!entry) {
    throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', ids.length === 0
      ? `${loaded.path} has no gateways: add one under gateways: (id, address), or join with --gateway <host:port>`
      : `${loaded.path} has no gateway "${id ?? ''}"; pass --id with one of: ${ids.join(', ')}`);
  }
  const listen = splitHostPort(entry.address);
  const advertise = gatewayAdvertise(overrides.advertise ?? entry.advertise, listen, overrides.advertise !== undefined ? '--advertise' : `${loaded.path}: gateways[${entry.id}].advertise`, `${loaded.path}: gateways[${entry.id}].address`);
  // Loopback unless configured: what the admin port tells is for this machine and operators, not
  // for the other clusters that reach the gateway's own address (docs/security.md).
  const admin = entry.admin === undefined ? { host: isLoopbackAddress(listen.host) ? listen.host : '127.0.0.1', port: 15021 } : splitHostPort(entry.admin);
  const federationHost = config.federation.advertise ?? `${config.federation.host === '0.0.0.0' ? '127.0.0.1' : config.federation.host}:${config.federation.apiPort}`;
  return {
    cluster: config.cluster,
    trustDomain: config.trustDomain,
    id: entry.id,
    zone: overrides.zone ?? entry.zone ?? config.zones[0] ?? 'default',
    listen,
    advertise,
    admin,
    ...(adminAdvertise ? { adminAdvertise } : {}),
    ...(entry.adminTls ? { adminTls: loadListenerTls(entry.adminTls, `adminTls of gateway ${entry.id} in ${loaded.path}`, { baseDir: loaded.dir }) } : {}),
    federationUrl: `https://${federationHost}`,
    caDir: loaded.caDir,
    tokenFile: entry.tokenFile === undefined ? undefined : resolve(loaded.dir, entry.tokenFile),
    clientHelloTimeoutMs: parseDuration(entry.clientHelloTimeout) * 1000,
    connectTimeoutMs: parseDuration(entry.connectTimeout) * 1000,
    idleTimeoutMs: 3_600_000,
    drainTimeoutMs: Math.round(parseDuration(entry.drainTimeout) * 1000),
    relay: entry.relay,
  };
}

/** What `isthmus gateway`'s flags put over the gateway's entry; empty strings count as not given. */
export interface GatewayOverrides {
  advertise?: string | undefined;
  adminAdvertise?: string | undefined;
  zone?: string | undefined;
}

const unspecifiedHosts = new Set(['0.0.0.0', '::', '[::]']);

/**
 * The address published for other clusters. It must be one they can dial: a wildcard listen
 * address (`0.0.0.0`) reaches nobody when published, so it needs an advertised address beside it.
 */
function gatewayAdvertise(given: string | undefined, listen: { host: string; port: number }, givenWhere: string, listenWhere: string): { host: string; port: number } | undefined {
  if (given === undefined) {
    if (unspecifiedHosts.has(listen.host)) {
      throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `${listenWhere} listens on every interface (${listen.host}), which other clusters cannot dial: set advertise (or pass --advertise) to the host:port they reach the gateway at`);
    }
    return undefined;
  }
  const advertise = /^[^:\s]+:[0-9]{1,5}$/.test(given) ? splitHostPort(given) : undefined;
  if (!advertise || advertise.port < 1 || advertise.port > 65535 || unspecifiedHosts.has(advertise.host)) {
    throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `${givenWhere} is "${given}": expected host:port that other clusters can dial (a host name or address, not ${[...unspecifiedHosts].join(' or ')}, and a port from 1 to 65535)`);
  }
  return advertise;
}

function splitHostPort(address: string): { host: string; port: number } {
  const split = address.lastIndexOf(':');
  return { host: address.slice(0, split), port: Number(address.slice(split + 1)) };
}
