import { X509Certificate } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { fastify, LogController, type FastifyReply } from 'fastify';
import { IsthmusError, isIsthmusError } from '../core/errors.js';
import { keys } from '../core/keys.js';
import type { Logger } from '../core/log.js';
import { version } from '../core/version.js';
import type { Catalog } from '../model/catalog.js';
import { isRecord, ProbeRecordSchema } from '../model/records.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { Federation } from './federation.js';
import type { TrustFeed } from './trust-feed.js';
import { clusterRoleId } from '../trust/spiffe.js';
import { verifyChain } from '../trust/verify.js';
import type { WorkloadSigner } from './workload-signer.js';
import { Value } from '../core/typebox.js';
import { TrafficReportSchema, type TrafficReport } from '../model/traffic-report.js';
import { parseSpiffeId } from '../trust/spiffe.js';
import type { TrafficLedger } from './traffic-ledger.js';
import { StreamSlots } from '../core/server-limits.js';
import { ChangeFanout } from '../core/change-fanout.js';
import { SnapshotHistory, parsePosition } from './snapshot-history.js';
import type { ServiceList } from '../model/service-changes.js';
import { errorResponse } from '../sidecar/http-head.js';
import { compareText } from '../core/compare-text.js';

export type FederationApi = ReturnType<typeof buildApi>;

/** A long-polled route whose snapshot is a list of services, sent as changes to a reader that names its position. */
interface ChangesRoute {
  answer(query: Record<string, string | undefined>): unknown;
  /** Whether the reader's `since` is the current snapshot, or undefined when it names none of this process's. */
  holdsCurrent(query: Record<string, string | undefined>): boolean | undefined;
}

/** A caller whose client certificate verified: its identity, its leaf's issuer and root (fingerprints), and when the leaf expires. */
interface MeshCaller { identity: string; issuer: string | undefined; root: string | undefined; until: number }

/** What telling a caller needs of a request: its socket, and a log for certificates that do not verify. */
interface CallerRequest { raw: { socket: unknown }; log: Pick<Logger, 'warn'> }

export interface ApiOptions {
  federation: Federation;
  signer: WorkloadSigner;
  trustBundle: () => string[];
  tls: { certPem: string; keyPem: string; chainPem: string[] };
  logger: Logger;
  /** Served at /metrics (also on the plain-HTTP port 15014, for scrapers without the mesh root). */
  metrics?: Pick<Metrics, 'exposition'>;
  /** Takes the sidecars' POST /v1/reports; without it the route answers 404. */
  ledger?: TrafficLedger;
  /**
   * PEMs of this cluster's intermediate CAs, the one in use first, then earlier ones still valid
   * (after `isthmus ca rotate-intermediate`): reports and gateways are taken only from
   * certificates they signed.
   */
  clusterCas?: () => string[];
  /**
   * GET /v1/trust: the mesh's roots and the fingerprint of the intermediate in use, numbered and
   * long-polled like the catalog. A sidecar whose leaf has another issuer renews within seconds.
   */
  trust: TrustFeed;
  /** A gateway of this cluster reported in with this certificate (to tell which root it still holds). */
  onGatewayCertificate?: (id: string, leaf: { root: string; notAfter: number }) => void;
}

const maxWaitMs = 60_000;

/** Where a snapshot's changes are told: the federation's own events, or the trust feed's. */
type SnapshotChanges =
  | { source: Federation; event: 'catalog' | 'gateway-routes' | 'local-endpoints' | 'policies' }
  | { source: TrustFeed; event: 'trust' };

/**
 * The federation API (port 15010) for sidecars, gateways and operators, over TLS with the
 * federation's own certificate. Client certificates are requested and, except for /healthz,
 * /metrics and the certificate route, required (checked here, not by the TLS handshake): a
 * workload's first CSR authenticates with a bootstrap token, renewals with its certificate.
 */
