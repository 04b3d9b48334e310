/**
 * W3C Trace Context (https://www.w3.org/TR/trace-context/) and the tiny tracing interface the
 * data path calls. src/telemetry/tracing.ts implements it with OpenTelemetry and installs it
 * with `setTracer` when an OTLP endpoint is configured; until then `activeTracer()` is
 * undefined and the data path creates no span object at all (one function call per request).
 *
 * Why an interface and not a diagnostics channel (the core's other events are channels,
 * src/core/channels.ts): the outbound must inject the new span's id into the upstream request before it is
 * sent, so the start of a span needs an answer back. The core still never imports OpenTelemetry.
 */

/** One `traceparent` header, parsed. Ids are lowercase hex; `flags` bit 0 is "sampled". */
export interface TraceContext {
  traceId: string;
  spanId: string;
  flags: number;
  /** The `tracestate` header that came with it, verbatim, when there was one. */
  traceState?: string;
}

const traceparentPattern = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
const zeroTraceId = '0'.repeat(32);
const zeroSpanId = '0'.repeat(16);

/**
 * Parses a `traceparent` header (version 00; a later version is read by its first four fields,
 * as the spec asks). Undefined when absent or invalid: version ff, uppercase hex, wrong lengths,
 * an all-zero trace or span id, or trailing data on version 00.
 */
export function parseTraceparent(header: string | string[] | undefined, traceState?: string | string[]): TraceContext | undefined {
  if (header === undefined || Array.isArray(header)) return undefined;
  const match = traceparentPattern.exec(header.trim());
  if (!match) return undefined;
  const [, version, traceId, spanId, flags, rest] = match as unknown as [string, string, string, string, string, string | undefined];
  if (version === 'ff' || (version === '00' && rest !== undefined)) return undefined;
  if (traceId === zeroTraceId || spanId === zeroSpanId) return undefined;
  const state = Array.isArray(traceState) ? traceState.join(',') : traceState;
  return { traceId, spanId, flags: Number.parseInt(flags, 16), ...(state ? { traceState: state } : {}) };
}

/** `00-<trace id>-<span id>-<flags>`: always version 00, whatever version was received. */
export function formatTraceparent(context: Pick<TraceContext, 'traceId' | 'spanId' | 'flags'>): string {
  return `00-${context.traceId}-${context.spanId}-${(context.flags & 0xff).toString(16).padStart(2, '0')}`;
}

export type SpanKindName = 'client' | 'server' | 'internal';
export type SpanAttributes = Record<string, string | number | boolean | undefined>;

export interface SpanStart {
  kind: SpanKindName;
  name: string;
  /** The remote parent (an incoming traceparent); none starts a new trace. */
  parent?: TraceContext | undefined;
  attributes?: SpanAttributes;
}

/** A started span. `end` may be called more than once; only the first counts. */
export interface ActiveSpan {
  /** This span's own context: what to send on as `traceparent`. */
  readonly context: TraceContext;
  setAttributes(attributes: SpanAttributes): void;
  end(result?: { name?: string; attributes?: SpanAttributes; error?: string }): void;
}

export interface Tracer {
  start(span: SpanStart): ActiveSpan;
}

let current: Tracer | undefined;

/** Installed by src/telemetry/tracing.ts (process-wide); undefined turns tracing off. */
export function setTracer(tracer: Tracer | undefined): void {
  current = tracer;
}

/** The process's tracer, or undefined when tracing is off: then create no span. */
export function activeTracer(): Tracer | undefined {
  return current;
}
