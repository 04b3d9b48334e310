import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { keys } from '../core/keys.js';
import { isRecord, TrafficRecordSchema, type TrafficRecord } from '../model/records.js';
import { buildOverview, probeRecords, sloPolicies, type Overview, type OverviewSource } from './overview.js';
import { splitRequests, statsOf, TrafficHistory } from './traffic-history.js';
import { StreamSlots } from '../core/server-limits.js';
import { ChangeFanout } from '../core/change-fanout.js';
import { IsthmusError, isIsthmusError } from '../core/errors.js';
import { admitOperator, operatorCookie, verifyOperatorToken } from '../trust/operator.js';
import type { FederationStore } from '../federation/store.js';
import { PolicyRecordSchema, type PolicyRecord } from '../model/policy-records.js';
import { kindsByName } from '../model/policy-kinds.js';
import { checkPolicyDocuments } from '../cli/policy-documents.js';
import { applyParsedPolicies } from '../federation/apply-policies.js';
import { editRequest, FaultEditSchema, rolloutPanel, serviceDetail, WeightsEditSchema, withFault, withWeights, type FaultEdit, type WeightsEdit } from './manager.js';
import { jsonNames, RolloutStartSchema, type RolloutStartInput } from '../federation/rollout-input.js';
import { rolloutActions, startRolloutFrom, type RolloutAction } from '../federation/rollouts.js';
import { RolloutRecordSchema } from '../model/rollout.js';
import { Type } from '../core/typebox.js';

/** The body of a rollout's pause, resume or abort: `{}` (JSON, so that no form can send it). */
const NoFieldsSchema = Type.Object({}, { additionalProperties: false });
import { trafficWindowSeconds } from './overview.js';

/**
 * Our page's own files. tsc does not copy them to dist/, so both src/dashboard/server.ts and
 * dist/dashboard/server.js (each two levels below the package root) read them from src/.
 */
const assetsDir = fileURLToPath(new URL('../../src/dashboard/assets/', import.meta.url));
const require = createRequire(import.meta.url);

/** URL path → [file, content type]. Nothing else is served: no path from the request reaches the disk. */
const assets: Record<string, [string, string]> = {
  '/': [`${assetsDir}index.html`, 'text/html; charset=utf-8'],
  '/assets/app.js': [`${assetsDir}app.js`, 'text/javascript; charset=utf-8'],
  '/assets/style.css': [`${assetsDir}style.css`, 'text/css; charset=utf-8'],
  '/assets/uplot.js': [require.resolve('uplot/dist/uPlot.iife.min.js'), 'text/javascript; charset=utf-8'],
  '/assets/uplot.css': [require.resolve('uplot/dist/uPlot.min.css'), 'text/css; charset=utf-8'],
  // Browsers ask for /favicon.ico whatever the page says; an SVG answers both names.
  '/favicon.ico': [`${assetsDir}favicon.svg`, 'image/svg+xml'],
  '/assets/favicon.svg': [`${assetsDir}favicon.svg`, 'image/svg+xml'],
};

export interface DashboardSource extends OverviewSource {
  on(event: 'catalog', listener: () => void): unknown;
  /** The sidecars reporting to this federation, for `/api/sidecars` (`isthmus trace` looks one up there). */
  sidecars?: () => unknown[];
  /**
   * Where the manager view's writes go (through `policy apply`'s checks and transaction); absent:
   * this dashboard takes no writes. Its etcd user needs write access to `/policies/`.
   */
  store?: FederationStore;
}

/**
 * Who may read (docs/security.md, "Endpoints"). The page and its assets are the same for everyone
 * and always served; the data under /api/ needs an operator credential unless `reads` is
 * `public`; /api/sidecars (every sidecar's admin address) always needs one.
 */
export interface DashboardAccess {
  reads: 'public' | 'operator';
  /** The roots an operator credential must chain to (the mesh bundle). */
  rootsPem: () => string[];
  /** Only operators of this trust domain count; undefined: an operator of any trust domain in the mesh. */
  trustDomain?: string | undefined;
}

