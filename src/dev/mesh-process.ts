import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, closeSync, openSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { withProxyMallocArenas } from '../core/malloc-arenas.js';

/** The real CLI (it runs dist/), and the watch that stops a child whose dev up died (dist/dev/parent-watch.js). */
const isthmusBin = fileURLToPath(new URL('../../bin/isthmus.js', import.meta.url));
const parentWatch = new URL('../../dist/dev/parent-watch.js', import.meta.url).href;

// Longer than a sidecar's own budget for its first certificate (three requests of 15 s each,
// src/sidecar/identity.ts): dev up does not give up on a component that is still asking.
const readyTimeoutMs = 60_000;
const killAfterMs = 10_000;

export interface MeshProcessSpec {
  /** The component's name, e.g. `sidecar-east-client`; also its log file's. */
  name: string;
  /** Arguments after `isthmus`, e.g. `['gateway', '--config', ..., '--id', 'gw-1']`. */
  args: string[];
  /** stdout and stderr are appended here (the same file the in-process mode logs to). */
  logFile: string;
  /** The admin port's /readyz: the process counts as started once it answers 200. */
  readyUrl: string;
  /** Said once for each exit nobody asked for (a crash); the process is not restarted. */
  onUnexpectedExit: (line: string) => void;
}

/**
 * One sidecar or gateway of the dev mesh as its own `isthmus` process: started through the same
 * CLI a user runs, stopped with SIGTERM (SIGKILL after 10 s), and watched for crashes.
 *
 * Invariant: `child` is set from the spawn until stop() is asked for or the process exits, so a
 * stop() at any moment, including during start(), leaves no process behind.
 */
export class MeshProcess {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();

  constructor(readonly spec: MeshProcessSpec) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  async start(): Promise<void> {
    if (this.child) return;
    const { spec } = this;
    const log = openSync(spec.logFile, 'a');
    let child: ChildProcess;
    try {
      // Its own process group: a Ctrl-C in dev up's terminal reaches dev up only, which then
      // stops the children in order (client first, gateways last) instead of all at once.
      // Node refuses --cpu-prof in NODE_OPTIONS, so `npm run bench -- --cpu-prof` asks through ISTHMUS_CPU_PROF_DIR.
      const profile = process.env.ISTHMUS_CPU_PROF_DIR ? ['--cpu-prof', `--cpu-prof-dir=${process.env.ISTHMUS_CPU_PROF_DIR}`] : [];
      child = spawn(process.execPath, [...profile, '--import', parentWatch, isthmusBin, ...spec.args, '--log-format', 'json', '--log-level', 'info'], {
        stdio: ['ignore', log, log], detached: true, env: withProxyMallocArenas(),
      });
    } finally {
      closeSync(log);
    }
    this.child = child;
    let exitText = '';
    this.exited = new Promise<void>((resolve) => {
      const done = (text: string) => {
        if (exitText) return;
        exitText = text;
        resolve();
        if (this.child !== child) return; // stopped on purpose
        this.child = undefined;
        reportUnexpectedExit(spec.name, child.pid, text, spec.logFile, spec.onUnexpectedExit);
      };
      child.once('exit', (code, signal) => done(signal ? `was killed by ${signal}` : `exited with code ${code}`));
      child.once('error', (err) => done(`could not run (${err.message})`));
    });

    const last = await pollReady(spec.readyUrl, readyTimeoutMs, () => exitText !== '');
    if (last === undefined) return;
    if (exitText) throw new Error(`${spec.name} ${exitText} before it was ready; the end of ${spec.logFile}:\n${logTail(spec.logFile)}`);
    await this.stop();
    throw new Error(`${spec.name} did not answer 200 on ${spec.readyUrl} within ${readyTimeoutMs / 1000} s (its last answer: ${last}); the end of ${spec.logFile}:\n${logTail(spec.logFile)}`);
  }

  /** SIGTERM, then SIGKILL if it has not exited after 10 s; resolves once it has exited. */
  async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    await this.exited;
    clearTimeout(timer);
  }
}

/**
 * A child of dev up that exited without being asked to: one line, appended to its log as an
 * error and handed to `say`, e.g. `sidecar-east-client (pid 12) was killed by SIGKILL unexpectedly; see <log>`.
 */
export function reportUnexpectedExit(name: string, pid: number | undefined, how: string, logFile: string, say: ((line: string) => void) | undefined): void {
  const line = `${name} (pid ${pid ?? '?'}) ${how} unexpectedly; see ${logFile}`;
  appendFileSync(logFile, `${JSON.stringify({ level: 50, time: Date.now(), name: 'isthmus-dev', msg: line })}\n`);
  say?.(line);
}

function logTail(file: string): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-10).join('\n');
  } catch {
    return '(no log)';
  }
}

/**
 * Asks `url` every 100 ms until it answers 200 (then undefined), `timeoutMs` pass or `stop()`
 * says to; otherwise returns what it answered last, for the error: a sidecar's /readyz says
 * whether it still waits for its certificate (`"identity":null`) or for its catalog.
 */
export async function pollReady(url: string, timeoutMs: number, stop: () => boolean): Promise<string | undefined> {
  let last = 'none';
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && !stop()) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      if (res.status === 200) {
        await res.body?.cancel();
        return undefined;
      }
      last = `${res.status} ${(await res.text()).slice(0, 400)}`;
    } catch (err) {
      // fetch says only "fetch failed"; why is in its cause (ECONNREFUSED, a timeout).
      const { cause, message } = err as Error;
      last = `no answer (${cause instanceof Error ? cause.message : message})`;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return last;
}
