import { spawn, type ChildProcess } from 'node:child_process';
import { withProxyMallocArenas } from '../core/malloc-arenas.js';

export interface NodeFloorProcess {
  child: ChildProcess;
  /** host:port of its mutual-TLS listener. */
  inbound: string;
  /** host:port of its plain HTTP listener (role proxy only). */
  outbound?: string;
}

/**
 * Starts dist/bench/node-floor.js with `args`; resolves once it printed the addresses it listens
 * on. `script`: the compiled script (tests, which run from the sources, name dist's).
 */
export async function startNodeFloor(args: string[], script = new URL('./node-floor.js', import.meta.url)): Promise<NodeFloorProcess> {
  const { child, first } = await startReporting<{ inbound: string; outbound?: string }>(script, args, 'node-floor');
  return { child, ...first };
}

/**
 * Runs a bench helper script (node-floor.js, floor-chain.js) in a process of its own, with the
 * proxies' malloc arenas; resolves with the JSON line it prints first (once it listens), or
 * rejects with what it said on stderr if it exits before.
 */
export function startReporting<T>(script: URL, args: string[], name: string): Promise<{ child: ChildProcess; first: T }> {
  const child = spawn(process.execPath, [script.pathname, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: withProxyMallocArenas() });
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stderr?.on('data', (c: Buffer) => { err += c.toString(); });
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('\n')) resolve({ child, first: JSON.parse(out.split('\n')[0] as string) as T });
    });
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`${name} ${args.join(' ')} exited ${code}: ${err.trim()}`)));
  });
}
