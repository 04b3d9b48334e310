import type { IncomingMessage, Server } from 'node:http';
import { isIsthmusError } from '../core/errors.js';
import { sendMetrics } from '../telemetry/http.js';
import type { Metrics } from '../telemetry/metrics.js';
import { explainRoute } from './explain.js';
import type { RoutingTable } from './routing.js';
import { parseTraceRequest, type TraceRequest } from './trace.js';
import { traceRequest, type TraceDeps } from './trace-request.js';
import { limitHttpServer } from '../core/server-limits.js';
import { admitOperator } from '../trust/operator.js';
import { createListenerServer, type ListenerTls } from '../core/tls-files.js';

const maxTraceBody = 16 * 1024;

export interface SidecarAdminState {
  cluster: string;
  zone: string;
  identity: () => string | undefined;
  routing: RoutingTable;
  services: () => { namespace: string; name: string }[];
  snapshot: () => { catalogRevision: number | undefined; source: string | undefined };
  /** Served at /metrics in the Prometheus text format. */
  metrics?: Pick<Metrics, 'exposition'>;
  /** What POST /trace dials with: the outbound's routing and credentials. Absent: no tracing from here. */
  trace?: TraceDeps;
  /** What an operator credential must chain to (the mesh bundle), and the trust domain it must belong to (the workload's). */
  operators: { rootsPem: () => string[]; trustDomain: () => string | undefined };
}

/**
 * Admin port (15020): /healthz, /readyz, /metrics, /routes — where each service's traffic goes
 * now and why — and POST /trace, which sends one real request and reports every hop (docs/trace.md).
 *
 * Who may ask (docs/security.md): /healthz, /readyz and /metrics anyone who reaches the port;
 * /routes a caller on this machine (it shows what the app's own outbound proxy, also on loopback,
 * would do) or an operator; POST /trace only an operator, from anywhere, because it sends a real
 * request with the workload's identity. With `tls` (`admin.tls`) it serves HTTPS, with the same rules.
 */
export function startSidecarAdmin(state: SidecarAdminState, host: string, port: number, tls?: ListenerTls): Promise<Server> {
  const server = createListenerServer(tls, (req, res) => {
    const send = (status: number, body: unknown) => {
      const text = JSON.stringify(body, null, 2);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    };
    const from = { cluster: state.cluster, zone: state.zone };
    const url = new URL(req.url ?? '/', 'http://admin');
    /** False after answering 401/403 to a caller without what the path needs. */
    const permitted = (loopbackSuffices: boolean) => admitOperator(req, send, {
      rootsPem: state.operators.rootsPem(), trustDomain: state.operators.trustDomain(), loopbackSuffices,
      what: `${req.method ?? 'GET'} ${url.pathname}${loopbackSuffices ? ' from another machine' : ''}`,
    }) !== undefined;
    if (url.pathname === '/healthz') return send(200, { status: 'ok' });
    if (url.pathname === '/metrics' && state.metrics) return void sendMetrics(state.metrics, res);
    if (url.pathname === '/readyz') {
      const ready = state.identity() !== undefined && state.routing.ready;
      return send(ready ? 200 : 503, { ready, identity: state.identity() ?? null, ...state.snapshot() });
    }
    if (url.pathname.startsWith('/routes') && !permitted(true)) return;
    if (url.pathname === '/routes') {
      const ejected = state.routing.ejected();
      const services = state.services().flatMap((s) => {
        const route = state.routing.peek(s.namespace, s.name);
        return route ? [explainRoute(route, from, ejected, state.routing.policiesOf(s.namespace, s.name), state.routing.authorizationOf(s.namespace, s.name), state.routing.protocolOf(s.namespace, s.name))] : [];
      });
      return send(200, { from, identity: state.identity() ?? null, ...state.snapshot(), services });
    }
    const match = /^\/routes\/([a-z0-9-]+)\/([a-z0-9-]+)$/.exec(url.pathname);
    if (match) {
      const route = state.routing.peek(match[1] as string, match[2] as string);
      if (!route) return send(404, { error: { code: 'ISTHMUS_ERR_SERVICE_UNKNOWN', message: `${match[1]}/${match[2]} is not in this sidecar's catalog` } });
      const [namespace, service] = [match[1] as string, match[2] as string];
      return send(200, explainRoute(route, from, state.routing.ejected(), state.routing.policiesOf(namespace, service), state.routing.authorizationOf(namespace, service), state.routing.protocolOf(namespace, service)));
    }
    if (url.pathname === '/trace') {
      if (!permitted(false)) return;
      if (req.method !== 'POST') return send(405, { error: { code: 'ISTHMUS_ERR_API_BAD_REQUEST', message: 'POST a JSON body: {"service": "<name>[.<namespace>]", "path": "/", "method": "GET"}' } });
      void trace(state, req).then(({ status, body }) => send(status, body), (err: unknown) => {
        send(500, { error: { code: 'ISTHMUS_ERR_INTERNAL_UNEXPECTED', message: (err as Error).message } });
      });
      return;
    }
    return send(404, { error: 'try /healthz, /readyz, /metrics, /routes, /routes/<namespace>/<service> or POST /trace' });
  });
  limitHttpServer(server);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}

async function trace(state: SidecarAdminState, req: IncomingMessage): Promise<{ status: number; body: unknown }> {
  const bad = (message: string) => ({ status: 400, body: { error: { code: 'ISTHMUS_ERR_API_BAD_REQUEST', message } } });
  let text = '';
  for await (const chunk of req) {
    text += (chunk as Buffer).toString('utf8');
    if (text.length > maxTraceBody) return bad(`the body is over ${maxTraceBody} bytes`);
  }
  let parsed: TraceRequest | { error: string };
  try {
    parsed = parseTraceRequest(JSON.parse(text || 'null'));
  } catch {
    return bad('the body is not JSON');
  }
  if ('error' in parsed) return bad(parsed.error);
  const deps = state.trace;
  if (!deps) return { status: 503, body: { error: { code: 'ISTHMUS_ERR_TRACE_NO_SIDECAR', message: 'this sidecar has no outbound proxy to trace through' } } };
  // A bare name is fine when exactly one namespace has a service of that name.
  let namespace = parsed.namespace;
  if (namespace === undefined) {
    const namespaces = [...new Set(state.services().filter((s) => s.name === parsed.service).map((s) => s.namespace))].sort();
    if (namespaces.length > 1) return bad(`${parsed.service} exists in namespaces ${namespaces.join(', ')}: say which (${parsed.service}.<namespace>, or --namespace)`);
    namespace = namespaces[0];
    if (namespace === undefined) return { status: 404, body: { error: { code: 'ISTHMUS_ERR_SERVICE_UNKNOWN', message: `no service named ${parsed.service} in any namespace: no cluster runs or exports it (isthmus services)` } } };
  }
  try {
    const result = await traceRequest(deps, { cluster: state.cluster, zone: state.zone, identity: state.identity() ?? null }, { ...parsed, namespace });
    return { status: 200, body: result };
  } catch (err) {
    if (isIsthmusError(err)) return { status: err.status, body: { error: err.toJSON() } };
    throw err;
  }
}
