import { context, createTraceState, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Span, type Tracer as OtelTracer } from '@opentelemetry/api';
import { NodeSDK } from '@opentelemetry/sdk-node';
import { setTracer, type ActiveSpan, type SpanAttributes, type SpanKindName, type SpanStart, type Tracer } from '../core/tracing.js';

/**
 * The OpenTelemetry SDK behind src/telemetry/tracing.ts: `@opentelemetry/sdk-node`'s NodeSDK,
 * which reads the standard OTEL_* configuration itself (exporter and its protocol, grpc,
 * http/protobuf or http/json; endpoint, headers, timeout, compression; sampler; resource
 * attributes and detectors; propagators; batch settings). In a module of its own so that a
 * process without an OTLP endpoint never loads it (the SDK and its exporters are many MB of a
 * sidecar's memory; docs/benchmark-history.md, "Memory results").
 */

let sdk: NodeSDK | undefined;

const kinds: Record<SpanKindName, SpanKind> = { client: SpanKind.CLIENT, server: SpanKind.SERVER, internal: SpanKind.INTERNAL };

/**
 * Starts the SDK for traces only and installs the core's tracer. `serviceName` is the
 * resource's service.name unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES names one.
 */
export async function installProvider(serviceName: string, env: NodeJS.ProcessEnv): Promise<void> {
  const named = Boolean(env.OTEL_SERVICE_NAME) || /(^|,)\s*service\.name\s*=/.test(env.OTEL_RESOURCE_ATTRIBUTES ?? '');
  sdk = new NodeSDK({
    ...(named ? {} : { serviceName }),
    // Traces only: Isthmus's metrics are Prometheus (docs/metrics.md) and its logs pino lines,
    // so no meter or log exporter starts (their OTEL_*_EXPORTER defaults would send to OTLP too).
    metricReaders: [],
    logRecordProcessors: [],
    // The data path makes its own spans (src/core/tracing.ts); no library is patched.
    instrumentations: [],
  });
  sdk.start();
  setTracer(new OtelBridge(trace.getTracer('isthmus')));
}

/** Sends every finished span now. */
export async function flushProvider(): Promise<void> {
  const provider = trace.getTracerProvider() as unknown as { getDelegate?: () => { forceFlush?: () => Promise<void> } };
  await provider.getDelegate?.().forceFlush?.();
}

/** Flushes and stops the SDK, uninstalls the tracer, and frees the globals it set so a later start can set them again. */
export async function stopProvider(): Promise<void> {
  setTracer(undefined);
  const stopping = sdk;
  sdk = undefined;
  await stopping?.shutdown();
  trace.disable();
  context.disable();
  propagation.disable();
}

/** The core's Tracer (src/core/tracing.ts) over an OpenTelemetry tracer. */
class OtelBridge implements Tracer {
  constructor(private readonly tracer: OtelTracer) {}

  start(start: SpanStart): ActiveSpan {
    const { parent } = start;
    const context = parent
      ? trace.setSpanContext(ROOT_CONTEXT, {
        traceId: parent.traceId, spanId: parent.spanId, traceFlags: parent.flags, isRemote: true,
        ...(parent.traceState ? { traceState: createTraceState(parent.traceState) } : {}),
      })
      : ROOT_CONTEXT;
    const span = this.tracer.startSpan(start.name, { kind: kinds[start.kind], attributes: clean(start.attributes) }, context);
    return new BridgedSpan(span);
  }
}

class BridgedSpan implements ActiveSpan {
  readonly context;
  private ended = false;

  constructor(private readonly span: Span) {
    const c = span.spanContext();
    const state = c.traceState?.serialize();
    this.context = { traceId: c.traceId, spanId: c.spanId, flags: c.traceFlags, ...(state ? { traceState: state } : {}) };
  }

  setAttributes(attributes: SpanAttributes): void {
    if (!this.ended) this.span.setAttributes(clean(attributes));
  }

  end(result?: { name?: string; attributes?: SpanAttributes; error?: string }): void {
    if (this.ended) return;
    this.ended = true;
    if (result?.name) this.span.updateName(result.name);
    if (result?.attributes) this.span.setAttributes(clean(result.attributes));
    if (result?.error !== undefined) this.span.setStatus({ code: SpanStatusCode.ERROR, message: result.error });
    this.span.end();
  }
}

function clean(attributes: SpanAttributes | undefined): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const [key, value] of Object.entries(attributes ?? {})) if (value !== undefined) out[key] = value;
  return out;
}
