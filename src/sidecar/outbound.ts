import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import { channels } from '../core/channels.js';
import type { Logger } from '../core/log.js';
import { activeTracer, formatTraceparent, parseTraceparent } from '../core/tracing.js';
import type { PickedEndpoint } from '../model/balancer.js';
import { forwardableHeaders } from './headers.js';
import { relay } from './relay.js';
import type { RoutingTable } from './routing.js';
import { inboundReportHeader, traceHeader } from './trace.js';
import type { Upstreams } from './upstreams.js';

const requestChannel = channels.outboundRequest;
const maxBufferedBody = 1024 * 1024;
const maxAttempts = 3;
const idempotent = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']);
// ECONNRESET is not here: a reset can come after the request was written.
const connectErrors = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT', 'ERR_TLS_CERT_ALTNAME_INVALID', 'ERR_SSL_TLSV1_UNRECOGNIZED_NAME']);

/** Errors raised before the request could have been written (connect, TLS handshake, identity check). */
function neverSent(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return code !== undefined && (connectErrors.has(code) || code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_'));
}

/** `<service>.<ns>.mesh` or `<service>.<ns>.svc.clusterset.local` (the MCS API's name), any port. */
export function meshTarget(host: string | undefined): { service: string; namespace: string } | undefined {
  if (!host) return undefined;
  const name = host.replace(/:\d+$/, '').toLowerCase();
  const match = /^([a-z0-9-]+)\.([a-z0-9-]+)\.(?:mesh|svc\.clusterset\.local)$/.exec(name);
  return match ? { service: match[1] as string, namespace: match[2] as string } : undefined;
}

export interface OutboundDeps {
  cluster: string;
  routing: RoutingTable;
  upstreams: Upstreams;
  logger: Logger;
}

/**
 * The app's HTTP proxy (HTTP_PROXY=http://<this>): resolves mesh names through the catalog,
 * picks an endpoint by locality priority, and sends the request over a pooled mTLS connection,
 * directly to a local sidecar or through a remote cluster's gateway. A connect failure is
 * retried on another endpoint, then on the next priority; never an unknown name left hanging.
 */
export function createOutbound(deps: OutboundDeps, fixedTarget?: { service: string; namespace: string }): Server {
  const server = createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    void handle(deps, req, res, fixedTarget).catch((err: unknown) => {
      deps.logger.error({ err: (err as Error).message }, 'outbound request failed unexpectedly');
      if (!res.headersSent) reply(res, 502, 'ISTHMUS_ERR_INTERNAL_UNEXPECTED', 'the sidecar failed to forward the request');
      else res.destroy();
    });
  });
  server.on('connection', (socket) => socket.setNoDelay(true));
  server.on('clientError', (_err, socket) => socket.destroy());
  return server;
}

