import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { ensureDirectory } from '../core/user-paths.js';
import { freePort } from '../dev/ports.js';
import { writePeerCertificates } from './peer-certs.js';
import { renderHaproxyGateway, renderNginxInbound, renderNginxOutbound } from './peer-config.js';
import { startPeerProcess, type PeerProcess } from './peer-process.js';

/** A service the peer chain reaches, where its app runs, and in which cluster. */
export interface PeerService {
  name: string;
  cluster: string;
  /** host:port of the app: the same origin our chain ends at. */
  origin: string;
  /** The app speaks gRPC (h2c): the chain carries it as HTTP/2 end to end (nginx's gRPC proxy). */
  grpc?: boolean;
}

export interface PeerChainOptions {
  /** Config, certificates, pid files and logs; the caller removes it. */
  dir: string;
  trustDomain: string;
  namespace: string;
  /** The cluster the outbound sidecar (and so the load generator's app) is in. */
  clientCluster: string;
  /** Loopback address per cluster for the peers' listeners (ports picked free at start). */
  hosts: Record<string, string>;
  services: PeerService[];
  /** Keep-alive connections each pool keeps idle (outbound → inbound/gateway, inbound → app). */
  keepalive?: number;
  /** Inbounds write one line per request with `$ssl_client_verify` (tests only). */
  accessLogs?: boolean;
  /** The outbound and inbounds pass bodies of any size as they stream (`npm run bench:bulk`; nginx's defaults refuse over 1 MB and buffer). */
  streamBodies?: boolean;
  /** The outbound and every inbound write a JSON line per request (`npm run bench -- --access-log`), to `<dir>/<name>/requests.log`. */
  requestLogs?: boolean;
  nginx?: string;
  haproxy?: string;
}

export interface RunningPeerProcess extends PeerProcess {
  /** Services whose requests pass through this process. */
  services: string[];
}

export interface PeerChain {
  /** host:port the app sends plain HTTP to, absolute-form (`http://<service>.<namespace>.mesh/`). */
  outbound: string;
  /** host:port the app sends gRPC to (h2c, `:authority` the service's name), when a service is gRPC. */
  grpcOutbound?: string;
  /** Each inbound's access log, when asked for, by service. */
  accessLogs: Record<string, string>;
  /** Each nginx's request log, when asked for, by process name (`outbound-east`, `inbound-ledger-west`…). */
  requestLogs: Record<string, string>;
  processes: RunningPeerProcess[];
  stop(): Promise<void>;
}

/** The name a client asks for and the SNI the gateway routes by: the same as our mesh's hosts. */
export const peerServiceHost = (service: string, namespace: string) => `${service}.${namespace}.mesh`;

/**
 * The peer chain: nginx outbound sidecar in the client's cluster → (for a service in another
 * cluster) HAProxy east-west gateway of that cluster, SNI passthrough → nginx inbound sidecar
 * with a client certificate required → the service's app. Same-cluster services skip the gateway,
 * as ours do. One process per proxy; `stop()` stops them all (also after a failed start).
 */
