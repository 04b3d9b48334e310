import type { ErrorCode } from '../core/errors.js';
import type { RouteExplanation } from './explain.js';
import type { RoutedConnection } from '../gateway/connection-log.js';

/**
 * `isthmus trace`: one real request through the mesh, told hop by hop. This file is the pure
 * part: the shapes, and how recorded facts (times on the calling sidecar's clock, what each end
 * verified, the gateway's own view) become a numbered hop list whose times add up to the total.
 * The I/O is in trace-request.ts (calling sidecar), inbound.ts (destination) and the CLI.
 */

/** Request header that asks the destination inbound for its report; never set on ordinary traffic. */
export const traceHeader = 'x-isthmus-trace';
/** Response header with the destination inbound's report (base64url JSON); stripped before any app sees it. */
export const inboundReportHeader = 'x-isthmus-trace-inbound';

export interface TraceRequest {
  service: string;
  /** Undefined: the sidecar picks the one namespace that has a service of that name. */
  namespace: string | undefined;
  path: string;
  method: string;
}

/** What the destination's inbound listener says about the traced request. */
export interface InboundReport {
  cluster: string | undefined;
  /** The workload's own SPIFFE ID (the certificate it presented). */
  identity: string;
  /** The caller's SPIFFE ID as the inbound verified it (the URI it puts in XFCC); null when refused. */
  client: string | null;
  /** Why the caller's certificate was refused, when it was. */
  clientError?: string;
  /** Why the service's authorization policies refused the request, when they did (docs/authorization.md). */
  authorization?: string;
  /** host:port the inbound listener accepted the connection on. */
  endpoint: string;
  /** host:port of the app behind it. */
  app: string;
  /** TCP accept to TLS handshake done, on this connection; absent after the connection's first request. */
  handshakeMs?: number;
  /** Request sent to the app until its response headers. */
  appMs: number;
}

/** One entry of a gateway's /debug/connections, as the gateway recorded it (the JSON is the gateway's type). */
export type GatewayView = RoutedConnection;

export type TraceStep = 'route' | 'connect' | 'handshake' | 'identity' | 'response';

export interface TraceFailure {
  step: TraceStep;
  code: ErrorCode;
  message: string;
}

/** The endpoint the sidecar chose, with what it expects there. */
export interface ChosenEndpoint {
  priority: number;
  region: string;
  cluster: string;
  zone: string;
  address: string;
  kind: 'local' | 'gateway';
  sni: string;
  /** SPIFFE IDs the catalog allows to serve the service in that cluster. */
  allowedIdentities: string[];
}

/** Everything the calling sidecar recorded; times are ms since the trace started, on its clock. */
export interface TraceFacts {
  service: string;
  namespace: string;
  method: string;
  path: string;
  from: { cluster: string; zone: string; identity: string | null };
  explanation: RouteExplanation;
  chosen?: ChosenEndpoint;
  /** ip:port of the traced connection on the calling side: what the first hop sees as its peer. */
  localAddress?: string;
  /** The SPIFFE ID in the server certificate, and why it was not accepted (if it was not). */
  serverIdentity?: string;
  serverIdentityError?: string;
  times: { routed?: number; connected?: number; secured?: number; headers?: number; done: number };
  status?: number;
  bytes?: number;
  inbound?: InboundReport;
  failure?: TraceFailure;
}

interface HopBase {
  hop: number;
  cluster: string;
  /** This hop's share of the total, in ms; the hops' shares add up to the total. */
  ms: number;
  error?: { code: ErrorCode; message: string };
}

export interface SidecarHop extends HopBase {
  kind: 'sidecar';
  zone: string;
  identity: string | null;
  decision: {
    status: string;
    primary: number | null;
    priorities: RouteExplanation['priorities'];
    chosen: ChosenEndpoint | null;
  };
  localAddress: string | null;
  timings: { routeMs: number };
}