async function handle(deps: OutboundDeps, req: IncomingMessage, res: ServerResponse, fixedTarget?: { service: string; namespace: string }): Promise<void> {
  const started = performance.now();
  // A CLIENT span only when tracing is on (docs/tracing.md): otherwise no span object at all.
  const tracer = activeTracer();
  const span = tracer?.start({
    kind: 'client', name: 'outbound',
    parent: parseTraceparent(req.headers.traceparent, req.headers.tracestate),
    attributes: { 'isthmus.source_cluster': deps.cluster, 'http.request.method': req.method },
  });
  let last: PickedEndpoint | undefined;
  // One event per answered request, for src/telemetry/; labels only from the catalog (bounded).
  const answered = (code: number | 'connect_error', service?: string, cluster?: string) => {
    if (requestChannel.hasSubscribers) requestChannel.publish({ origin: deps.routing, service, cluster, code, seconds: (performance.now() - started) / 1000 });
    if (span) {
      span.end({
        // Span names stay bounded: a name the catalog does not know is not one.
        name: service ? `outbound ${service}` : 'outbound',
        attributes: {
          'isthmus.destination_service': service, 'isthmus.destination_cluster': cluster, 'isthmus.priority': last?.priority,
          'http.status_code': typeof code === 'number' ? code : undefined, 'http.response.status_code': typeof code === 'number' ? code : undefined,
          'network.peer.address': last?.address, 'isthmus.endpoint_kind': last?.kind,
        },
        ...(code === 'connect_error' || code >= 500 ? { error: String(code) } : {}),
      });
    }
  };
  const url = req.url?.startsWith('http://') ? new URL(req.url) : undefined;
  // A fixed listener (for apps that cannot use a proxy) serves one service whatever Host says.
  const host = fixedTarget ? `${fixedTarget.service}.${fixedTarget.namespace}.mesh` : (url?.host ?? req.headers.host);
  const target = fixedTarget ?? meshTarget(host);
  if (!target) {
    answered(503);
    return reply(res, 503, 'ISTHMUS_ERR_SERVICE_UNKNOWN', `${host ?? '(no host)'} is not a mesh name: use http://<service>.<namespace>.mesh/`);
  }
  const route = deps.routing.route(target.namespace, target.service);
  if (!route) {
    answered(503);
    return reply(res, 503, 'ISTHMUS_ERR_SERVICE_UNKNOWN', `${target.namespace}/${target.service} is not in the mesh: no cluster runs or exports it (isthmus services)`);
  }
  const service = `${target.namespace}/${target.service}`;
  if (route.load.status === 'no-healthy-endpoints') {
    answered(503, service);
    return reply(res, 503, 'ISTHMUS_ERR_SERVICE_UNKNOWN', `${target.namespace}/${target.service} has no healthy endpoint in any cluster (isthmus explain ${target.service} -n ${target.namespace})`);
  }
  const body = await readBody(req);
  if (body === 'too-large') {
    answered(413, service);
    return reply(res, 413, 'ISTHMUS_ERR_API_BAD_REQUEST', `request bodies over ${maxBufferedBody} bytes are not supported by the sidecar yet`);
  }
  const path = url ? `${url.pathname}${url.search}` : (req.url ?? '/');
  // Trace mode is the admin port's (POST /trace); an app cannot ask a destination for its report.
  const headers = forwardableHeaders(req.headers, traceHeader);
  headers.host = host ?? `${target.service}.${target.namespace}.mesh`;
  if (span) {
    // W3C: the upstream's parent is this span; tracestate goes on only with a valid traceparent.
    headers.traceparent = formatTraceparent(span.context);
    if (span.context.traceState) headers.tracestate = span.context.traceState;
    else delete headers.tracestate;
  }

  const tried = new Set<string>();
  let endpoint = deps.routing.pick(route);
  let lastError = 'no eligible endpoint';
  let lastCluster: string | undefined;
  for (let attempt = 1; endpoint && attempt <= maxAttempts; attempt += 1) {
    tried.add(endpoint.address);
    lastCluster = endpoint.cluster;
    last = endpoint;
    const upstream = route.upstreams.get(endpoint.address);
    if (!upstream) break; // cannot happen: every endpoint of a route has its key
    const { sni } = upstream;
    const pool = deps.upstreams.get(upstream);
    let response: Dispatcher.ResponseData;
    try {
      // undici would derive the TLS server name from the Host header; the mesh SNI must win.
      const options = { path, method: req.method as Dispatcher.HttpMethod, headers, body: body ?? null, servername: sni };
      response = await pool.request(options as Dispatcher.RequestOptions);
    } catch (err) {
      lastError = `${endpoint.address}: ${(err as Error).message}`;
      deps.routing.record(endpoint.address, { ok: false, kind: 'connect-error' }, { service, cluster: endpoint.cluster });
      // Retry elsewhere only when the app cannot have acted on it: it never connected, or the method is idempotent.
      if (!idempotent.has(req.method ?? '') && !neverSent(err)) break;
      endpoint = deps.routing.retries(route, endpoint, tried)[0];
      continue;
    }
    deps.routing.record(endpoint.address, response.statusCode >= 500 ? { ok: false, kind: '5xx' } : { ok: true, kind: 'ok' }, { service, cluster: endpoint.cluster });
    // A destination's trace report is for `isthmus trace` only, never for the app.
    res.writeHead(response.statusCode, forwardableHeaders(response.headers, inboundReportHeader));
    answered(response.statusCode, service, endpoint.cluster);
    relay(response.body, res);
    return;
  }
  answered(lastCluster === undefined ? 503 : 'connect_error', service, lastCluster);
  return reply(res, 503, 'ISTHMUS_ERR_SERVICE_UNKNOWN', `no endpoint of ${target.namespace}/${target.service} could be reached after ${tried.size} attempt(s); last: ${lastError}`);
}

async function readBody(req: IncomingMessage): Promise<Buffer | undefined | 'too-large'> {
  if (req.method === 'GET' || req.method === 'HEAD' || (req.headers['content-length'] === undefined && req.headers['transfer-encoding'] === undefined)) {
    req.resume();
    return undefined;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > maxBufferedBody) return 'too-large';
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

function reply(res: ServerResponse, status: number, code: string, message: string): void {
  const body = JSON.stringify({ error: { code, message } });
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-isthmus-error': code });
  res.end(body);
}
