import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { Logger } from '../core/log.js';
import { ensureDirectory } from '../core/user-paths.js';
import type { SidecarConfig } from '../sidecar/config.js';
import { MeshProcess } from './mesh-process.js';

/** What the YAML of `isthmus sidecar --config` says, minus the token (passed apart, never in the YAML). */
export type DevSidecarSettings = Omit<SidecarConfig, 'rootCertPem' | 'bootstrapToken' | 'stateDirPath' | 'reportIntervalMs' | 'token' | 'tokenFile' | 'reportInterval'>;

/** Where a dev mesh sidecar runs: inside this process, or as its own `isthmus sidecar` process. */
export type SidecarRunner = (
  | { kind: 'in-process'; logger: Logger }
  | { kind: 'process'; name: string; logFile: string; onUnexpectedExit: (line: string) => void }
) & {
  /** `isthmus dev up --access-log`: this sidecar's access log, beside its log. */
  accessLog?: { file: string; format: 'json' | 'text' };
  /** `isthmus dev up --upgrade-to-http2`: HTTP/1.1 requests go to other sidecars as HTTP/2 (outbound.upgradeToHttp2). */
  upgradeToHttp2?: boolean;
};

export interface DevSidecar {
  outbound: string;
  admin: string;
  listeners: Record<string, string>;
  /** The process it runs in (this one, in-process). */
  pid: number | undefined;
  stop(): Promise<void>;
}

/**
 * Starts one sidecar of the dev mesh and resolves once it is ready (its /readyz would answer 200).
 * Both ways get the same settings, so addresses, identity and state dir are identical.
 */
export async function startDevSidecar(given: DevSidecarSettings, secrets: { bootstrapToken: string; reportIntervalMs?: number | undefined }, runner: SidecarRunner): Promise<DevSidecar> {
  let settings = runner.accessLog ? { ...given, accessLog: runner.accessLog } : given;
  if (runner.upgradeToHttp2) settings = { ...settings, outbound: { ...settings.outbound, upgradeToHttp2: true } };
  if (runner.kind === 'in-process') {
    const { runSidecar } = await import('../sidecar/sidecar.js');
    const running = await runSidecar({
      ...settings, stateDirPath: settings.stateDir, rootCertPem: readFileSync(settings.federation.rootCert, 'utf8'),
      bootstrapToken: secrets.bootstrapToken, reportIntervalMs: secrets.reportIntervalMs,
    }, runner.logger);
    return { outbound: running.outbound, admin: running.admin, listeners: running.listeners, pid: process.pid, stop: () => running.stop() };
  }
  const configFile = writeSidecarFiles(settings, secrets);
  const child = new MeshProcess({
    name: runner.name, args: ['sidecar', '--config', configFile], logFile: runner.logFile,
    readyUrl: `http://${settings.admin.listen}/readyz`, onUnexpectedExit: runner.onUnexpectedExit,
  });
  await child.start();
  return {
    outbound: settings.outbound.listen, admin: settings.admin.listen,
    listeners: Object.fromEntries(settings.listeners.map((l) => [`${l.namespace}/${l.service}`, l.listen])),
    pid: child.pid,
    stop: () => child.stop(),
  };
}

/**
 * `sidecar.yaml` and `bootstrap-token` (mode 0600) in the sidecar's state dir, as a user would
 * write them. The report interval is whole seconds, as every duration in the config is.
 */
export function writeSidecarFiles(settings: DevSidecarSettings, secrets: { bootstrapToken: string; reportIntervalMs?: number | undefined }): string {
  ensureDirectory(settings.stateDir, 'the sidecar\'s state directory');
  const tokenFile = join(settings.stateDir, 'bootstrap-token');
  writeFileSync(tokenFile, `${secrets.bootstrapToken}\n`, { mode: 0o600 });
  chmodSync(tokenFile, 0o600);
  const configFile = join(settings.stateDir, 'sidecar.yaml');
  writeFileSync(configFile, stringify({
    ...settings, tokenFile,
    ...(secrets.reportIntervalMs === undefined ? {} : { reportInterval: `${Math.max(1, Math.round(secrets.reportIntervalMs / 1000))}s` }),
  }));
  return configFile;
}
