import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** Why namespace tests cannot run here, or undefined when they can (root, and `ip netns` works). */
export function netnsUnavailable(): string | undefined {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return 'not running as root';
  try {
    execFileSync('ip', ['netns', 'list'], { stdio: 'ignore', timeout: 5000 });
  } catch (err) {
    return `\`ip netns\` is unavailable (${(err as Error).message.split('\n')[0]})`;
  }
  return undefined;
}

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 5000 });

/** One namespace joined to the root namespace by a veth pair on its own /24 of 198.18.0.0/15. */
export interface NsLink {
  ns: string;
  /** The veth end inside the namespace, and its address. */
  inner: string;
  innerAddress: string;
  /** The veth end in the root namespace, and its address. */
  outer: string;
  outerAddress: string;
}

/**
 * Creates a namespace `isth-<tag>-<hex>` with `lo` up and a veth pair: `<subnet>.2` inside, `<subnet>.1`
 * in the root namespace. Inside, only the connected /24 is routable: no default route. Deletes
 * whatever it made if a step fails.
 */
export function createNsLink(tag: string, subnet: string): NsLink {
  const hex = randomBytes(2).toString('hex');
  const link: NsLink = { ns: `isth-${tag}-${hex}`, inner: `isth-${tag}0-${hex}`, innerAddress: `${subnet}.2`, outer: `isth-${tag}1-${hex}`, outerAddress: `${subnet}.1` };
  try {
    ip('netns', 'add', link.ns);
    ip('-n', link.ns, 'link', 'set', 'lo', 'up');
    ip('link', 'add', link.outer, 'type', 'veth', 'peer', 'name', link.inner);
    ip('link', 'set', link.inner, 'netns', link.ns);
    ip('addr', 'add', `${link.outerAddress}/24`, 'dev', link.outer);
    ip('link', 'set', link.outer, 'up');
    ip('-n', link.ns, 'addr', 'add', `${link.innerAddress}/24`, 'dev', link.inner);
    ip('-n', link.ns, 'link', 'set', link.inner, 'up');
    return link;
  } catch (err) {
    deleteNsLink(link);
    throw new Error(`cannot set up namespace ${link.ns}: ${(err as { stderr?: Buffer }).stderr?.toString().trim() ?? (err as Error).message}`);
  }
}

/** Deletes the namespace (which takes its veth end, and so the pair) and the root end if still there. */
export function deleteNsLink(link: NsLink): void {
  for (const args of [['netns', 'del', link.ns], ['link', 'del', link.outer]]) {
    try { ip(...args); } catch { /* already gone */ }
  }
}

/** Two free /24s in 198.18.0.0/15 (benchmarking range): a random even third octet and the next one. */
export function freeSubnets(): [string, string] {
  const used = execFileSync('ip', ['-o', '-4', 'addr', 'show'], { encoding: 'utf8', timeout: 5000 });
  for (let tries = 0; tries < 20; tries += 1) {
    const octet = 2 * (1 + Math.floor(Math.random() * 126));
    const subnets: [string, string] = [`198.18.${octet}`, `198.18.${octet + 1}`];
    if (subnets.every((s) => !used.includes(` ${s}.`))) return subnets;
  }
  throw new Error('no free /24 pair in 198.18.0.0/16');
}

export interface NsProcess {
  child: ChildProcess;
  logs(): string;
  /** SIGKILL, then wait (bounded) for the exit. */
  kill(): Promise<void>;
}

/** Runs `node <args>` inside the namespace (`ip netns exec` execs node itself: the pid is node's). */
export function spawnNodeIn(ns: string, args: string[]): NsProcess {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, ...args], { env: { ...process.env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let logs = '';
  child.stdout?.on('data', (c: Buffer) => { logs = (logs + c.toString()).slice(-20_000); });
  child.stderr?.on('data', (c: Buffer) => { logs = (logs + c.toString()).slice(-20_000); });
  child.on('error', (err) => { logs += `spawn error: ${err.message}\n`; });
  return { child, logs: () => logs, kill: () => killAndWait(child) };
}

export async function killAndWait(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 5000);
    child.once('exit', () => { clearTimeout(timer); resolve(); });
    child.kill('SIGKILL');
  });
}

const probeScript = `
const s = require('net').connect(Number(process.argv[2]), process.argv[1]);
const done = (what) => { console.log(what); s.destroy(); process.exit(0); };
setTimeout(() => done('TIMEOUT'), 2000);
s.on('connect', () => done('CONNECTED'));
s.on('error', (e) => done(e.code || e.message));`;

/** From inside `ns`: CONNECTED, TIMEOUT, or the error code of a TCP connect to host:port. */
export async function tcpProbeIn(ns: string, host: string, port: number): Promise<string> {
  const { stdout } = await execFileAsync('ip', ['netns', 'exec', ns, process.execPath, '-e', probeScript, host, String(port)], { timeout: 10_000 });
  return stdout.trim();
}

/** A route inside the namespace to `destination` through the root end of its link. */
export function addRoute(link: NsLink, destination: string): void {
  try {
    ip('-n', link.ns, 'route', 'add', destination, 'via', link.outerAddress, 'dev', link.inner);
  } catch (err) {
    throw new Error(`cannot add route to ${destination} in ${link.ns}: ${(err as { stderr?: Buffer }).stderr?.toString().trim() ?? (err as Error).message}`);
  }
}