export interface GatewayHop extends HopBase {
  kind: 'gateway';
  address: string;
  sni: string;
  /** The endpoint the gateway chose: from its own log, else from the destination's report. */
  endpoint: string | null;
  /** `gateway`: its own log answered; `inferred`: from the two ends' timings only. */
  view: 'gateway' | 'inferred';
  timings: { connectMs: number; clientHelloMs?: number; dialMs?: number; relayMs?: number };
  note?: string;
}

export interface DestinationHop extends HopBase {
  kind: 'destination';
  service: string;
  endpoint: string | null;
  /** What the calling sidecar checked: the server certificate's SPIFFE ID against the catalog. */
  serverIdentity: { presented: string | null; allowed: string[]; accepted: boolean; reason?: string };
  /** What the destination inbound checked: the client certificate's SPIFFE ID. */
  clientIdentity: { verified: string | null; reason?: string } | null;
  /** The destination's authorization refused the request: why. */
  authorization?: string;
  timings: { connectMs?: number; handshakeMs: number; inboundHandshakeMs?: number; forwardMs: number };
}

export interface AppHop extends HopBase {
  kind: 'app';
  address: string | null;
  status: number | null;
  bytes: number | null;
  timings: { answerMs: number | null; bodyMs: number };
}

export type TraceHop = SidecarHop | GatewayHop | DestinationHop | AppHop;

export interface TraceResult {
  service: string;
  from: { cluster: string; zone: string; identity: string | null };
  request: { method: string; path: string; host: string };
  /** The request was answered (any status). */
  answered: boolean;
  status: number | null;
  totalMs: number;
  localAddress: string | null;
  hops: TraceHop[];
  error?: TraceFailure & { hop?: number };
  notes: string[];
  /** What the calling sidecar recorded, so a reader with the gateway's view can assemble again (the admin answer only). */
  facts?: TraceFacts;
}

/** The admin body `{"service":"ledger","namespace":"demo","path":"/","method":"GET"}`; `service` may be `ledger.demo`. */
export function parseTraceRequest(body: unknown): TraceRequest | { error: string } {
  if (typeof body !== 'object' || body === null) return { error: 'send a JSON object: {"service": "<name>[.<namespace>]", "namespace"?, "path"?, "method"?}' };
  const b = body as Record<string, unknown>;
  const label = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
  if (typeof b.service !== 'string') return { error: 'service is required: "<name>" or "<name>.<namespace>"' };
  const [service = '', inName, ...rest] = b.service.toLowerCase().split('.');
  if (rest.length > 0) return { error: `service "${b.service}" must be "<name>" or "<name>.<namespace>"` };
  if (b.namespace !== undefined && typeof b.namespace !== 'string') return { error: 'namespace must be a string' };
  if (inName !== undefined && typeof b.namespace === 'string' && b.namespace !== inName) return { error: `service "${b.service}" names namespace ${inName}, but namespace says ${b.namespace}` };
  const namespace = inName ?? (b.namespace as string | undefined);
  if (!label.test(service) || (namespace !== undefined && !label.test(namespace))) return { error: 'service and namespace must be DNS labels' };
  const path = b.path ?? '/';
  if (typeof path !== 'string' || !path.startsWith('/') || /[\s]/.test(path)) return { error: 'path must start with / and hold no spaces' };
  const method = b.method ?? 'GET';
  if (typeof method !== 'string' || !/^[A-Z]+$/.test(method.toUpperCase())) return { error: 'method must be an HTTP method such as GET' };
  return { service, namespace, path, method: method.toUpperCase() };
}

export function encodeInboundReport(report: InboundReport): string {
  return Buffer.from(JSON.stringify(report)).toString('base64url');
}

/** The inbound's report, or undefined for a missing or malformed header (the app might have sent one). */
export function decodeInboundReport(value: string | string[] | undefined): InboundReport | undefined {
  if (typeof value !== 'string') return undefined;
  try {
    const parsed = JSON.parse(Buffer.from(value, 'base64url').toString('utf8')) as Partial<InboundReport>;
    const optionalNumber = (v: unknown) => v === undefined || (typeof v === 'number' && Number.isFinite(v) && v >= 0);
    if (typeof parsed.identity !== 'string' || typeof parsed.endpoint !== 'string' || typeof parsed.app !== 'string'
      || !(parsed.client === null || typeof parsed.client === 'string')
      || typeof parsed.appMs !== 'number' || !optionalNumber(parsed.appMs) || !optionalNumber(parsed.handshakeMs)) return undefined;
    return parsed as InboundReport;
  } catch {
    return undefined;
  }
}

