import { join } from 'node:path';
import { startDevSidecar, type DevSidecar, type SidecarRunner } from './dev-sidecar.js';
import { startRedisInstance } from './redis-sample.js';
import { startSampleAppProcess, type SampleAppProcessOptions } from './sample-app-process.js';
import { startSampleInstance, type SampleInstance } from './sample-service.js';

export interface SampleWorkloadSpec {
  cluster: string;
  zone: string;
  namespace: string;
  service: string;
  instance: string;
  host: string;
  /** The app: the HTTP sample (default), or `redis-server`, a TCP service behind an `inbound.appProtocol: tcp` sidecar. */
  app?: 'http' | 'redis';
  /** Where an app that needs a working dir (redis) makes its temporary one; the system's temp dir if absent. */
  appTempRoot?: string | undefined;
  appPort: number;
  /** The sidecar's inbound mTLS port: the address registered for this instance. */
  inboundPort: number;
  outboundPort: number;
  adminPort: number;
  federationUrl: string;
  rootCertFile: string;
  bootstrapToken: string;
  stateDir: string;
  /** In this process with a logger, or as its own `isthmus sidecar` process (`dev up --processes`). */
  sidecar: SidecarRunner;
  reportIntervalMs?: number | undefined;
  /** `grpc`: the gRPC echo sample (grpc-echo.ts), served h2c; the HTTP sample otherwise. */
  kind?: 'http' | 'grpc';
  /** The instance's `version` label, which the HTTP sample names in every answer. */
  version?: string | undefined;
  /**
   * Run the HTTP or gRPC sample in a process of its own (`dev up --processes`), logging to
   * `logFile`; in this process when absent. redis-server is always a process of its own.
   */
  appProcess?: SampleAppProcessOptions | undefined;
}

/**
 * One sample instance of the dev mesh: the app and its sidecar, which stop and start together
 * as a pod would. A restart reuses the certificate the sidecar saved in its state dir. The app
 * and the sidecar each may run in a process of their own (spec.appProcess, spec.sidecar); start()
 * then resolves once the app listens and the sidecar's admin /readyz answers 200.
 */
export class SampleWorkload {
  private app: SampleInstance | undefined;
  private sidecar: DevSidecar | undefined;

  constructor(readonly spec: SampleWorkloadSpec) {}

  get inbound(): string {
    return `${this.spec.host}:${this.spec.inboundPort}`;
  }

  get appAddress(): string {
    return `${this.spec.host}:${this.spec.appPort}`;
  }

  get running(): boolean {
    return this.app !== undefined;
  }

  async start(): Promise<void> {
    if (this.app) return;
    const s = this.spec;
    const where = { service: s.service, cluster: s.cluster, zone: s.zone, instance: s.instance, host: s.host, port: s.appPort };
    // gRPC is loaded only where a gRPC sample runs.
    this.app = s.app === 'redis'
      ? await startRedisInstance({ ...where, tempRoot: s.appTempRoot })
      : s.appProcess ? await startSampleAppProcess({ ...where, kind: s.kind ?? 'http', version: s.version }, s.appProcess)
        : s.kind === 'grpc' ? await (await import('./grpc-echo.js')).startGrpcEchoInstance(where) : await startSampleInstance({ ...where, version: s.version });
    try {
      this.sidecar = await startDevSidecar({
        cluster: s.cluster, zone: s.zone, namespace: s.namespace, service: s.service,
        federation: { url: s.federationUrl, rootCert: s.rootCertFile },
        stateDir: s.stateDir,
        outbound: { listen: `${s.host}:${s.outboundPort}` },
        inbound: {
          listen: this.inbound, app: this.appAddress,
          ...(s.app === 'redis' ? { appProtocol: 'tcp' as const } : s.kind === 'grpc' ? { appProtocol: 'h2c' as const } : {}),
        },
        admin: { listen: `${s.host}:${s.adminPort}` },
        listeners: [],
      }, { bootstrapToken: s.bootstrapToken, reportIntervalMs: s.reportIntervalMs }, s.sidecar);
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  /** Makes the HTTP sample answer `ms` later from now on (0: at once again); the others ignore it. */
  setAppDelay(ms: number): void {
    this.app?.setDelay?.(ms);
  }

  async stop(): Promise<void> {
    const { app, sidecar } = this;
    this.app = undefined;
    this.sidecar = undefined;
    await sidecar?.stop();
    await app?.close();
  }
}

export const sidecarStateDir = (stateDir: string, cluster: string, instance: string) => join(stateDir, 'sidecars', cluster, instance);
