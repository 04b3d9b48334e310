import type { SampleInstance } from './sample-service.js';
import { killAfterMs, type FromApp, type SampleAppSpec, type ToApp } from './sample-app-process.js';

/**
 * The process of one sample app of `isthmus dev up --processes` (started by
 * sample-app-process.ts, which passes the spec as JSON): starts the app, says where it listens
 * over the IPC channel, and serves until SIGTERM, SIGINT or the channel closing.
 */
async function runChild(spec: SampleAppSpec): Promise<void> {
  const send = (message: FromApp) => process.send?.(message);
  let app: SampleInstance;
  try {
    const where = { service: spec.service, cluster: spec.cluster, zone: spec.zone, instance: spec.instance, host: spec.host, port: spec.port };
    app = spec.kind === 'grpc'
      ? await (await import('./grpc-echo.js')).startGrpcEchoInstance(where)
      : await (await import('./sample-service.js')).startSampleInstance({ ...where, version: spec.version });
  } catch (err) {
    send({ failed: (err as Error).message });
    process.disconnect?.();
    process.exitCode = 1;
    return;
  }
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    void app.close().finally(() => process.exit(0));
    setTimeout(() => process.exit(0), killAfterMs).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('disconnect', stop);
  process.on('message', (message: ToApp) => {
    if (typeof message?.delayMs === 'number') app.setDelay?.(message.delayMs);
  });
  send({ ready: app.address });
}

void runChild(JSON.parse(process.argv[2] ?? '{}') as SampleAppSpec);