export interface DashboardHandler {
  /** Answers the request and returns true if it is the dashboard's; false leaves it to the caller. */
  handle(req: IncomingMessage, res: ServerResponse): boolean;
  /** The document /api/overview answers, now (the SLO alerter reads its verdicts). */
  overview(): Overview;
  /** Ends every open stream and stops sampling. */
  close(): void;
}

const sampleEveryMs = 5000;
const minRetentionMs = 15 * 60_000;
const maxRetentionMs = 7 * 24 * 3600_000;
/** Samples kept at most: the resolution coarsens for long SLO windows instead. */
const maxSamples = 720;
/** Probe matrix samples kept for /api/series: an hour at one per 5 s. */
const probeSamplesKept = 720;

/** Every valid `/traffic/<from>` record in the mirror. */
export function trafficRecords(mirror: OverviewSource['mirror']): TrafficRecord[] {
  return mirror.entries(keys.traffic).flatMap(([key, value]) => (!key.slice(keys.traffic.length).includes('/') && isRecord(TrafficRecordSchema, value) ? [value] : []));
}

/** The dashboard on the federation's plain-HTTP port: the page, its assets, /api/overview and /api/stream (SSE). */
export function createDashboard(source: DashboardSource, opts: { access: DashboardAccess; pushIntervalMs?: number }): DashboardHandler {
  const streams = new Set<() => void>();
  const slots = new StreamSlots();
  /** Every open page's stream, told of catalog changes behind one listener on the source. */
  const changes = new ChangeFanout<void>((tell) => source.on('catalog', tell));
  const pushIntervalMs = opts.pushIntervalMs ?? 2000;
  // History for windows and SLOs, from the moment this process started: long enough for the
  // longest objective's window, at a resolution that keeps it to maxSamples.
  const retentionFor = () => Math.min(maxRetentionMs, Math.max(minRetentionMs, ...sloPolicies(source.mirror).map((p) => p.windowSeconds * 1000 + 60_000)));
  const probeSamples: { t: number; pairs: Map<string, { p50Ms: number | null; p99Ms: number | null }> }[] = [];
  let retentionMs = retentionFor();
  let history = new TrafficHistory({ resolutionMs: Math.max(sampleEveryMs, retentionMs / maxSamples), retentionMs });
  const sample = () => {
    const wanted = retentionFor();
    if (wanted > retentionMs) {
      // A longer objective appeared: keep the samples there are, at the coarser resolution from now on.
      retentionMs = wanted;
      const longer = new TrafficHistory({ resolutionMs: Math.max(sampleEveryMs, retentionMs / maxSamples), retentionMs });
      longer.adopt(history);
      history = longer;
    }
    const now = Date.now();
    history.observe(trafficRecords(source.mirror), now);
    // The probe matrix over time too, so a chart survives a reload (an hour, one point per sample).
    const last = probeSamples.at(-1);
    if (!last || now - last.t >= sampleEveryMs - 100) {
      probeSamples.push({ t: now, pairs: new Map(probeRecords(source.mirror).map((p) => [`${p.from}\u0000${p.to}`, { p50Ms: p.p50Ms, p99Ms: p.p99Ms }])) });
      if (probeSamples.length > probeSamplesKept) probeSamples.splice(0, probeSamples.length - probeSamplesKept);
    }
  };
  sample();
  const sampler = setInterval(sample, sampleEveryMs);
  sampler.unref();
  const overview = () => {
    sample();
    return buildOverview(source, history);
  };

  /** `until`: when the operator credential that opened it expires (the stream ends then); undefined for public reads. */
  function stream(req: IncomingMessage, res: ServerResponse, until: number | undefined): void {
    const client = req.socket.remoteAddress ?? 'unknown';
    const release = slots.take(client);
    if (!release) {
      sendJson(req, res, 429, { error: { code: 'ISTHMUS_ERR_API_TOO_MANY_STREAMS', message: slots.refusal(client) } });
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
    let seq = 0;
    const push = () => {
      seq += 1;
      res.write(`id: ${seq}\nevent: overview\ndata: ${JSON.stringify(overview())}\n\n`);
    };
    push();
    const timer = setInterval(push, pushIntervalMs);
    const stopPushing = changes.add(push);
    const expiry = until === undefined ? undefined : setTimeout(() => end(), Math.max(0, until - Date.now()));
    const end = () => {
      release();
      clearInterval(timer);
      clearTimeout(expiry);
      stopPushing();
      streams.delete(end);
      res.end();
    };
    streams.add(end);
    req.on('close', end);
  }

  const { access } = opts;
  /**
   * Undefined after answering 401/403 when the request lacks the credential `path` needs; else
   * until when the credential counts (Infinity for public reads).
   */
  const allowed = (req: IncomingMessage, res: ServerResponse, path: string): number | undefined => {
    if (access.reads === 'public' && path !== '/api/sidecars') return Infinity;
    return admitOperator(req, (status, body) => sendJson(req, res, status, body), { rootsPem: access.rootsPem(), trustDomain: access.trustDomain, what: `GET ${path}` });
  };

  /**
   * The manager view's writes (docs/dashboard.md, "The service page"): PUT (or POST)
   * /api/services/<ns>/<name>/weights|fault, POST …/rollout and …/rollout/pause|resume|abort.
   * Each always needs an operator credential, whatever `reads` says. Against cross-site
   * requests: the cookie is SameSite=Strict, and a write must be `content-type:
   * application/json`, which a form cannot send and a cross-origin script cannot send without a
   * preflight this server never allows. `run` gets the store and the parsed body.
   */
  async function write(req: IncomingMessage, res: ServerResponse, run: (store: FederationStore, body: unknown) => Promise<unknown>): Promise<void> {
    const refuse = (status: number, body: unknown) => sendJson(req, res, status, body);
    try {
      if (admitOperator(req, refuse, { rootsPem: access.rootsPem(), trustDomain: access.trustDomain, what: `${req.method ?? 'PUT'} ${req.url ?? ''}` }) === undefined) return;
      if (req.method !== 'PUT' && req.method !== 'POST') throw new IsthmusError('ISTHMUS_ERR_API_BAD_REQUEST', `${req.url ?? ''} takes PUT (or POST) with a JSON body`);
      if (!/^application\/json\s*(;|$)/i.test(req.headers['content-type'] ?? '')) {
        throw new IsthmusError('ISTHMUS_ERR_API_NOT_JSON', 'a dashboard write must be sent as content-type: application/json (what keeps a form on another site from making it)');
      }
      const store = source.store;
      if (!store) throw new IsthmusError('ISTHMUS_ERR_API_BAD_REQUEST', 'this dashboard has no store to write to; change policies with `isthmus policy apply`');
      sendJson(req, res, 200, await run(store, await readJsonBody(req)));
    } catch (err) {
      if (!isIsthmusError(err)) {
        sendJson(req, res, 500, { error: { code: 'ISTHMUS_ERR_INTERNAL_UNEXPECTED', message: (err as Error).message } });
        return;
      }
      sendJson(req, res, err.status, { error: err.toJSON() });
    }
  }

  /** A weights or fault edit: the stored policy's applied document, one field changed, through `policy apply`'s checks and transaction. */
  async function editPolicy(store: FederationStore, body: unknown, namespace: string, name: string, what: 'weights' | 'fault'): Promise<unknown> {
    const fields = what === 'fault' ? editRequest<FaultEdit>(FaultEditSchema, body) : editRequest<WeightsEdit>(WeightsEditSchema, body);
    const kind = 'kind' in fields ? fields.kind : 'FaultInjection';
    const key = keys.policy(kindsByName.get(kind)?.segment ?? kind.toLowerCase(), namespace, fields.policy);
    const held = await store.get<unknown>(key);
    const record = held && isRecord(PolicyRecordSchema, held.value) && held.value.services.includes(name) ? held.value : undefined;
    if (!record || !held) throw new IsthmusError('ISTHMUS_ERR_POLICY_NOT_FOUND', `no ${kind} ${namespace}/${fields.policy} applies to ${namespace}/${name}; reload the page, it may have been deleted`);
    const doc = what === 'fault' ? withFault(record, fields as FaultEdit) : withWeights(record, fields as WeightsEdit);
    const parsed = await checkPolicyDocuments([{ value: doc, source: `${kind} ${namespace}/${fields.policy}` }], 'the dashboard\'s change');
    return await applyParsedPolicies(parsed, store, false, { readAt: { [key]: held.modRevision } });
  }

  /** A rollout verb: the same functions as `isthmus rollout start|pause|resume|abort`, fields named as the JSON has them. */
  async function rolloutVerb(store: FederationStore, body: unknown, namespace: string, name: string, verb: 'start' | RolloutAction): Promise<unknown> {
    if (verb === 'start') {
      const input = editRequest<RolloutStartInput>(RolloutStartSchema, body);
      return { rollout: await startRolloutFrom(store, namespace, name, input, { by: 'dashboard', names: jsonNames }) };
    }
    editRequest<Record<string, never>>(NoFieldsSchema, body);
    return { rollout: await rolloutActions[verb](store, namespace, name, 'dashboard') };
  }

  return {
    handle(req, res) {
      const path = (req.url ?? '/').split('?')[0] ?? '/';
      const edit = /^\/api\/services\/([a-z0-9-]{1,63})\/([a-z0-9-]{1,63})\/(weights|fault|rollout(?:\/(?:pause|resume|abort))?)$/.exec(path);
      if (edit && req.method !== 'GET' && req.method !== 'HEAD') {
        const [, namespace, name, what] = edit as unknown as [string, string, string, string];
        void write(req, res, (store, body) => (what === 'weights' || what === 'fault'
          ? editPolicy(store, body, namespace, name, what)
          : rolloutVerb(store, body, namespace, name, what === 'rollout' ? 'start' : what.slice('rollout/'.length) as RolloutAction)));
        return true;
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') return false;
      const until = path.startsWith('/api/') ? allowed(req, res, path) : Infinity;
      if (until === undefined) return true;
      if (path === '/' && (req.url ?? '').includes('token=')) {
        login(req, res, access);
        return true;
      }
      if (path === '/api/overview') {
        sendJson(req, res, 200, overview());
        return true;
      }
      if (path === '/api/series') {
        // Real-traffic p50/p99 and rate of one cluster pair, one point per history sample.
        const query = new URL(req.url ?? '/', 'http://dashboard').searchParams;
        const from = query.get('from') ?? '';
        const to = query.get('to') ?? '';
        if (!/^[a-z0-9-]{1,63}$/.test(from) || !/^[a-z0-9-]{1,63}$/.test(to)) {
          sendJson(req, res, 400, { error: 'give the pair as ?from=<cluster>&to=<cluster> (cluster names), and optionally &minutes=<1..1440>' });
          return true;
        }
        const minutes = Math.min(24 * 60, Math.max(1, Number(query.get('minutes') ?? 10) || 10));
        sample();
        const points = history.steps(minutes * 60_000, Date.now()).map((step) => {
          const { requests, rps, successPercent, p50Ms, p99Ms } = statsOf(step.routes.filter((r) => r.from === from && r.to === to), step.seconds);
          return { t: step.t, requests, rps, successPercent, p50Ms, p99Ms };
        });
        const since = Date.now() - minutes * 60_000;
        const probes = probeSamples.filter((s) => s.t >= since).map((s) => ({ t: s.t, ...(s.pairs.get(`${from}\u0000${to}`) ?? { p50Ms: null, p99Ms: null }) }));
        sendJson(req, res, 200, { from, to, points, probes });
        return true;
      }
      const detail = /^\/api\/services\/([a-z0-9-]{1,63})\/([a-z0-9-]{1,63})$/.exec(path);
      if (detail) {
        const [, namespace, name] = detail as unknown as [string, string, string];
        const recent = (sample(), history.window(trafficWindowSeconds * 1000, Date.now()));
        const requestsTo = (backend: string) => splitRequests(recent.splits, `${namespace}/${name}`, backend);
        const stored = source.mirror.entries(keys.rollout(namespace, name)).find(([key]) => key === keys.rollout(namespace, name))?.[1];
        const rollout = isRecord(RolloutRecordSchema, stored)
          ? rolloutPanel(stored, overview().slos.find((v) => v.namespace === namespace && v.name === stored.objective), Date.now())
          : null;
        sendJson(req, res, 200, { ...serviceDetail(policyRecords(source.mirror), namespace, name, requestsTo, rollout), writable: source.store !== undefined });
        return true;
      }
      if (path === '/api/sidecars') {
        sendJson(req, res, source.sidecars ? 200 : 404, source.sidecars ? { sidecars: source.sidecars() } : { error: 'this dashboard is not a federation service: no sidecars report to it' });
        return true;
      }
      if (path === '/api/stream') {
        stream(req, res, Number.isFinite(until) ? until : undefined);
        return true;
      }
      const asset = assets[path === '/index.html' ? '/' : path];
      if (!asset) return false;
      const [file, type] = asset;
      readFile(file).then((body) => {
        res.writeHead(200, { 'content-type': type, 'content-length': body.length, 'cache-control': 'no-cache' });
        res.end(req.method === 'HEAD' ? undefined : body);
      }, (err: unknown) => {
        const text = `dashboard asset missing: ${(err as Error).message}\n`;
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text) });
        res.end(text);
      });
      return true;
    },
    overview,
    close() {
      clearInterval(sampler);
      for (const end of [...streams]) end();
    },
  };
}

