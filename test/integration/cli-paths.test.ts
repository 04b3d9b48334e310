import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { isthmus, isthmusOk, type CliResult } from '../helpers/cli.js';
import { etcdArgs, startEtcd, type TestEtcd } from '../helpers/etcd.js';

// Every path a user gives must be refused at once, naming the path and what to do, with exit 1.
// Node's own recursive mkdir spins forever on /proc paths, so each run has a deadline: a hang
// fails the test instead of the suite.
const deadlineMs = 15_000;

let dir: string;
let ca: string;
let etcd: TestEtcd;
let aFile: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'isthmus-paths-'));
  ca = join(dir, 'ca');
  aFile = join(dir, 'a-file');
  writeFileSync(aFile, 'not a directory\n');
  await isthmusOk(['ca', 'init', '--trust-domain', 'paths.test', '--out', ca]);
  etcd = await startEtcd();
}, 60_000);

afterAll(async () => {
  await etcd?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Directories that cannot be used, each with what the message must say. */
const unusableDirectories = () => [
  { kind: 'a new directory under /proc', path: '/proc/isthmus-nope', says: /cannot be created as a directory: the file system there accepts no new files/ },
  { kind: 'a deeper directory under /proc', path: '/proc/isthmus-nope/deeper', says: /cannot be created as a directory: the file system there accepts no new files/ },
  { kind: 'an unwritable place (/sys)', path: '/sys/isthmus-nope', says: /cannot be created as a directory: permission denied; choose a path on an ordinary writable disk/ },
  { kind: 'an existing directory nothing can be written in (/proc)', path: '/proc', says: /is a directory files cannot be written in/ },
  { kind: 'a file where a directory is expected', path: aFile, says: /a file of that name exists, and a directory is needed; give a directory/ },
  { kind: 'a path below a file', path: join(aFile, 'sub'), says: /a part of the path is a file, not a directory/ },
];

function expectRefused(result: CliResult, path: string, says: RegExp): void {
  const output = `${result.stdout}${result.stderr}`;
  expect(result.code, output).toBe(1);
  expect(output).toContain(path);
  expect(output).toMatch(says);
  expect(output, 'no stack trace').not.toMatch(/\n\s+at /);
  // The file stood in for a directory: it is left as it was.
  expect(readFileSync(aFile, 'utf8')).toBe('not a directory\n');
}

function named(what: string, check: () => void): void {
  try {
    check();
  } catch (err) {
    throw new Error(`${what}: ${(err as Error).message}`, { cause: err });
  }
}

function sidecarConfig(stateDir: string): string {
  const file = join(dir, `sidecar-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, [
    'cluster: east', 'zone: a', 'namespace: demo', 'service: client',
    `federation: { url: "https://127.0.241.1:1", rootCert: ${join(ca, 'root-cert.pem')} }`,
    'token: not-used', `stateDir: ${stateDir}`,
    'outbound: { listen: "127.0.241.1:0" }', 'admin: { listen: "127.0.241.1:0" }', '',
  ].join('\n'));
  return file;
}

describe('a directory a user names that cannot be used is refused at once, naming it', () => {
  const verbs: { verb: string; run: (path: string) => Promise<CliResult> }[] = [
    { verb: 'ca init --out', run: (path) => isthmus(['ca', 'init', '--trust-domain', 'paths.test', '--out', path], {}, { timeoutMs: deadlineMs }) },
    {
      verb: 'join --out',
      run: (path) => isthmus(['join', 'east', '--region', 'us', '--zone', 'a', ...etcdArgs(etcd), '--ca', ca, '--out', path, '--federation-host', '127.0.241.1', '--api-port', '0'], {}, { timeoutMs: deadlineMs }),
    },
    { verb: 'dev up --state-dir', run: (path) => isthmus(['dev', 'up', '--state-dir', path, '--host-base', '241'], {}, { timeoutMs: deadlineMs }) },
    { verb: 'sidecar (stateDir in its config)', run: (path) => isthmus(['sidecar', '--config', sidecarConfig(path)], {}, { timeoutMs: deadlineMs }) },
  ];
  for (const { verb, run } of verbs) {
    test(`${verb}: every kind of unusable directory`, async () => {
      for (const { kind, path, says } of unusableDirectories()) {
        const result = await run(path);
        named(`${verb}, ${kind}`, () => expectRefused(result, path, says));
      }
    });
  }

  test('bench --cpu-prof: a directory under /proc is refused before any mesh starts', () => {
    const bench = new URL('../../dist/bench/run.js', import.meta.url).pathname;
    const result = spawnSync(process.execPath, [bench, '--mesh', 'child', '--cpu-prof', '/proc/isthmus-nope'], { encoding: 'utf8', timeout: deadlineMs });
    expect(result.error, 'it finished before the deadline').toBeUndefined();
    expectRefused({ code: result.status ?? -1, stdout: result.stdout, stderr: result.stderr }, '/proc/isthmus-nope', /cannot be created as a directory/);
  });

  test('bench:memory takes --help, and refuses a bad value or an unknown flag in one line and its usage, without a stack trace', () => {
    const memory = new URL('../../dist/bench/memory.js', import.meta.url).pathname;
    const help = spawnSync(process.execPath, [memory, '--help'], { encoding: 'utf8', timeout: deadlineMs });
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/^usage: node dist\/bench\/memory\.js/);
    for (const bad of [['--services', 'lots'], ['--bogus']]) {
      const result = spawnSync(process.execPath, [memory, ...bad], { encoding: 'utf8', timeout: deadlineMs });
      expect(result.status, bad.join(' ')).toBe(2);
      expect(result.stderr.split('\n')[0]).toMatch(/^bench memory: /);
      expect(result.stderr).not.toMatch(/\n\s+at /);
    }
  });

  test('a usable directory that does not exist yet is still created, parents and all', async () => {
    const out = join(dir, 'new', 'deeper', 'ca');
    await isthmusOk(['ca', 'init', '--trust-domain', 'paths.test', '--out', out]);
    expect(existsSync(join(out, 'root-key.pem'))).toBe(true);
  });
});

describe('a file a user names that cannot be read is refused at once, naming it', () => {
  const files = () => [
    { kind: 'a missing file under /proc', path: '/proc/isthmus-nope.yaml', says: /cannot be read: it does not exist; check the path/ },
    { kind: 'a directory where a file is expected', path: dir, says: /cannot be read: it is a directory, and a file is needed/ },
    { kind: 'a path below a file', path: join(aFile, 'cluster.yaml'), says: /cannot be read: a part of the path is a file/ },
  ];
  for (const verb of [['sidecar'], ['gateway'], ['federation'], ['register', 'hello']]) {
    test(`${verb[0]} --config: every kind of unreadable file`, async () => {
      for (const { kind, path, says } of files()) {
        const result = await isthmus([...verb, '--config', path], {}, { timeoutMs: deadlineMs });
        named(`${verb[0]}, ${kind}`, () => expectRefused(result, path, says));
      }
    });
  }

  test('policy apply -f: every kind of unreadable file', async () => {
    for (const { kind, path, says } of files()) {
      const result = await isthmus(['policy', 'apply', '-f', path, ...etcdArgs(etcd)], {}, { timeoutMs: deadlineMs });
      named(`policy apply, ${kind}`, () => expectRefused(result, path, says));
    }
  });

  test('register: a registry file that is a directory is named, and nothing is registered', async () => {
    const cluster = join(dir, 'cluster-east');
    await isthmusOk(['join', 'east', '--region', 'us', '--zone', 'a', ...etcdArgs(etcd), '--ca', ca, '--out', cluster, '--federation-host', '127.0.241.1', '--api-port', '0']);
    const registry = join(cluster, 'registry.json');
    mkdirSync(registry);
    const result = await isthmus(['register', 'hello', '-n', 'demo', '--config', join(cluster, 'cluster.yaml'), '--address', '127.0.241.1:9001'], {}, { timeoutMs: deadlineMs });
    expectRefused(result, registry, /the registry file .* cannot be read: it is a directory/);
  });
});
