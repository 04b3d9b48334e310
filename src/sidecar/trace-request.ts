import { request as httpRequest, type IncomingMessage } from 'node:http';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type PeerCertificate, type SecureContext, type TLSSocket } from 'node:tls';
import { IsthmusError } from '../core/errors.js';
import { explainRoute } from './explain.js';
import { checkDestination, peerIdentity } from './peer-identity.js';
import type { RoutingTable } from './routing.js';
import { assembleTrace, decodeInboundReport, inboundReportHeader, traceHeader, type TraceFacts, type TraceFailure, type TraceResult } from './trace.js';

const connectTimeoutMs = 2_000;
const traceTimeoutMs = 10_000;
/** Alerts a gateway sends when it refuses (docs/gateway.md, Refusals): the failure is the gateway's. */
const gatewayRefusalCodes = new Set(['ERR_SSL_TLSV1_UNRECOGNIZED_NAME', 'ERR_SSL_TLSV1_ALERT_INTERNAL_ERROR']);

export interface TraceDeps {
  routing: RoutingTable;
  /** The workload's current TLS credentials and trust bundle, as the pooled upstreams use them. */
  secureContext: () => SecureContext;
}

/**
 * Sends one request in trace mode: the same routing decision and identity check as ordinary
 * traffic, but on a fresh connection of its own (never a pooled one, so the connect and the
 * handshake happen now and can be timed), with no retry and no effect on outlier detection.
 * Throws ISTHMUS_ERR_SERVICE_UNKNOWN for a service this sidecar does not know; any later failure
 * is part of the result.
 */
export async function traceRequest(
  deps: TraceDeps,
  from: { cluster: string; zone: string; identity: string | null },
  target: { service: string; namespace: string; path: string; method: string },
): Promise<TraceResult> {
  const started = performance.now();
  const since = () => performance.now() - started;
  const route = deps.routing.route(target.namespace, target.service);
  if (!route) throw new IsthmusError('ISTHMUS_ERR_SERVICE_UNKNOWN', `${target.namespace}/${target.service} is not in the mesh: no cluster runs or exports it (isthmus services)`);
  const facts: TraceFacts = {
    service: target.service, namespace: target.namespace, method: target.method, path: target.path, from,
    explanation: explainRoute(route, from, deps.routing.ejected()),
    times: { done: 0 },
  };
  const finish = (failure?: TraceFailure): TraceResult => {
    facts.times.done = since();
    if (failure) facts.failure = failure;
    return { ...assembleTrace(facts), facts };
  };

  const endpoint = route.load.status === 'no-healthy-endpoints' ? undefined : deps.routing.pick(route);
  const upstream = endpoint ? route.upstreams.get(endpoint.address) : undefined;
  if (!endpoint || !upstream) {
    return finish({ step: 'route', code: 'ISTHMUS_ERR_SERVICE_UNKNOWN', message: `${target.namespace}/${target.service} has no healthy endpoint in any cluster (isthmus explain ${target.service} -n ${target.namespace})` });
  }
  facts.chosen = {
    priority: endpoint.priority, region: endpoint.region, cluster: endpoint.cluster, zone: endpoint.zone,
    address: endpoint.address, kind: endpoint.kind, sni: upstream.sni, allowedIdentities: [...upstream.identities],
  };
  facts.times.routed = since();

  // Made before the clock of the first hop starts: building a context is CPU work of ours, and
  // the gateway would otherwise count it as a slow ClientHello.
  const secureContext = deps.secureContext();
  const deadline = AbortSignal.timeout(traceTimeoutMs);
  let tcp: Socket | undefined;
  let tls: TLSSocket | undefined;
  try {
    // 1. TCP to the first hop: a local sidecar's inbound, or a remote cluster's gateway.
    try {
      tcp = await connectTcp(endpoint.address);
    } catch (err) {
      return finish({ step: 'connect', code: 'ISTHMUS_ERR_TRACE_CONNECT_FAILED', message: `${endpoint.address} did not accept a connection: ${(err as Error).message}` });
    }
    facts.times.connected = since();
    facts.localAddress = `${tcp.localAddress}:${tcp.localPort}`;

    // 2. TLS, end to end with the destination sidecar (through the gateway, which only reads the SNI).
    const check = checkDestination(upstream.identities);
    try {
      tls = await handshake(tcp, upstream.sni, secureContext, (host, cert) => {
        const peer = peerIdentity(cert);
        if ('identity' in peer) facts.serverIdentity = peer.identity;
        const refused = check(host, cert);
        if (refused) facts.serverIdentityError = refused.message;
        return refused;
      });
    } catch (err) {
      if (facts.serverIdentityError) return finish({ step: 'identity', code: 'ISTHMUS_ERR_TRACE_HANDSHAKE_FAILED', message: facts.serverIdentityError });
      const code = (err as { code?: string }).code ?? '';
      const byGateway = endpoint.kind === 'gateway' && gatewayRefusalCodes.has(code);
      return finish({
        step: 'handshake', code: 'ISTHMUS_ERR_TRACE_HANDSHAKE_FAILED',
        message: `${byGateway ? `the gateway ${endpoint.address} refused SNI ${upstream.sni}` : `the TLS handshake with the destination failed`}: ${(err as Error).message}${code ? ` (${code})` : ''}`,
      });
    }
    facts.times.secured = since();

    // 3. The request itself, on that connection only.
    try {
      const response = await exchange(tls, target, deadline, () => { facts.times.headers = since(); });
      facts.status = response.status;
      facts.bytes = response.bytes;
      const report = decodeInboundReport(response.report);
      if (report) facts.inbound = report;
    } catch (err) {
      return finish({ step: 'response', code: 'ISTHMUS_ERR_TRACE_NO_ANSWER', message: `the destination did not answer: ${(err as Error).message}` });
    }
    return finish();
  } finally {
    tls?.destroy();
    tcp?.destroy();
  }
}

