import { spawn, type ChildProcess, type ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';

export const isthmusBin = fileURLToPath(new URL('../../bin/isthmus.js', import.meta.url));

export interface CliResult { code: number; stdout: string; stderr: string }

/**
 * Runs the built `isthmus` command as a user would, with no standard input unless `input` is
 * given (for `-f -`). With `timeoutMs`, a command still running then is killed and the promise
 * rejects: a hang fails the test by name.
 */
export async function isthmus(args: string[], env: Record<string, string> = {}, opts: { timeoutMs?: number; input?: string } = {}): Promise<CliResult> {
  return await new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [isthmusBin, ...args], {
      // No operator credential unless a test gives one: never the developer's own (~/.config/isthmus/operator).
      env: { ...process.env, ISTHMUS_ETCD: '', ISTHMUS_ETCD_CA: '', ISTHMUS_ETCD_CERT: '', ISTHMUS_ETCD_KEY: '', ISTHMUS_OPERATOR_DIR: '', XDG_CONFIG_HOME: '/nonexistent/isthmus-test-config', NO_COLOR: '1', ...env },
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    }) as ChildProcessByStdio<Writable | null, Readable, Readable>;
    child.stdin?.end(opts.input);
    let stdout = '';
    let stderr = '';
    const timer = opts.timeoutMs === undefined ? undefined : setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`isthmus ${args.join(' ')} was still running after ${opts.timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, opts.timeoutMs);
    child.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

export async function isthmusOk(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  const result = await isthmus(args, env);
  if (result.code !== 0) throw new Error(`isthmus ${args.join(' ')} exited ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
  return result;
}

export interface FederationProcess {
  child: ChildProcess;
  /** https://host:port */
  url: string;
  logs(): string;
  /** SIGTERM (graceful: revokes the lease) or SIGKILL (a crash). */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts `isthmus federation --config` and waits until its API answers /healthz. */
export async function startFederation(configPath: string, apiAddress: string, caFile: string): Promise<FederationProcess> {
  const child = spawn(process.execPath, [isthmusBin, 'federation', '--config', configPath, '--log-level', 'debug'], {
    env: { ...process.env, NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let logs = '';
  child.stdout?.on('data', (c: Buffer) => { logs += c.toString(); });
  child.stderr?.on('data', (c: Buffer) => { logs += c.toString(); });
  const url = `https://${apiAddress}`;
  const client = apiClient(caFile);
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`federation exited with ${child.exitCode}: ${logs}`);
    try {
      const res = await client.get(`${url}/healthz`);
      if (res.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`federation did not answer /healthz within 20 s: ${logs}`);
    }
    await sleep(100);
  }
  await client.close();
  return {
    child,
    url,
    logs: () => logs,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      return await new Promise((resolve) => {
        child.once('exit', (code) => resolve(code));
        child.kill(signal);
        setTimeout(() => child.kill('SIGKILL'), 10_000).unref();
      });
    },
  };
}

export interface ApiClient {
  get(url: string): Promise<{ status: number; body: any }>;
  post(url: string, body: unknown, headers?: Record<string, string>): Promise<{ status: number; body: any }>;
  delete(url: string): Promise<{ status: number; body: any }>;
  close(): Promise<void>;
}

/** An HTTPS client that trusts the given root file, and optionally presents a client certificate. */
export function apiClient(caFile: string, clientCert?: { cert: string; key: string }): ApiClient {
  const agent = new Agent({ connect: { ca: readFileSync(caFile, 'utf8'), ...(clientCert ?? {}) } });
  const call = async (method: 'GET' | 'POST' | 'DELETE', url: string, body?: unknown, headers: Record<string, string> = {}) => {
    const res = await request(url, {
      method,
      dispatcher: agent,
      headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.body.text();
    return { status: res.statusCode, body: text ? JSON.parse(text) : undefined };
  };
  return {
    get: (url) => call('GET', url),
    post: (url, body, headers) => call('POST', url, body, headers),
    delete: (url) => call('DELETE', url),
    close: () => agent.close(),
  };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` until it returns a truthy value or `timeoutMs` passes; returns the value and how long it took. */
export async function waitFor<T>(probe: () => Promise<T | undefined | false>, timeoutMs: number, what: string): Promise<{ value: T; ms: number }> {
  const start = Date.now();
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value) return { value, ms: Date.now() - start };
    } catch (err) {
      last = err;
    }
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await sleep(50);
  }
}
