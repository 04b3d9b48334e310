import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export interface PeerProcessSpec {
  /** For messages, e.g. `nginx outbound (east)`. */
  name: string;
  command: string;
  args: string[];
  /** stdout and stderr go here. */
  logFile: string;
  /** More of the process's own log to show when it fails (nginx's error_log). */
  errorLog?: string;
  /** host:port it listens on: started once a TCP connection there succeeds. */
  listen: string;
}

export interface PeerProcess {
  name: string;
  pid: number;
  /** SIGTERM, then SIGKILL after `killAfterMs`; resolves once the process has exited. */
  stop(): Promise<void>;
}

const readyTimeoutMs = 10_000;
const killAfterMs = 5_000;

/**
 * One proxy of the peer chain as a child process in the foreground (nginx `daemon off`, HAProxy
 * `-db`), so its pid is the proxy itself and stopping it is a signal to that pid. A process that
 * exits before it listens fails the start with the end of its log; one that never listens is
 * stopped before the error is thrown, so a failed start leaves nothing behind.
 */
export async function startPeerProcess(spec: PeerProcessSpec): Promise<PeerProcess> {
  const log = openSync(spec.logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(spec.command, spec.args, { stdio: ['ignore', log, log] });
  } finally {
    closeSync(log);
  }
  let exitText = '';
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exitText ||= signal ? `was killed by ${signal}` : `exited with code ${code}`;
      resolve();
    });
    child.once('error', (err) => {
      exitText ||= `could not run (${err.message})`;
      resolve();
    });
  });
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null || exitText) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    await exited;
    clearTimeout(timer);
  };
  const tail = () => [spec.logFile, spec.errorLog].filter((f): f is string => f !== undefined).map(lastLines).join('\n');

  const [host = '127.0.0.1', port = '0'] = splitHostPort(spec.listen);
  const deadline = Date.now() + readyTimeoutMs;
  while (Date.now() < deadline) {
    if (exitText) throw new Error(`${spec.name} (${spec.command} ${spec.args.join(' ')}) ${exitText} before it listened on ${spec.listen}:\n${tail()}`);
    if (await accepts(host, Number(port))) return { name: spec.name, pid: child.pid as number, stop };
    await sleep(50);
  }
  await stop();
  throw new Error(`${spec.name} did not listen on ${spec.listen} within ${readyTimeoutMs / 1000} s:\n${tail()}`);
}

function splitHostPort(address: string): [string, string] {
  const i = address.lastIndexOf(':');
  return [address.slice(0, i), address.slice(i + 1)];
}

function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

function lastLines(file: string): string {
  if (!existsSync(file)) return `(${file}: not written)`;
  const text = readFileSync(file, 'utf8').trimEnd();
  return text ? `${file}:\n${text.split('\n').slice(-10).join('\n')}` : `(${file}: empty)`;
}