/** ms to 3 decimals, rounded down: shares rounded down never add up to more than the total. */
const floor3 = (ms: number) => Math.floor(Math.max(0, ms) * 1000) / 1000;
const round3 = (ms: number) => Math.round(Math.max(0, ms) * 1000) / 1000;

/**
 * The hop list from the facts. The total (trace start to last body byte) is split so the shares
 * add up to it: routing → sidecar; TCP connect → first hop; the TLS handshake (which runs
 * through the gateway) → gateway (its ClientHello read and dial, or handshake minus the
 * destination's own handshake when the gateway's view is missing) and destination (the rest);
 * request to response headers → destination (forwarding) and app (its answer time, from the
 * destination's report); the response body → app.
 */
export function assembleTrace(facts: TraceFacts, gateway?: GatewayView): TraceResult {
  const t = facts.times;
  const routed = t.routed ?? t.done;
  const connected = t.connected ?? (t.routed === undefined ? routed : t.done);
  const secured = t.secured ?? (t.connected === undefined ? connected : t.done);
  const headers = t.headers ?? (t.secured === undefined ? secured : t.done);
  const done = t.done;
  const span = { route: routed, connect: connected - routed, handshake: secured - connected, exchange: headers - secured, body: done - headers };
  const chosen = facts.chosen;
  const inbound = facts.inbound;
  const answerMs = inbound ? Math.min(inbound.appMs, span.exchange) : undefined;
  const viaGateway = chosen?.kind === 'gateway';
  const notes: string[] = [];

  let gatewayShare = 0;
  if (viaGateway && gateway) gatewayShare = Math.min(gateway.clientHelloMs + gateway.dialMs, span.handshake);
  else if (viaGateway && inbound?.handshakeMs !== undefined) gatewayShare = Math.min(Math.max(0, span.handshake - inbound.handshakeMs), span.handshake);

  const hops: TraceHop[] = [];
  const failure = facts.failure;
  const sidecar: SidecarHop = {
    hop: 1, kind: 'sidecar', cluster: facts.from.cluster, zone: facts.from.zone, identity: facts.from.identity, ms: floor3(span.route),
    decision: { status: facts.explanation.status, primary: facts.explanation.primary, priorities: facts.explanation.priorities, chosen: chosen ?? null },
    localAddress: facts.localAddress ?? null,
    timings: { routeMs: round3(span.route) },
  };
  hops.push(sidecar);
  let failedHop: number | undefined = failure?.step === 'route' ? 1 : undefined;

  if (chosen && viaGateway) {
    const gatewayHop: GatewayHop = {
      hop: hops.length + 1, kind: 'gateway', cluster: chosen.cluster, address: chosen.address, sni: chosen.sni,
      endpoint: gateway?.endpoint ?? inbound?.endpoint ?? null,
      view: gateway ? 'gateway' : 'inferred',
      ms: floor3(span.connect + gatewayShare),
      timings: gateway
        ? { connectMs: round3(span.connect), clientHelloMs: round3(gateway.clientHelloMs), dialMs: round3(gateway.dialMs) }
        : { connectMs: round3(span.connect), ...(t.secured !== undefined && inbound?.handshakeMs !== undefined ? { relayMs: round3(gatewayShare) } : {}) },
    };
    if (!gateway) {
      gatewayHop.note = inbound?.handshakeMs !== undefined
        ? 'no view from the gateway itself: its time is the TLS handshake as the caller saw it minus the handshake as the destination saw it'
        : 'no view from the gateway itself, and no handshake time from the destination: its time is the TCP connect only';
    }
    hops.push(gatewayHop);
    if (failure?.step === 'connect' || (failure?.step === 'handshake' && /UNRECOGNIZED_NAME|ALERT_INTERNAL_ERROR|unrecognized name|internal error/i.test(failure.message))) failedHop = gatewayHop.hop;
  }

  if (chosen && (t.connected !== undefined || !viaGateway)) {
    const presented = facts.serverIdentity ?? null;
    const accepted = presented !== null && facts.serverIdentityError === undefined && chosen.allowedIdentities.includes(presented);
    const forward = Math.max(0, span.exchange - (answerMs ?? 0));
    const destination: DestinationHop = {
      hop: hops.length + 1, kind: 'destination', cluster: chosen.cluster, service: `${facts.namespace}/${facts.service}`,
      endpoint: viaGateway ? (inbound?.endpoint ?? gateway?.endpoint ?? null) : chosen.address,
      serverIdentity: { presented, allowed: chosen.allowedIdentities, accepted, ...(facts.serverIdentityError ? { reason: facts.serverIdentityError } : {}) },
      clientIdentity: inbound ? { verified: inbound.client, ...(inbound.clientError ? { reason: inbound.clientError } : {}) } : null,
      ...(typeof inbound?.authorization === 'string' ? { authorization: inbound.authorization } : {}),
      ms: floor3((viaGateway ? 0 : span.connect) + span.handshake - gatewayShare + forward),
      timings: {
        ...(viaGateway ? {} : { connectMs: round3(span.connect) }),
        handshakeMs: round3(span.handshake),
        ...(inbound?.handshakeMs !== undefined ? { inboundHandshakeMs: round3(inbound.handshakeMs) } : {}),
        forwardMs: round3(forward),
      },
    };
    hops.push(destination);
    if (failedHop === undefined && failure && failure.step !== 'route') failedHop = destination.hop;
    if (t.headers !== undefined && !inbound) notes.push('the destination sent no trace report (an older sidecar, or something else answered): its identity check and the app\'s time are unknown');
  }

  if (chosen && t.headers !== undefined) {
    hops.push({
      hop: hops.length + 1, kind: 'app', cluster: inbound?.cluster ?? chosen.cluster, address: inbound?.app ?? null,
      status: facts.status ?? null, bytes: facts.bytes ?? null,
      ms: floor3((answerMs ?? 0) + span.body),
      timings: { answerMs: answerMs === undefined ? null : round3(answerMs), bodyMs: round3(span.body) },
    });
  }

  if (failure && failedHop !== undefined) {
    const hop = hops[failedHop - 1];
    if (hop) hop.error = { code: failure.code, message: failure.message };
  }
  return {
    service: `${facts.namespace}/${facts.service}`,
    from: facts.from,
    request: { method: facts.method, path: facts.path, host: `${facts.service}.${facts.namespace}.mesh` },
    answered: failure === undefined && facts.status !== undefined,
    status: facts.status ?? null,
    totalMs: round3(done),
    localAddress: facts.localAddress ?? null,
    hops,
    ...(failure ? { error: { ...failure, ...(failedHop !== undefined ? { hop: failedHop } : {}) } } : {}),
    notes,
  };
}