// The 'error' listeners below stay after success on purpose: a late error on a socket with no
// listener would crash the sidecar; once settled, calling reject again does nothing.
function connectTcp(address: string): Promise<Socket> {
  const split = address.lastIndexOf(':');
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host: address.slice(0, split), port: Number(address.slice(split + 1)), noDelay: true });
    const timer = setTimeout(() => socket.destroy(new Error(`no connection within ${connectTimeoutMs} ms`)), connectTimeoutMs);
    socket.once('connect', () => { clearTimeout(timer); resolve(socket); });
    socket.on('error', (err) => { clearTimeout(timer); reject(err); });
  });
}

function handshake(socket: Socket, servername: string, secureContext: SecureContext, checkServerIdentity: (host: string, cert: PeerCertificate) => Error | undefined): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const tls = tlsConnect({ socket, servername, secureContext, checkServerIdentity, minVersion: 'TLSv1.2' });
    const timer = setTimeout(() => tls.destroy(new Error(`no TLS handshake within ${traceTimeoutMs} ms`)), traceTimeoutMs);
    tls.once('secureConnect', () => { clearTimeout(timer); resolve(tls); });
    tls.on('error', (err) => { clearTimeout(timer); reject(err); });
  });
}

function exchange(
  tls: TLSSocket,
  target: { service: string; namespace: string; path: string; method: string },
  signal: AbortSignal,
  onHeaders: () => void,
): Promise<{ status: number; bytes: number; report: string | string[] | undefined }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({
      createConnection: () => tls,
      method: target.method,
      path: target.path,
      signal,
      headers: { host: `${target.service}.${target.namespace}.mesh`, [traceHeader]: '1', connection: 'close' },
    }, (res: IncomingMessage) => {
      onHeaders();
      let bytes = 0;
      res.on('data', (chunk: Buffer) => { bytes += chunk.length; });
      res.once('end', () => resolve({ status: res.statusCode ?? 0, bytes, report: res.headers[inboundReportHeader] }));
      res.once('error', reject);
    });
    req.once('error', reject);
    req.end();
  });
}
