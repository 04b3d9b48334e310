import { createServer, type Server } from 'node:http';
import { sendMetrics } from '../telemetry/http.js';
import type { Metrics } from '../telemetry/metrics.js';
import { explainRoute } from './explain.js';
import type { RoutingTable } from './routing.js';

export interface SidecarAdminState {
  cluster: string;
  zone: string;
  identity: () => string | undefined;
  routing: RoutingTable;
  services: () => { namespace: string; name: string }[];
  snapshot: () => { catalogRevision: number | undefined; source: string | undefined };
  /** Served at /metrics in the Prometheus text format. */
  metrics?: Pick<Metrics, 'exposition'>;
}

/** Admin port (15020): /healthz, /readyz, /metrics, and /routes — where each service's traffic goes now and why. */
export function startSidecarAdmin(state: SidecarAdminState, host: string, port: number): Promise<Server> {
  const server = createServer((req, res) => {
    const send = (status: number, body: unknown) => {
      const text = JSON.stringify(body, null, 2);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    };
    const from = { cluster: state.cluster, zone: state.zone };
    const url = new URL(req.url ?? '/', 'http://admin');
    if (url.pathname === '/healthz') return send(200, { status: 'ok' });
    if (url.pathname === '/metrics' && state.metrics) return void sendMetrics(state.metrics, res);
    if (url.pathname === '/readyz') {
      const ready = state.identity() !== undefined && state.routing.ready;
      return send(ready ? 200 : 503, { ready, identity: state.identity() ?? null, ...state.snapshot() });
    }
    if (url.pathname === '/routes') {
      const ejected = state.routing.ejected();
      const services = state.services().flatMap((s) => {
        const route = state.routing.route(s.namespace, s.name);
        return route ? [explainRoute(route, from, ejected)] : [];
      });
      return send(200, { from, identity: state.identity() ?? null, ...state.snapshot(), services });
    }
    const match = /^\/routes\/([a-z0-9-]+)\/([a-z0-9-]+)$/.exec(url.pathname);
    if (match) {
      const route = state.routing.route(match[1] as string, match[2] as string);
      if (!route) return send(404, { error: { code: 'ISTHMUS_ERR_SERVICE_UNKNOWN', message: `${match[1]}/${match[2]} is not in this sidecar's catalog` } });
      return send(200, explainRoute(route, from, state.routing.ejected()));
    }
    return send(404, { error: 'try /healthz, /readyz, /metrics, /routes or /routes/<namespace>/<service>' });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}
