import type { Server } from 'node:http';
import { sendMetrics } from '../telemetry/http.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { Gateway } from './gateway.js';
import { limitHttpServer } from '../core/server-limits.js';
import { admitOperator } from '../trust/operator.js';
import { createListenerServer, type ListenerTls } from '../core/tls-files.js';

/** What an operator credential must chain to, and the trust domain it must be of (the gateway's own). */
export interface AdminOperators {
  rootsPem: string[];
  trustDomain: string;
}

/**
 * Admin port (15021): /healthz answers while the process runs; /readyz only once the gateway
 * has a routing table (a gateway without one refuses everything, so it must not take traffic);
 * /metrics gives them to Prometheus (docs/metrics.md), /stats as JSON; /debug/connections the
 * last routed connections (`?remote=<ip:port>` for one caller's, as `isthmus trace` asks).
 *
 * Who may ask (docs/security.md): /healthz, /readyz and /metrics anyone who reaches the port;
 * /stats a caller on this machine or an operator; /debug/connections (callers, SNIs, internal
 * endpoints) only an operator, wherever the port listens. With `tls` (the gateway entry's
 * `adminTls`) it serves HTTPS, with the same rules.
 */
export function startAdmin(gateway: Gateway, host: string, port: number, operators: AdminOperators, metrics?: Pick<Metrics, 'exposition'>, tls?: ListenerTls): Promise<Server> {
  const server = createListenerServer(tls, (req, res) => {
    const send = (status: number, body: unknown) => {
      const text = JSON.stringify(body);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    };
    /** False after answering 401/403 to a caller without what the path needs. */
    const permitted = (what: string, loopbackSuffices: boolean) => admitOperator(req, send, { ...operators, what: `GET ${what}`, loopbackSuffices }) !== undefined;
    if (req.url === '/healthz') return send(200, { status: 'ok' });
    if (req.url === '/readyz') return gateway.ready ? send(200, { status: 'ready' }) : send(503, { status: 'waiting for the routing table from the federation service' });
    if (req.url === '/stats') return permitted('/stats from another machine', true) ? send(200, { ...gateway.stats, relay: gateway.relayKind }) : undefined;
    if (req.url === '/metrics' && metrics) return void sendMetrics(metrics, res);
    if (req.url?.startsWith('/debug/connections')) {
      const url = new URL(req.url, 'http://admin');
      if (url.pathname === '/debug/connections') {
        if (!permitted('/debug/connections', false)) return;
        const limit = Number(url.searchParams.get('limit') ?? gateway.connections.capacity);
        return send(200, { connections: gateway.connections.recent({ remote: url.searchParams.get('remote') ?? undefined, limit: Number.isInteger(limit) && limit > 0 ? limit : undefined }) });
      }
    }
    return send(404, { error: 'try /healthz, /readyz, /metrics, /stats or /debug/connections?remote=<ip:port>' });
  });
  limitHttpServer(server);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}
