import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../core/log.js';
import type { RunningSidecar } from '../sidecar/sidecar.js';
import { startSampleInstance, type SampleInstance } from './sample-service.js';

export interface SampleWorkloadSpec {
  cluster: string;
  zone: string;
  namespace: string;
  service: string;
  instance: string;
  host: string;
  appPort: number;
  /** The sidecar's inbound mTLS port: the address registered for this instance. */
  inboundPort: number;
  outboundPort: number;
  adminPort: number;
  federationUrl: string;
  rootCertFile: string;
  bootstrapToken: string;
  stateDir: string;
  logger: Logger;
  reportIntervalMs?: number | undefined;
}

/**
 * One sample instance of the dev mesh: the app and its sidecar, which stop and start together
 * as a pod would. A restart reuses the certificate the sidecar saved in its state dir.
 */
export class SampleWorkload {
  private app: SampleInstance | undefined;
  private sidecar: RunningSidecar | undefined;

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
    const { runSidecar } = await import('../sidecar/sidecar.js');
    const s = this.spec;
    this.app = await startSampleInstance({ service: s.service, cluster: s.cluster, zone: s.zone, instance: s.instance, host: s.host, port: s.appPort });
    try {
      this.sidecar = await runSidecar({
        cluster: s.cluster, zone: s.zone, namespace: s.namespace, service: s.service,
        federation: { url: s.federationUrl, rootCert: s.rootCertFile },
        stateDir: s.stateDir, stateDirPath: s.stateDir,
        rootCertPem: readFileSync(s.rootCertFile, 'utf8'), bootstrapToken: s.bootstrapToken,
        outbound: { listen: `${s.host}:${s.outboundPort}` },
        inbound: { listen: this.inbound, app: this.appAddress },
        admin: { listen: `${s.host}:${s.adminPort}` },
        listeners: [],
        reportIntervalMs: s.reportIntervalMs,
      }, s.logger);
    } catch (err) {
      await this.stop();
      throw err;
    }
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