/**
 * `/?token=<operator token>`: a browser signs in once; the token goes into an HttpOnly,
 * SameSite=Strict cookie that lives as long as the token, and the address bar loses it.
 */
function login(req: IncomingMessage, res: ServerResponse, access: DashboardAccess): void {
  const token = new URL(req.url ?? '/', 'http://dashboard').searchParams.get('token') ?? '';
  try {
    const operator = verifyOperatorToken(token, { rootsPem: access.rootsPem(), trustDomain: access.trustDomain });
    const maxAge = Math.max(0, Math.floor((operator.notAfter.getTime() - Date.now()) / 1000));
    res.writeHead(303, { location: '/', 'set-cookie': `${operatorCookie}=${token}; Max-Age=${maxAge}; Path=/; HttpOnly; SameSite=Strict`, 'cache-control': 'no-store', 'content-length': 0 });
    res.end();
  } catch (err) {
    if (!isIsthmusError(err)) throw err;
    sendJson(req, res, err.status, { error: err.toJSON() });
  }
}

function sendJson(req: IncomingMessage, res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  res.end(req.method === 'HEAD' ? undefined : body);
}

/** Every valid traffic-policy record in the mirror. */
function policyRecords(mirror: OverviewSource['mirror']): PolicyRecord[] {
  return mirror.entries(keys.policies).flatMap(([, value]) => (isRecord(PolicyRecordSchema, value) ? [value] : []));
}

const maxWriteBytes = 64 * 1024;

/** A write's body as JSON, at most 64 KiB; ISTHMUS_ERR_API_BAD_REQUEST for more or for anything else. */
async function readJsonBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > maxWriteBytes) throw new IsthmusError('ISTHMUS_ERR_API_BAD_REQUEST', `a dashboard write's body is at most ${maxWriteBytes / 1024} KiB`);
    chunks.push(chunk as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    throw new IsthmusError('ISTHMUS_ERR_API_BAD_REQUEST', 'the body of a dashboard write is not JSON');
  }
}