const ms = (n: number | null | undefined) => (n === null || n === undefined ? '?' : `${n < 10 ? n.toFixed(2) : n.toFixed(1)} ms`);

/** The hop list as a person reads it (`isthmus trace`), like traceroute: one numbered block per hop. */
export function formatTrace(r: TraceResult): string {
  const outcome = r.answered ? `${r.status}` : `FAILED${r.error ? ` (${r.error.code})` : ''}`;
  const lines = [`trace ${r.service} from ${r.from.cluster} (zone ${r.from.zone}${r.from.identity ? `, ${r.from.identity}` : ''}): ${r.request.method} http://${r.request.host}${r.request.path} → ${outcome} in ${ms(r.totalMs)}`, ''];
  for (const hop of r.hops) {
    lines.push(...formatHop(hop).map((line, i) => (i === 0 ? `${String(hop.hop).padStart(2)}  ${line}` : `      ${line}`)));
    if (hop.error) lines.push(`      ✗ ${hop.error.code}: ${hop.error.message}`);
    lines.push('');
  }
  if (r.error && r.error.hop === undefined) lines.push(`✗ ${r.error.code}: ${r.error.message}`, '');
  for (const note of r.notes) lines.push(`note: ${note}`);
  return `${lines.join('\n').trimEnd()}\n`;
}

