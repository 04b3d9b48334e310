/**
 * The process's OpenTelemetry tracer provider, configured from the standard OTEL_* variables
 * (docs/tracing.md). Tracing is on only when OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
 * OTEL_EXPORTER_OTLP_ENDPOINT is set (and OTEL_SDK_DISABLED is not true, OTEL_TRACES_EXPORTER
 * is not none); otherwise nothing is installed, the data path makes no span, and the SDK
 * (./otel-provider.ts) is never loaded.
 */
export interface TracingStatus {
  enabled: boolean;
  protocol?: 'http/json' | 'http/protobuf';
  reason?: string;
}

let status: Promise<TracingStatus> | undefined;
let provider: typeof import('./otel-provider.js') | undefined;

/** Whether the environment asks for tracing, and with which OTLP protocol. Pure. */
export function tracingSettings(env: NodeJS.ProcessEnv): TracingStatus {
  const endpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || env.OTEL_EXPORTER_OTLP_ENDPOINT;
  if (!endpoint) return { enabled: false, reason: 'no OTLP endpoint set' };
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return { enabled: false, reason: 'OTEL_SDK_DISABLED=true' };
  if (env.OTEL_TRACES_EXPORTER?.trim().toLowerCase() === 'none') return { enabled: false, reason: 'OTEL_TRACES_EXPORTER=none' };
  const requested = (env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL || env.OTEL_EXPORTER_OTLP_PROTOCOL || 'http/protobuf').trim();
  const protocol = requested === 'http/json' ? 'http/json' : 'http/protobuf';
  if (requested !== protocol) process.emitWarning(`OTLP protocol ${requested} is not supported by isthmus; using http/protobuf`);
  return { enabled: true, protocol };
}

/**
 * Installs the process's tracer once (idempotent: several sidecars and gateways share a process
 * in `isthmus dev up`). `serviceName` is used when OTEL_SERVICE_NAME is not set.
 */
export function startTracing(serviceName = 'isthmus', env: NodeJS.ProcessEnv = process.env): Promise<TracingStatus> {
  status ??= (async () => {
    const settings = tracingSettings(env);
    if (!settings.enabled || !settings.protocol) return settings;
    const loaded = await import('./otel-provider.js');
    await loaded.installProvider(serviceName, settings.protocol, env);
    provider = loaded;
    return settings;
  })().catch((err: unknown) => {
    status = undefined;
    throw err;
  });
  return status;
}

/** Sends every finished span now (tests; before a process exits). */
export async function flushTracing(): Promise<void> {
  await provider?.flushProvider();
}

/** Flushes and stops the provider, uninstalls the tracer; a later startTracing reads the environment again. */
export async function stopTracing(): Promise<void> {
  const stopping = provider;
  provider = undefined;
  status = undefined;
  await stopping?.stopProvider();
}
