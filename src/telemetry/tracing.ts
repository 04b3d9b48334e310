/**
 * The process's OpenTelemetry tracer provider, configured from the standard OTEL_* variables
 * (docs/tracing.md). Tracing is on only when OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
 * OTEL_EXPORTER_OTLP_ENDPOINT is set (and OTEL_SDK_DISABLED is not true, OTEL_TRACES_EXPORTER
 * is not none); otherwise nothing is installed, the data path makes no span, and the SDK
 * (./otel-provider.ts, @opentelemetry/sdk-node) is never loaded.
 */
export interface TracingStatus {
  enabled: boolean;
  reason?: string;
}

let status: Promise<TracingStatus> | undefined;
let provider: typeof import('./otel-provider.js') | undefined;

/** Whether the environment asks for tracing. Pure; the SDK reads the rest of OTEL_* itself. */
export function tracingSettings(env: NodeJS.ProcessEnv): TracingStatus {
  const endpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || env.OTEL_EXPORTER_OTLP_ENDPOINT;
  if (!endpoint) return { enabled: false, reason: 'no OTLP endpoint set' };
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return { enabled: false, reason: 'OTEL_SDK_DISABLED=true' };
  if (env.OTEL_TRACES_EXPORTER?.trim().toLowerCase() === 'none') return { enabled: false, reason: 'OTEL_TRACES_EXPORTER=none' };
  return { enabled: true };
}

/**
 * Installs the process's tracer once (idempotent: several sidecars and gateways share a process
 * in `isthmus dev up`). `serviceName` is used when OTEL_SERVICE_NAME is not set.
 */
export function startTracing(serviceName = 'isthmus', env: NodeJS.ProcessEnv = process.env): Promise<TracingStatus> {
  status ??= (async () => {
    const settings = tracingSettings(env);
    if (!settings.enabled) return settings;
    const loaded = await import('./otel-provider.js');
    await loaded.installProvider(serviceName, env);
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
