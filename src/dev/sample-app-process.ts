import { fork, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { reportUnexpectedExit } from './mesh-process.js';
import type { SampleInstance } from './sample-service.js';

/**
 * A sample app of `isthmus dev up --processes` in a process of its own, as an app runs in its
 * own container beside its sidecar. In dev up's process the apps shared an event loop (and a
 * heap, whose full collections took 25–50 ms) with the federation services; every request of
 * the mesh, and of the bench's baseline and peer chain, waited through those pauses.
 *
 * The child is `node --import parent-watch.js sample-app-main.js <spec as JSON> --log-file <file>`:
 * it starts the HTTP sample or the gRPC echo, sends `{ ready: address }` (or `{ failed }`) over
 * the IPC channel, takes `{ delayMs }` for the HTTP sample's added delay, and closes its server
 * and exits on SIGTERM or when the channel closes. One that exits without being asked to stays
 * down, like a sidecar of dev up (mesh-process.ts): said once, through `onUnexpectedExit` and in
 * its log.
 */

export interface SampleAppSpec {
  kind: 'http' | 'grpc';
  service: string;
  cluster: string;
  zone: string;
  instance: string;
  host: string;
  port: number;
  version?: string | undefined;
}

export interface SampleAppProcessOptions {
  /** The child's stdout and stderr are appended here. */
  logFile: string;
  /** Said once for an exit nobody asked for, e.g. `app-west-ledger-west-1 (pid 12) was killed by SIGKILL unexpectedly; see <log>`. */
  onUnexpectedExit?: (line: string) => void;
}

export type FromApp = { ready: string } | { failed: string };
export type ToApp = { delayMs: number };

const readyTimeoutMs = 30_000;
export const killAfterMs = 5_000;
// Paths into dist/ that hold from the bundle (dist/bundle/) and from dist/dev/ alike, as mesh-process.ts's.
const appMain = fileURLToPath(new URL('../../dist/dev/sample-app-main.js', import.meta.url));
const parentWatch = new URL('../../dist/dev/parent-watch.js', import.meta.url).href;

/** Starts the app in a child process; resolves once it listens, rejects with its reason otherwise. */
export async function startSampleAppProcess(spec: SampleAppSpec, opts: SampleAppProcessOptions): Promise<SampleInstance> {
  const { logFile } = opts;
  const log = openSync(logFile, 'a');
  let child: ChildProcess;
  try {
    // Its own process group (detached), as dev up's sidecars: a Ctrl-C reaches dev up, which stops it.
    // The log file is named on the command line (the child does not read it) so that `ps` shows
    // which mesh an app belongs to, as a sidecar's --config does.
    child = fork(appMain, [JSON.stringify(spec), '--log-file', logFile], { execArgv: ['--import', parentWatch], stdio: ['ignore', log, log, 'ipc'], detached: true });
  } finally {
    closeSync(log);
  }
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const address = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the ${spec.service} app (${spec.instance}) did not listen within ${readyTimeoutMs / 1000} s; see ${logFile}`)), readyTimeoutMs);
    child.once('message', (message: FromApp) => {
      clearTimeout(timer);
      if ('ready' in message) resolve(message.ready);
      else reject(new Error(`the ${spec.service} app (${spec.instance}) could not start: ${message.failed}`));
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`the ${spec.service} app (${spec.instance}) exited (${signal ?? `code ${code}`}) before it listened; see ${logFile}`));
    });
  }).catch(async (err: unknown) => {
    child.kill('SIGKILL');
    await exited;
    throw err;
  });
  let closing: Promise<void> | undefined;
  child.once('exit', (code, signal) => {
    if (closing) return; // stopped on purpose
    reportUnexpectedExit(`app-${spec.cluster}-${spec.instance}`, child.pid, signal ? `was killed by ${signal}` : `exited with code ${code}`, logFile, opts.onUnexpectedExit);
  });
  return {
    service: spec.service, cluster: spec.cluster, zone: spec.zone, instance: spec.instance, address,
    setDelay: (ms) => {
      if (child.connected) child.send({ delayMs: ms } satisfies ToApp);
    },
    close: () => {
      closing ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
          await exited;
          clearTimeout(timer);
        }
      })();
      return closing;
    },
  };
}