export function buildApi(opts: ApiOptions) {
  const { federation } = opts;
  const app = fastify({
    loggerInstance: opts.logger.child({ component: 'api' }),
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 64 * 1024,
    // A request head or body that trickles in is cut off (long polls and streams are responses, not limited).
    connectionTimeout: 0,
    requestTimeout: 30_000,
    clientErrorHandler: refuseClientError,
    // A path fastify's router cannot decode (`/h%ealthz`) is refused in the API's error shape too.
    frameworkErrors: (err, request, reply) => {
      void (reply as FastifyReply).status(400).send({ error: { code: 'ISTHMUS_ERR_API_BAD_REQUEST', message: `${err.message} (${request.method} request); send a path that is valid percent-encoding` } });
    },
    https: {
      cert: [opts.tls.certPem, ...opts.tls.chainPem].join('\n'),
      key: opts.tls.keyPem,
      requestCert: true,
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
      // Node answers a request without Host with a bare 400 of its own; no route here reads Host,
      // so such a request is served (or refused) by the routes, in the API's error shape.
      requireHostHeader: false,
    },
  });

  // Node answers an Expect other than 100-continue with a bare 417 of its own (no body, nothing
  // to act on); the API gives it its error shape. The unread body is discarded by Node as usual.
  app.server.on('checkExpectation', (request: IncomingMessage, response: ServerResponse) => {
    const body = JSON.stringify({ error: { code: 'ISTHMUS_ERR_API_BAD_REQUEST', message: `the API cannot meet the expectation ${JSON.stringify(request.headers.expect)}; send Expect: 100-continue or no Expect header` } });
    response.writeHead(417, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
    response.end(body);
  });

  app.setErrorHandler((raw, request, reply) => {
    if (isIsthmusError(raw)) return reply.status(raw.status).send({ error: raw.toJSON() });
    const err = raw as Error & { statusCode?: number };
    const status = err.statusCode ?? 500;
    if (status >= 500) request.log.error({ err }, 'federation API error');
    const code = status < 500 ? 'ISTHMUS_ERR_API_BAD_REQUEST' : 'ISTHMUS_ERR_API_UNREACHABLE';
    return reply.status(status).send({ error: { code, message: err.message } });
  });

  // An unknown route or method is a caller's mistake, told in the API's own error shape.
  app.setNotFoundHandler((request, reply) => reply.status(404).send({
    error: { code: 'ISTHMUS_ERR_API_NOT_FOUND', message: `no ${request.method} ${request.url.split('?')[0]} in the federation API; docs/federation.md lists its routes` },
  }));

  /**
   * For a snapshot that is a list of services: a reader that names the one it holds
   * (`since=<epoch>.<generation>`, from its last answer) gets what changed since, when this
   * process still knows; otherwise, and without `since`, the snapshot whole with its position
   * (docs/federation.md, "Changes since a snapshot").
   */
  function withChanges<T extends ServiceList>(snapshot: () => T): ChangesRoute {
    const history = new SnapshotHistory<T>();
    return {
      answer: (query) => {
        const answer = history.answer(snapshot(), query.since);
        if (answer !== undefined) return answer;
        throw new IsthmusError('ISTHMUS_ERR_API_BAD_REQUEST', `since=${JSON.stringify(String(query.since).slice(0, 64))} is not a snapshot position: send back the "epoch" and "generation" of the last answer as <epoch>.<generation>, or leave since out for the whole snapshot`);
      },
      // A position of this process says exactly whether the reader is current; a catalog's
      // revision can stay while its content moves (a cluster going stale with time alone).
      holdsCurrent: (query) => {
        const since = parsePosition(query.since);
        if (since === undefined || since.epoch !== history.epoch) return undefined;
        return since.generation === history.record(snapshot()).generation;
      },
    };
  }

  /**
   * `GET <path>?version=<what you have>&wait=<seconds>` answers when the snapshot changes; with
   * `changes`, a reader's `since` decides whether it is current and the answer may be changes.
   */
  function longPoll(path: string, source: SnapshotChanges, snapshot: () => { version?: number; revision?: number }, changes?: ChangesRoute): void {
    const waiters = new ChangeFanout<unknown>((tell) => source.source.on(source.event, tell));
    app.get<{ Querystring: Record<string, string | undefined> }>(path, async (request) => {
      const { query } = request;
      const current = () => { const v = snapshot(); return v.version ?? v.revision; };
      const waitMs = Math.min(Number(query.wait ?? 0) * 1000 || 0, maxWaitMs);
      const holdsCurrent = query.version === undefined ? false : changes?.holdsCurrent(query) ?? Number(query.version) === current();
      // Resolves at the next change, when the caller goes away, or at the deadline.
      if (holdsCurrent && waitMs > 0) await waiters.next(waitMs, request.raw);
      return changes ? changes.answer(query) : snapshot();
    });
  }

  // Gateways and sidecars call in every few seconds over kept connections: who the caller is gets
  // verified once per connection (until its leaf expires), not once per request.
  const verifiedPeers = new WeakMap<TLSSocket, MeshCaller>();
  /** The caller's verified mesh identity (any trust domain of the mesh, as a client) and the CA that issued it. */
  const meshCaller = (request: CallerRequest): MeshCaller | undefined => {
    const socket = request.raw.socket as TLSSocket;
    const known = verifiedPeers.get(socket);
    if (known && known.until > Date.now()) return known;
    const chain = peerChain(socket);
    if (chain?.[0] === undefined) return undefined;
    try {
      // The peer's chain as Node gives it may stop at the leaf; our own intermediates are offered for that case.
      const verified = verifyChain({ leafPem: chain[0], intermediatesPem: [...chain.slice(1), ...(opts.clusterCas?.() ?? [])], rootsPem: opts.trustBundle(), purpose: 'client' });
      if (verified.identity === undefined) return undefined;
      const caller = { identity: verified.identity, issuer: verified.issuerChain[0]?.fingerprint256, root: verified.issuerChain.at(-1)?.fingerprint256, until: verified.notAfter.getTime() };
      verifiedPeers.set(socket, caller);
      return caller;
    } catch (err) {
      request.log.warn({ err: (err as Error).message }, 'a client certificate that does not verify');
      return undefined;
    }
  };

  // Every route needs a mesh certificate (a workload's, a gateway's, a federation's or an
  // operator's) but these: health and metrics (docs/security.md says why) and the certificate
  // route, where a bootstrap token is the credential and the signer decides.
  app.addHook('onRequest', async (request) => {
    const path = request.url.split('?')[0];
    if (path === '/healthz' || path === '/metrics' || (request.method === 'POST' && path === '/v1/certificates')) return;
    if (meshCaller(request) !== undefined) return;
    const presented = peerChain(request.raw.socket as TLSSocket) !== undefined;
    throw new IsthmusError(
      presented ? 'ISTHMUS_ERR_AUTH_CREDENTIAL_INVALID' : 'ISTHMUS_ERR_AUTH_CREDENTIAL_MISSING',
      presented
        ? `the client certificate presented for ${request.method} ${path} does not verify against the mesh's roots (the federation's log says why); present a current mesh or operator certificate`
        : `${request.method} ${path} needs a mesh certificate as the TLS client certificate: a workload's, a gateway's or an operator's (isthmus operator issue)`,
    );
  });

  app.get('/healthz', async () => ({ status: 'ok', cluster: federation.cluster, version, catalogRevision: federation.catalog.revision }));

  const { metrics } = opts;
  if (metrics) {
    app.get('/metrics', async (_request, reply) => {
      const { contentType, body } = await metrics.exposition();
      return reply.type(contentType).send(body);
    });
  }

  // Long-polled snapshots: `?version=<what you have>&wait=<seconds>` answers when it changes.
  longPoll('/v1/catalog', { source: federation, event: 'catalog' }, () => federation.catalog, withChanges(() => federation.catalog));

  const slots = new StreamSlots();
  const streams = new ChangeFanout<Catalog>((tell) => federation.on('catalog', tell));
  app.get('/v1/catalog/stream', (request, reply) => {
    const client = request.raw.socket.remoteAddress ?? 'unknown';
    const release = slots.take(client);
    if (!release) return reply.code(429).send({ error: { code: 'ISTHMUS_ERR_API_TOO_MANY_STREAMS', message: slots.refusal(client) } });
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
    const send = (catalog: Catalog) => res.write(`id: ${catalog.revision}\nevent: catalog\ndata: ${JSON.stringify(catalog)}\n\n`);
    send(federation.catalog);
    const keepAlive = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
    const stopSending = streams.add(send);
    // The caller's certificate was checked when the stream opened; the stream ends when it expires.
    const until = meshCaller(request)?.until ?? Date.now();
    const expiry = setTimeout(() => res.end(), Math.min(Math.max(0, until - Date.now()), 2 ** 31 - 1));
    request.raw.on('close', () => {
      release();
      clearInterval(keepAlive);
      clearTimeout(expiry);
      stopSending();
    });
  });

  app.get('/v1/status', async () => ({
    cluster: federation.cluster,
    revision: federation.mirror.revision,
    now: new Date().toISOString(),
    clusters: federation.mirror.clusterSyncs().map((s) => ({ ...s, lagMs: Date.now() - s.seenAt, seenAt: new Date(s.seenAt).toISOString() })),
    services: federation.services.map((s) => ({
      namespace: s.namespace,
      name: s.name,
      exported: federation.exportedServices().has(`${s.namespace}/${s.name}`),
      instances: s.instances.map((i) => ({ ...i })),
    })),
  }));

  longPoll('/v1/gateway/routes', { source: federation, event: 'gateway-routes' }, () => federation.gatewayRoutes, withChanges(() => federation.gatewayRoutes));

  longPoll('/v1/endpoints', { source: federation, event: 'local-endpoints' }, () => federation.localEndpoints, withChanges(() => federation.localEndpoints));

  // Traffic policies (HTTPRoute, TrafficSplit, isthmus.dev kinds) for sidecars, long-polled the same way.
  longPoll('/v1/policies', { source: federation, event: 'policies' }, () => federation.policies);

  // For writes, only certificates our own intermediate signed count: another cluster's workload or
  // gateway must not register gateways or book traffic here.
  // Fingerprints are remembered per list of PEMs: the list changes only with a new intermediate.
  let ours: { pems: string[]; fingerprints: Set<string> } | undefined;
  const ourCas = (): Set<string> | undefined => {
    const pems = opts.clusterCas?.();
    if (pems === undefined) return undefined;
    if (ours?.pems.length !== pems.length || ours.pems.some((p, i) => p !== pems[i])) ours = { pems, fingerprints: new Set(pems.map((p) => new X509Certificate(p).fingerprint256)) };
    return ours.fingerprints;
  };
  const localCaller = (request: CallerRequest): MeshCaller | undefined => {
    const caller = meshCaller(request);
    const cas = ourCas();
    return caller === undefined || (cas !== undefined && (caller.issuer === undefined || !cas.has(caller.issuer))) ? undefined : caller;
  };

  // Only this cluster's gateways may publish or withdraw a gateway: anyone else could draw the
  // mesh's traffic, or turn it away.
  const gatewayCaller = (request: CallerRequest, what: string): MeshCaller => {
    const expected = clusterRoleId(federation.loaded.config.trustDomain, federation.cluster, 'gateway');
    const caller = localCaller(request);
    if (caller?.identity !== expected) {
      throw new IsthmusError('ISTHMUS_ERR_TRUST_IDENTITY_DENIED', `only ${expected} may ${what} a gateway of ${federation.cluster}; present that certificate (the gateway makes it from the cluster's CA directory)`);
    }
    return caller;
  };
  const gatewayIdPattern = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
  // A replica's own name for itself (a random UUID per gateway process), so that replicas of one id count apart.
  const instancePattern = /^[-a-zA-Z0-9_.]{1,64}$/;

  app.post<{ Body: { id?: unknown; address?: unknown; zone?: unknown; admin?: unknown; instance?: unknown } }>('/v1/gateways', async (request) => {
    const caller = gatewayCaller(request, 'register');
    const { id, address, zone, admin, instance } = request.body ?? {};
    const hostPort = /^[^:\s]+:[0-9]{1,5}$/;
    if (typeof id !== 'string' || !gatewayIdPattern.test(id) || typeof address !== 'string' || !hostPort.test(address)
      || (admin !== undefined && (typeof admin !== 'string' || !hostPort.test(admin)))
      || (instance !== undefined && (typeof instance !== 'string' || !instancePattern.test(instance)))) {
      throw new IsthmusError('ISTHMUS_ERR_API_BAD_REQUEST', 'send {"id": "<dns label>", "address": "<host:port>", "zone": "<zone>", "admin": "<host:port, optional>", "instance": "<this replica\'s name, optional>"}');
    }
    const zones = federation.loaded.config.zones;
    const gatewayZone = typeof zone === 'string' && zones.includes(zone) ? zone : zones[0] ?? 'default';
    const ttlMs = federation.registerGateway({ id, address, zone: gatewayZone, admin: typeof admin === 'string' ? admin : undefined, instance: typeof instance === 'string' ? instance : undefined });
    if (caller.root !== undefined) opts.onGatewayCertificate?.(id, { root: caller.root, notAfter: caller.until });
    return { cluster: federation.cluster, id, zone: gatewayZone, ttlMs };
  });

  // A draining gateway withdraws itself (Federation.withdrawGateway); `?instance=` names the replica.
  app.delete<{ Params: { id: string }; Querystring: { instance?: unknown } }>('/v1/gateways/:id', async (request) => {
    gatewayCaller(request, 'withdraw');
    const { id } = request.params;
    const instance = request.query?.instance;
    if (!gatewayIdPattern.test(id) || (instance !== undefined && (typeof instance !== 'string' || !instancePattern.test(instance)))) {
      throw new IsthmusError('ISTHMUS_ERR_API_BAD_REQUEST', 'send DELETE /v1/gateways/<id, a dns label>?instance=<the replica\'s name it registered with, optional>');
    }
    return { cluster: federation.cluster, id, ...federation.withdrawGateway(id, typeof instance === 'string' ? instance : '') };
  });

  // The whole cluster × cluster probe matrix, as every federation publishes it (from our mirror).
  app.get('/v1/probes', async () => ({
    probes: federation.mirror.entries(keys.probes)
      .flatMap(([key, value]) => (key.slice(keys.probes.length).split('/').length === 2 && isRecord(ProbeRecordSchema, value) ? [value] : []))
      .sort((a, b) => compareText(a.from, b.from) || compareText(a.to, b.to)),
  }));

  const { ledger } = opts;
  if (ledger) {
    app.post<{ Body: unknown }>('/v1/reports', { bodyLimit: 1024 * 1024 }, async (request, reply) => {
      const identity = localCaller(request)?.identity;
      const id = identity === undefined ? undefined : parseSpiffeId(identity);
      if (identity === undefined || id?.namespace === undefined || id.trustDomain !== federation.loaded.config.trustDomain) {
        throw new IsthmusError('ISTHMUS_ERR_TRUST_IDENTITY_DENIED', `only workloads of ${federation.cluster} may report traffic here; present the workload certificate this cluster's federation issued`);
      }
      if (!Value.Check(TrafficReportSchema, request.body)) {
        const first = [...Value.Errors(TrafficReportSchema, request.body)][0];
        throw new IsthmusError('ISTHMUS_ERR_API_BAD_REQUEST', `a traffic report is {"version": 1, "routes": [...], "events": [...]}; ${first ? `${first.path || '(body)'}: ${first.message}` : 'it does not match'}`);
      }
      ledger.accept(request.body as TrafficReport, { identity, namespace: id.namespace, serviceAccount: id.serviceAccount });
      return reply.status(204).send();
    });
  }

  longPoll('/v1/trust', { source: opts.trust, event: 'trust' }, () => opts.trust.current);

  app.post<{ Body: { csr?: unknown } }>('/v1/certificates', async (request) => {
    const csr = request.body?.csr;
    if (typeof csr !== 'string') {
      throw new IsthmusError('ISTHMUS_ERR_API_BAD_REQUEST', 'send a JSON body {"csr": "<PEM certificate request>"}');
    }
    const auth = request.headers.authorization;
    const bearerToken = auth?.startsWith('Bearer ') ? auth.slice('Bearer '.length).trim() : undefined;
    return opts.signer.sign(csr, { bearerToken, peerChainPem: peerChain(request.raw.socket as TLSSocket) });
  });

  return app;
}

/**
 * Node's parser refused the bytes (not HTTP/1.1, a head over its size limit, a head that took
 * too long): the caller gets the API's JSON error, which says which, instead of fastify's
 * generic "Client Error"; the connection is closed. A caller already gone is not answered.
 */
function refuseClientError(err: Error & { code?: string }, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || !socket.writable) return void socket.destroy();
  const [status, reason, what] = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? [408, 'Request Timeout', 'no complete request head in time']
    : err.code === 'HPE_HEADER_OVERFLOW' ? [431, 'Request Header Fields Too Large', 'the request head is larger than the API accepts']
      : [400, 'Bad Request', 'these bytes are not an HTTP/1.1 request'];
  socket.end(errorResponse(status, reason, 'ISTHMUS_ERR_API_BAD_REQUEST', `${what} (${err.code ?? err.message}); send HTTP/1.1 as docs/federation.md describes`));
}

/** The client's certificate chain as PEM, leaf first; empty when none was sent. */
function peerChain(socket: TLSSocket): string[] | undefined {
  if (typeof socket.getPeerCertificate !== 'function') return undefined;
  const chain: string[] = [];
  let cert = socket.getPeerCertificate(true);
  const seen = new Set<string>();
  while (cert && cert.raw && !seen.has(cert.fingerprint256)) {
    seen.add(cert.fingerprint256);
    chain.push(new X509Certificate(cert.raw).toString());
    cert = cert.issuerCertificate;
  }
  return chain.length > 0 ? chain : undefined;
}
