import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { isthmus, isthmusBin, isthmusOk } from '../helpers/cli.js';
import { etcdArgs, rawEtcd, startEtcd, type TestEtcd } from '../helpers/etcd.js';
import { freePort } from '../helpers/ports.js';

let etcd: TestEtcd;
let dir: string;
let ca: string;

async function snapshot(): Promise<Record<string, string>> {
  const client = rawEtcd(etcd);
  try {
    return await client.getAll().prefix('/isthmus/').strings();
  } finally {
    client.close();
  }
}

const join_ = (name: string, extra: string[] = [], out = name) => [
  'join', name, '--region', 'us', '--zone', 'a', ...etcdArgs(etcd), '--ca', ca, '--out', join(dir, out), '--api-port', '0', ...extra,
];

beforeAll(async () => {
  etcd = await startEtcd();
  dir = mkdtempSync(join(tmpdir(), 'isthmus-cli-'));
  ca = join(dir, 'ca');
  await isthmusOk(['ca', 'init', '--trust-domain', 'mesh.test', '--out', ca]);
  await isthmusOk(join_('east', ['--federation-host', '127.0.1.1']));
}, 60_000);

afterAll(async () => {
  await etcd?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('bad input gets a clear error, a non-zero exit, and nothing half-written', () => {
  test('every command answers --help with exit 0', async () => {
    for (const command of [[], ['ca', 'init'], ['join'], ['leave'], ['export'], ['unexport'], ['services'], ['clusters'], ['register'], ['deregister'], ['check'], ['federation']]) {
      const result = await isthmus([...command, '--help']);
      expect(result.code, command.join(' ')).toBe(0);
      expect(result.stdout).toContain('Usage: isthmus');
    }
  });

  test('unexport --help says that callers in the service\'s own cluster still reach it', async () => {
    const result = await isthmus(['unexport', '--help']);
    expect(result.stdout.replace(/\s+/g, ' ')).toMatch(/callers in its own cluster still reach it locally/);
    expect(result.stdout.replace(/\s+/g, ' ')).toMatch(/Sidecars in its own cluster still send their callers to its local instances/);
  });

  test('output into a pipe whose reader went away (`isthmus --help | head -1`) is not a crash', async () => {
    const child = spawn(process.execPath, [isthmusBin, 'join', '--help'], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.destroy();
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
    expect(stderr).not.toContain('EPIPE');
    expect(code).toBe(0);
  });

  test('a usage error exits 2 and says what is missing', async () => {
    const result = await isthmus(['join', 'x']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/required option '--region <region>' not specified/);
  });

  test('ca init refuses to overwrite an existing root', async () => {
    const result = await isthmus(['ca', 'init', '--trust-domain', 'mesh.test', '--out', ca]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/root-(cert|key)\.pem/);
  });

  test('joining a name that exists fails preflight and writes nothing', async () => {
    const before = await snapshot();
    const result = await isthmus(join_('east', ['--federation-host', '127.0.9.1'], 'east-2'));
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/× cluster name free: east joined at/);
    expect(result.stdout).toMatch(/fix: .*isthmus leave east/);
    expect(result.stdout).toMatch(/√ output directory/);
    expect(result.stderr).toMatch(/1 preflight check\(s\) failed \(cluster name free\); nothing was written/);
    expect(await snapshot()).toEqual(before);
    expect(existsSync(join(dir, 'east-2'))).toBe(false);
  });

  test('a wrong CA directory is named, with the command that makes one; nothing written', async () => {
    const before = await snapshot();
    const result = await isthmus(['join', 'west', '--region', 'us', '--zone', 'a', ...etcdArgs(etcd), '--ca', join(dir, 'nope'), '--out', join(dir, 'west')]);
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/× root CA: .*root-cert\.pem/);
    expect(result.stdout).toContain('isthmus ca init');
    expect(await snapshot()).toEqual(before);
    expect(existsSync(join(dir, 'west'))).toBe(false);
  });

  test('a root of the same trust domain that is not the mesh\'s is refused', async () => {
    const other = join(dir, 'other-ca');
    await isthmusOk(['ca', 'init', '--trust-domain', 'mesh.test', '--out', other]);
    const before = await snapshot();
    const result = await isthmus(['join', 'west', '--region', 'us', '--zone', 'a', ...etcdArgs(etcd), '--ca', other, '--out', join(dir, 'west')]);
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/× CA compatible with the mesh: trust domain mesh.test already has a different root/);
    expect(await snapshot()).toEqual(before);
  });

  test('an address another cluster uses is refused', async () => {
    const east = JSON.parse((await isthmusOk(['clusters', '-o', 'json', ...etcdArgs(etcd)])).stdout).clusters[0];
    const [host, port] = east.federation.split(':');
    const result = await isthmus(join_('west', ['--federation-host', host, '--api-port', port]));
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/× addresses free: already used: .*federation of east/);
  });

  test('an unreachable etcd is reported quickly, naming the address; no files written', async () => {
    const port = await freePort();
    const started = Date.now();
    const result = await isthmus(['join', 'west', '--region', 'us', '--zone', 'a', '--etcd', `http://127.0.0.1:${port}`, '--ca', ca, '--out', join(dir, 'west-x')]);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain(`127.0.0.1:${port}`);
    expect(result.stdout).toMatch(/fix: start etcd/);
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(existsSync(join(dir, 'west-x'))).toBe(false);
    const services = await isthmus(['services', '--etcd', `http://127.0.0.1:${port}`]);
    expect(services.code).toBe(1);
    expect(services.stderr).toMatch(/^isthmus services: .*127\.0\.0\.1:\d+/);
  });

  test('no etcd address at all says how to give one', async () => {
    const result = await isthmus(['clusters']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('pass --etcd http://host:2379 or set ISTHMUS_ETCD');
  });

  test('a malformed federation config names the file and the field, and the process exits 1', async () => {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'cluster: east\nregion: us\nzones: [a]\ntrustDomain: mesh.test\netcd: { endpoints: [nope] }\nservics: []\n');
    const result = await isthmus(['federation', '--config', bad]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(bad);
    expect(result.stderr).toMatch(/\/etcd\/endpoints\/0/);
    expect(result.stderr).toMatch(/\/servics: unknown field/);
    const missing = await isthmus(['federation', '--config', join(dir, 'missing.yaml')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/the cluster config .*missing\.yaml cannot be read: it does not exist/);
  });

  test('export to an unknown cluster is refused; unexport of something not exported too', async () => {
    const result = await isthmus(['export', 'hello', '-n', 'demo', '--cluster', 'nowhere', ...etcdArgs(etcd), '-o', 'json']);
    expect(result.code).toBe(1);
    expect(JSON.parse(result.stdout).error.code).toBe('ISTHMUS_ERR_CLUSTER_UNKNOWN');
    const un = await isthmus(['unexport', 'hello', '-n', 'demo', '--cluster', 'east', ...etcdArgs(etcd)]);
    expect(un.code).toBe(1);
    expect(un.stderr).toMatch(/not exported from east/);
  });

  test('export is persisted; leave removes everything of the cluster in one go', async () => {
    await isthmusOk(['export', 'hello', '-n', 'demo', '--cluster', 'east', ...etcdArgs(etcd)]);
    expect(Object.keys(await snapshot())).toContain('/isthmus/v1/serviceexports/east/demo/hello');
    const check = await isthmus(['check', ...etcdArgs(etcd)]);
    expect(check.code).toBe(1); // east has joined but its federation is not running
    expect(check.stdout).toMatch(/× cluster liveness: not alive: east/);
    expect(check.stdout).toMatch(/fix: start their federation service/);
    expect(check.stdout).toMatch(/√ trust bundles: 1 trust domain\(s\): mesh.test \(1 root\)/);
    await isthmusOk(['leave', 'east', ...etcdArgs(etcd)]);
    expect(Object.keys(await snapshot())).toEqual([]);
  });
});
