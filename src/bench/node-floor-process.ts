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
export function startNodeFloor(args: string[], script = new URL('./node-floor.js', import.meta.url)): Promise<NodeFloorProcess> {
  const child = spawn(process.execPath, [script.pathname, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: withProxyMallocArenas() });
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stderr?.on('data', (c: Buffer) => { err += c.toString(); });
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('\n')) resolve({ child, ...(JSON.parse(out.split('\n')[0] as string) as { inbound: string; outbound?: string }) });
    });
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`node-floor ${args.join(' ')} exited ${code}: ${err.trim()}`)));
  });
}
