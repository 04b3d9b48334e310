import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Metrics } from './metrics.js';
import { limitHttpServer } from '../core/server-limits.js';
import { createListenerServer, type ListenerTls } from '../core/tls-files.js';

/** Answers a scrape: the Prometheus text format of `metrics`, or 500 if collecting failed. */
export async function sendMetrics(metrics: Pick<Metrics, 'exposition'>, res: ServerResponse): Promise<void> {
  try {
    const { contentType, body } = await metrics.exposition();
    res.writeHead(200, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
    res.end(body);
  } catch (err) {
    const body = `could not collect metrics: ${(err as Error).message}\n`;
    res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  }
}

export interface TelemetryServer {
  server: Server;
  /** host:port it listens on (the real port when asked for port 0). */
  address: string;
  close(): Promise<void>;
}

/**
 * The federation service's dashboard port (15014, `federation.dashboardPort`), and `isthmus
 * dash`'s: `/metrics` for Prometheus and `/healthz`; the dashboard (src/dashboard/) is served
 * here via `extra`. Plain HTTP, or HTTPS with `tls` (`federation.dashboardTls`, `--tls-cert`).
 */
export async function startTelemetryServer(opts: {
  host: string;
  port: number;
  metrics: Pick<Metrics, 'exposition'>;
  healthz: () => unknown;
  /** Tried after /metrics and /healthz (the dashboard), and first for other methods than GET; returns false to let the 404 (405) answer. */
  extra?: (req: IncomingMessage, res: ServerResponse) => boolean;
  tls?: ListenerTls | undefined;
}): Promise<TelemetryServer> {
  const server = createListenerServer(opts.tls, (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0];
    // The dashboard's writes (its manager view) are its own to answer; everything else here only reads.
    if (req.method !== 'GET' && req.method !== 'HEAD') return opts.extra?.(req, res) ? undefined : send(res, 405, { error: 'only GET' });
    if (path === '/metrics') return void sendMetrics(opts.metrics, res);
    if (path === '/healthz') return send(res, 200, opts.healthz());
    if (opts.extra?.(req, res)) return;
    return send(res, 404, { error: opts.extra ? 'try /, /metrics or /healthz' : 'try /metrics or /healthz' });
  });
  limitHttpServer(server);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = server.address() as AddressInfo;
  return {
    server,
    address: `${opts.host}:${bound.port}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
