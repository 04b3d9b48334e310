import { createTraceState, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Span, type Tracer as OtelTracer } from '@opentelemetry/api';
import { defaultResource, detectResources, envDetector, resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOffSampler, AlwaysOnSampler, BasicTracerProvider, BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler, type Sampler,
} from '@opentelemetry/sdk-trace-base';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';
import { setTracer, type ActiveSpan, type SpanAttributes, type SpanKindName, type SpanStart, type Tracer } from '../core/tracing.js';

/**
 * The OpenTelemetry SDK behind src/telemetry/tracing.ts, in a module of its own so that a
 * process without an OTLP endpoint never loads it (the SDK and its exporters are several MB of
 * a sidecar's memory; docs/benchmarks.md, "Memory of one sidecar process").
 */

let provider: BasicTracerProvider | undefined;

const kinds: Record<SpanKindName, SpanKind> = { client: SpanKind.CLIENT, server: SpanKind.SERVER, internal: SpanKind.INTERNAL };

/** Builds the provider and installs the core's tracer; the exporter reads its OTEL_* settings itself. */
export async function installProvider(serviceName: string, protocol: 'http/json' | 'http/protobuf', env: NodeJS.ProcessEnv): Promise<void> {
  // Only the exporter in use is loaded (the protobuf one brings protobufjs). Both read the
  // endpoint, headers, timeout and compression from the environment themselves.
  const exporter = protocol === 'http/json'
    ? new (await import('@opentelemetry/exporter-trace-otlp-http')).OTLPTraceExporter()
    : new (await import('@opentelemetry/exporter-trace-otlp-proto')).OTLPTraceExporter();
  const resource = defaultResource()
    .merge(resourceFromAttributes({ [ATTR_SERVICE_NAME]: serviceName }))
    .merge(detectResources({ detectors: [envDetector] }));
  provider = new BasicTracerProvider({ resource, sampler: samplerFrom(env), spanProcessors: [new BatchSpanProcessor(exporter)] });
  setTracer(new OtelBridge(provider.getTracer('isthmus')));
}

/** Sends every finished span now. */
export async function flushProvider(): Promise<void> {
  await provider?.forceFlush();
}

/** Flushes and stops the provider and uninstalls the tracer. */
export async function stopProvider(): Promise<void> {
  setTracer(undefined);
  const stopping = provider;
  provider = undefined;
  await stopping?.shutdown();
}

/** OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG; the default is parentbased_always_on, as the spec says. */
export function samplerFrom(env: NodeJS.ProcessEnv): Sampler {
  const name = (env.OTEL_TRACES_SAMPLER || 'parentbased_always_on').trim().toLowerCase();
  const arg = Number(env.OTEL_TRACES_SAMPLER_ARG);
  const ratio = () => new TraceIdRatioBasedSampler(Number.isFinite(arg) && arg >= 0 && arg <= 1 && env.OTEL_TRACES_SAMPLER_ARG !== undefined ? arg : 1);
  switch (name) {
    case 'always_on': return new AlwaysOnSampler();
    case 'always_off': return new AlwaysOffSampler();
    case 'traceidratio': return ratio();
    case 'parentbased_always_off': return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio': return new ParentBasedSampler({ root: ratio() });
    case 'parentbased_always_on': return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    default:
      process.emitWarning(`OTEL_TRACES_SAMPLER=${name} is not supported by isthmus; using parentbased_always_on`);
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
  }
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