function formatHop(hop: TraceHop): string[] {
  switch (hop.kind) {
    case 'sidecar': {
      const d = hop.decision;
      const lines = [`${hop.cluster} sidecar (zone ${hop.zone})  ${ms(hop.ms)}`];
      lines.push(`routing: ${d.status === 'no-healthy-endpoints' ? 'NO HEALTHY ENDPOINT' : `P${d.primary} takes most traffic`}`);
      for (const p of d.priorities) lines.push(`  P${p.priority} ${String(p.load).padStart(3)}%  ${p.healthy}/${p.total} healthy  — ${p.reason}`);
      if (d.chosen) {
        const c = d.chosen;
        lines.push(`chose P${c.priority} ${c.cluster}/${c.zone} ${c.address} (${c.kind === 'gateway' ? `gateway of ${c.cluster}` : 'local sidecar'}), SNI ${c.sni}`);
      }
      if (hop.localAddress) lines.push(`connection from ${hop.localAddress}`);
      return lines;
    }
    case 'gateway': {
      const lines = [`${hop.cluster} gateway ${hop.address}  ${ms(hop.ms)}`];
      lines.push(`SNI ${hop.sni}${hop.endpoint ? ` → endpoint ${hop.endpoint}${hop.view === 'gateway' ? ' (the gateway\'s own log)' : ' (as the destination reported it)'}` : ''}`);
      const t = hop.timings;
      lines.push(hop.view === 'gateway'
        ? `TCP connect ${ms(t.connectMs)}, ClientHello read ${ms(t.clientHelloMs)}, dial to endpoint ${ms(t.dialMs)}`
        : `TCP connect ${ms(t.connectMs)}${t.relayMs !== undefined ? `, relaying the handshake about ${ms(t.relayMs)} (inferred)` : ''}`);
      if (hop.note) lines.push(`(${hop.note})`);
      return lines;
    }
    case 'destination': {
      const lines = [`${hop.cluster} sidecar of ${hop.service}${hop.endpoint ? ` ${hop.endpoint}` : ''}  ${ms(hop.ms)}`];
      const s = hop.serverIdentity;
      lines.push(`server identity ${s.presented ?? '(none)'}: ${s.accepted ? 'allowed' : 'NOT ALLOWED'} (catalog allows ${s.allowed.join(', ') || 'no identity'})${s.reason && !s.accepted ? ` — ${s.reason}` : ''}`);
      if (hop.clientIdentity) lines.push(`client identity ${hop.clientIdentity.verified ?? 'REFUSED'}, verified by the destination${hop.clientIdentity.reason ? ` — ${hop.clientIdentity.reason}` : ''}`);
      if (hop.authorization) lines.push(`authorization REFUSED the request — ${hop.authorization}`);
      const t = hop.timings;
      lines.push([
        ...(t.connectMs !== undefined ? [`TCP connect ${ms(t.connectMs)}`] : []),
        `TLS handshake ${ms(t.handshakeMs)} end to end${t.inboundHandshakeMs !== undefined ? ` (${ms(t.inboundHandshakeMs)} at the destination)` : ''}`,
        `forwarding ${ms(t.forwardMs)}`,
      ].join(', '));
      return lines;
    }
    case 'app':
      return [
        `${hop.cluster} app${hop.address ? ` ${hop.address}` : ''}  ${ms(hop.ms)}`,
        `${hop.status ?? '?'}, answered in ${ms(hop.timings.answerMs)}, body ${ms(hop.timings.bodyMs)}${hop.bytes !== null ? ` (${hop.bytes} bytes)` : ''}`,
      ];
  }
}
