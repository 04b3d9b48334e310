import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { expect, test } from 'vitest';
import { isPortListening } from '../helpers/ports.js';
import { isthmusBin, waitFor } from '../helpers/cli.js';

/**
 * `npm run dev 2>&1 | tee log`, then Ctrl-C: the terminal's SIGINT ends tee too, so every line
 * dev up writes while stopping meets a closed pipe (EPIPE). The clean-up must not depend on it.
 * Each case runs a small mesh of its own on 127.0.248.1 and 127.0.249.1.
 */
const cases = [
  { name: 'SIGINT with stdout a closed pipe', stop: (child: ReturnType<typeof spawn>) => child.kill('SIGINT'), stderrOpen: true },
  { name: 'the end of its standard input with stdout and stderr closed pipes', stop: (child: ReturnType<typeof spawn>) => child.stdin?.end(), stderrOpen: false },
];

test.each(cases)('`isthmus dev up` stopped by $name removes its temporary state directory and stops etcd', async ({ stop, stderrOpen }) => {
  const child = spawn(process.execPath, [isthmusBin, 'dev', 'up', '--host-base', '248', '--traffic', '0', '--no-versions'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c: Buffer) => { stdout += c.toString(); });
  child.stderr!.on('data', (c: Buffer) => { stderr += c.toString(); });
  try {
    await waitFor(async () => stdout.includes('Press Ctrl-C'), 90_000, `dev up to finish starting; output so far:\n${stdout}${stderr}`);
    const stateDir = /^Starting a .* in (\S+)$/m.exec(stdout)?.[1] ?? '';
    const etcdPort = Number(/✓ etcd: https?:\/\/127\.0\.0\.1:(\d+)/.exec(stdout)?.[1]);
    expect(existsSync(stateDir), stateDir).toBe(true);
    // The reading ends go away, as tee's does.
    child.stdout!.destroy();
    if (!stderrOpen) child.stderr!.destroy();
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    stop(child);
    expect(await exited).toBe(0);
    expect(existsSync(stateDir), `${stateDir} left behind`).toBe(false);
    expect(await isPortListening('127.0.0.1', etcdPort)).toBe(false);
    expect(await isPortListening('127.0.248.1', 15010)).toBe(false);
    if (stderrOpen) expect(stderr).toContain('stopped.');
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}, 150_000);

test('`isthmus dev up` asked to stop (SIGHUP) while it is still starting stops once started, and removes its state directory', async () => {
  const child = spawn(process.execPath, [isthmusBin, 'dev', 'up', '--host-base', '248', '--traffic', '0', '--no-versions'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (c: Buffer) => { output += c.toString(); });
  child.stderr.on('data', (c: Buffer) => { output += c.toString(); });
  try {
    await waitFor(async () => /✓ etcd: /.test(output), 60_000, `dev up to start etcd; output so far:\n${output}`);
    const stateDir = /^Starting a .* in (\S+)$/m.exec(output)?.[1] ?? '';
    const etcdPort = Number(/✓ etcd: https?:\/\/127\.0\.0\.1:(\d+)/.exec(output)?.[1]);
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    child.kill('SIGHUP');
    expect(await exited, output).toBe(0);
    expect(output).toContain('SIGHUP: the mesh stops as soon as it has finished starting');
    expect(output).toContain('stopped.');
    expect(existsSync(stateDir), `${stateDir} left behind`).toBe(false);
    expect(await isPortListening('127.0.0.1', etcdPort)).toBe(false);
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}, 150_000);
