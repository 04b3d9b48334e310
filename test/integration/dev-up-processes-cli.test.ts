import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import type { MeshFile } from '../../src/dev/dev-mesh.js';
import { isthmusBin, waitFor } from '../helpers/cli.js';
import { viaProxy } from '../helpers/proxy.js';
import { isAlive, listeningPid, processesMentioning } from '../helpers/processes.js';

/**
 * `isthmus dev up --processes`, the command a user runs (127.0.67.1 and 127.0.68.1): every
 * sidecar, gateway, federation service and sample app is a process of its own, the mesh works,
 * and when dev up is killed outright (SIGKILL, no chance to stop anything) every one of those
 * processes stops by itself. etcd does not (docs/dev-mesh.md, "Stopping"); the test stops it.
 */
test('`isthmus dev up --processes`: one process per component, and none outlives a SIGKILLed dev up', async () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'isthmus-devup-processes-'));
  const child = spawn(process.execPath, [isthmusBin, 'dev', 'up', '--processes', '--host-base', '67', '--traffic', '0', '--no-versions', '--state-dir', stateDir, '-o', 'json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
  child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
  let etcdPid: number | undefined;
  try {
    await waitFor(async () => stdout.trim().endsWith('}'), 120_000, `dev up to print mesh.json; output so far:\n${stderr}`);
    const mesh = JSON.parse(stdout) as MeshFile;
    const east = mesh.clusters.east!;
    const west = mesh.clusters.west!;
    etcdPid = listeningPid(mesh.etcd.replace(/^https?:\/\//, ''));

    const res = await viaProxy(east.client.proxy, 'http://ledger.demo.mesh/');
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ service: 'ledger', cluster: 'west' });

    const cmdline = (pid: number | undefined) => (pid === undefined ? '' : readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' '));
    const roles = [
      { address: east.federation, role: /isthmus\.js federation --config /u },
      { address: west.federation, role: /isthmus\.js federation --config /u },
      { address: west.gateways[0]!, role: /isthmus\.js gateway --config /u },
      { address: east.client.admin, role: /isthmus\.js sidecar --config /u },
      { address: west.services.find((s) => s.name === 'ledger')!.instances[0]!, role: /sample-app-main\.js /u },
      { address: east.services.find((s) => s.name === 'hello')!.instances[0]!, role: /sample-app-main\.js /u },
    ];
    const pids = roles.map(({ address, role }) => {
      const pid = listeningPid(address);
      expect(pid, address).toBeDefined();
      expect(pid, address).not.toBe(child.pid);
      expect(cmdline(pid), address).toMatch(role);
      return pid!;
    });
    expect(new Set(pids).size).toBe(pids.length);

    const children = processesMentioning(stateDir).filter((pid) => pid !== child.pid && pid !== etcdPid);
    // 2 federations, 2 gateways, 9 sidecars (hello ×2 in each cluster, ledger, redis, grpc-echo,
    // 2 clients), 6 apps (redis-server renames itself and is not counted here).
    expect(children.length).toBe(2 + 2 + 9 + 6);
    for (const pid of pids) expect(children).toContain(pid);

    child.kill('SIGKILL');
    // Each child's parent watch looks once a second and then stops it as Ctrl-C would.
    await waitFor(async () => children.every((pid) => !isAlive(pid)), 20_000, 'every child of the killed dev up to stop');
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    if (etcdPid !== undefined && isAlive(etcdPid)) process.kill(etcdPid, 'SIGKILL');
    for (const pid of processesMentioning(stateDir)) process.kill(pid, 'SIGKILL');
    rmSync(stateDir, { recursive: true, force: true });
  }
}, 180_000);