export async function startPeerChain(opts: PeerChainOptions): Promise<PeerChain> {
  const nginx = opts.nginx ?? peerBinary('nginx');
  const haproxy = opts.haproxy ?? peerBinary('haproxy');
  const keepalive = opts.keepalive ?? 64;
  const hostOf = (cluster: string) => {
    const host = opts.hosts[cluster];
    if (!host) throw new Error(`no peer address given for cluster ${cluster}`);
    return host;
  };
  const certs = writePeerCertificates(join(opts.dir, 'certs'), {
    trustDomain: opts.trustDomain, namespace: opts.namespace, clientCluster: opts.clientCluster,
    inbounds: opts.services.map((s) => ({ service: s.name, cluster: s.cluster, sniName: peerServiceHost(s.name, opts.namespace) })),
  });

  const processes: RunningPeerProcess[] = [];
  const stop = async () => {
    // Client side first, as a mesh drains: nothing sends to a proxy that has already gone.
    for (const p of [...processes].reverse()) await p.stop().catch(() => undefined);
    processes.length = 0;
  };
  const address = async (cluster: string) => `${hostOf(cluster)}:${await freePort(hostOf(cluster))}`;
  const prefix = (name: string) => {
    const dir = join(opts.dir, name);
    ensureDirectory(dir, 'the bench\'s peer directory');
    return dir;
  };
  const runNginx = async (name: string, config: string, listen: string, services: string[]) => {
    const dir = join(opts.dir, name);
    writeFileSync(join(dir, 'nginx.conf'), config);
    processes.push({
      ...await startPeerProcess({
        name: `nginx ${name}`, command: nginx, args: ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')],
        logFile: join(dir, 'stderr.log'), errorLog: join(dir, 'error.log'), listen,
      }),
      services,
    });
  };

  const accessLogs: Record<string, string> = {};
  const requestLogs: Record<string, string> = {};
  const requestLog = (name: string, dir: string) => {
    if (!opts.requestLogs) return {};
    requestLogs[name] = join(dir, 'requests.log');
    return { requestLog: requestLogs[name] };
  };
  try {
    // Inbounds first, then gateways, then the outbound: each starts with what it sends to already up.
    const inbounds = new Map<string, string>();
    for (const service of opts.services) {
      const name = `inbound-${service.name}-${service.cluster}`;
      const dir = prefix(name);
      const listen = await address(service.cluster);
      const tls = certs.inbound[service.name];
      if (!tls) throw new Error(`no certificate for ${service.name}`);
      const accessLog = opts.accessLogs ? join(dir, 'access.log') : undefined;
      if (accessLog) accessLogs[service.name] = accessLog;
      await runNginx(name, renderNginxInbound({
        prefix: dir, listen, serverName: peerServiceHost(service.name, opts.namespace), tls, origin: service.origin, keepalive, ...(accessLog ? { accessLog } : {}), ...requestLog(name, dir),
        ...(service.grpc ? { grpc: true } : {}), ...(opts.streamBodies ? { streamBodies: true } : {}),
      }), listen, [service.name]);
      inbounds.set(service.name, listen);
    }

    const gateways = new Map<string, string>();
    const remoteClusters = [...new Set(opts.services.filter((s) => s.cluster !== opts.clientCluster).map((s) => s.cluster))];
    for (const cluster of remoteClusters) {
      const name = `gateway-${cluster}`;
      const dir = prefix(name);
      const listen = await address(cluster);
      const served = opts.services.filter((s) => s.cluster === cluster);
      const config = join(dir, 'haproxy.cfg');
      writeFileSync(config, renderHaproxyGateway({
        listen, routes: served.map((s) => ({ sniName: peerServiceHost(s.name, opts.namespace), backend: inbounds.get(s.name) as string })),
      }));
      processes.push({
        ...await startPeerProcess({ name: `haproxy ${name}`, command: haproxy, args: ['-db', '-f', config], logFile: join(dir, 'stderr.log'), listen }),
        services: served.map((s) => s.name),
      });
      gateways.set(cluster, listen);
    }

    const name = `outbound-${opts.clientCluster}`;
    const dir = prefix(name);
    const outbound = await address(opts.clientCluster);
    const grpcOutbound = opts.services.some((s) => s.grpc) ? await address(opts.clientCluster) : undefined;
    await runNginx(name, renderNginxOutbound({
      prefix: dir, listen: outbound, tls: certs.outbound, keepalive, ...requestLog(name, dir), ...(grpcOutbound ? { grpcListen: grpcOutbound } : {}),
      ...(opts.streamBodies ? { streamBodies: true } : {}),
      routes: opts.services.map((s) => ({
        host: peerServiceHost(s.name, opts.namespace),
        upstream: s.cluster === opts.clientCluster ? inbounds.get(s.name) as string : gateways.get(s.cluster) as string,
        sniName: peerServiceHost(s.name, opts.namespace),
        ...(s.grpc ? { grpc: true } : {}),
      })),
    }), outbound, opts.services.map((s) => s.name));
    return { outbound, ...(grpcOutbound ? { grpcOutbound } : {}), accessLogs, requestLogs, processes: [...processes], stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * The command to run: as found on PATH, else Debian's /usr/sbin (where both packages install,
 * and which a non-root PATH often lacks).
 */
export function peerBinary(name: 'nginx' | 'haproxy', path = process.env.PATH ?? ''): string {
  for (const dir of [...path.split(delimiter).filter(Boolean), '/usr/sbin', '/usr/local/sbin']) {
    if (existsSync(join(dir, name))) return join(dir, name);
  }
  return name;
}

/** `nginx/1.22.1`, `HAProxy 2.6.12-1+deb12u4`: what ran, for the report. */
export function peerVersions(opts: { nginx?: string; haproxy?: string } = {}): { nginx: string; haproxy: string } {
  const first = (command: string, args: string[], pattern: RegExp) => {
    const out = spawnSync(command, args, { encoding: 'utf8' });
    return pattern.exec(`${out.stdout ?? ''}${out.stderr ?? ''}`)?.[0] ?? `${command} (version unknown)`;
  };
  return {
    nginx: first(opts.nginx ?? peerBinary('nginx'), ['-v'], /nginx\/\S+/),
    haproxy: first(opts.haproxy ?? peerBinary('haproxy'), ['-v'], /HAProxy version \S+/),
  };
}
