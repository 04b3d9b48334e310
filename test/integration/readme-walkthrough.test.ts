import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, test } from 'vitest';
import { isPortListening } from '../helpers/ports.js';
import { isthmusBin, waitFor } from '../helpers/cli.js';

const checkout = fileURLToPath(new URL('../../', import.meta.url));

/**
 * The shell block of README.md's "Five minutes with the CLI", as written there. The only change:
 * its loopback addresses are moved to this test's own range, so it runs beside the other
 * integration tests and a user's own mesh (etcd and dash 127.0.0.1 → 127.0.247.1, east
 * 127.0.1.1 → 127.0.245.1, west 127.0.2.1 → 127.0.246.1).
 */
export function walkthroughScript(readme: string): string {
  const section = readme.slice(readme.indexOf('## Five minutes with the CLI'));
  const block = /```sh\n([\s\S]*?)```/.exec(section)?.[1];
  if (!block) throw new Error('README.md has no ```sh block under "## Five minutes with the CLI"');
  return block
    .replaceAll('127.0.0.1', '127.0.247.1')
    .replaceAll('127.0.1.1', '127.0.245.1')
    .replaceAll('127.0.2.1', '127.0.246.1');
}

const work = mkdtempSync(join(tmpdir(), 'isthmus-readme-'));
let group: number | undefined;

afterAll(async () => {
  if (group !== undefined) {
    try {
      process.kill(-group, 'SIGTERM');
    } catch {
      // already gone
    }
    await waitFor(async () => !(await isPortListening('127.0.247.1', 2379)), 20_000, 'the walkthrough\'s etcd to stop').catch(() => {
      try {
        process.kill(-group!, 'SIGKILL');
      } catch {
        // gone
      }
    });
  }
  rmSync(work, { recursive: true, force: true });
});

/** Every path under `dir` (relative), for finding what the walkthrough wrote. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((p) => statSync(join(dir, p)).isFile());
}

const gitStatus = () => spawnSync('git', ['status', '--porcelain', '--ignored'], { cwd: checkout, encoding: 'utf8' }).stdout;

test('the README walkthrough, run as written from the checkout, works in a directory of its own, serves no private key and writes nothing into the checkout', async () => {
  const script = walkthroughScript(readFileSync(join(checkout, 'README.md'), 'utf8'));
  // `npm link` puts bin/isthmus.js on PATH as `isthmus`; a PATH entry of our own does the same.
  const bin = join(work, 'bin');
  mkdirSync(bin);
  symlinkSync(isthmusBin, join(bin, 'isthmus'));
  const tmp = join(work, 'tmp');
  mkdirSync(tmp);
  writeFileSync(join(work, 'walkthrough.sh'), `set -e\n${script}\necho "WALKTHROUGH_DIR=$PWD"\n`);
  const before = gitStatus();

  const child = spawn('bash', [join(work, 'walkthrough.sh')], {
    cwd: checkout, // where a reader who just cloned the repository stands
    detached: true, // its own process group: the background jobs are stopped with it
    env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, TMPDIR: tmp, ISTHMUS_ETCD: '', NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  group = child.pid;
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
  child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  const report = `\n--- stdout ---\n${stdout}\n--- stderr ---\n${stderr}`;
  expect(code, `the walkthrough stopped with exit ${code}${report}`).toBe(0);

  // It worked in a directory of its own under $TMPDIR, and the key material is there.
  const dir = /^WALKTHROUGH_DIR=(.+)$/m.exec(stdout)?.[1] ?? '';
  expect(relative(tmp, dir).startsWith('..'), `walkthrough dir ${dir}`).toBe(false);
  const keysMade = filesUnder(dir).filter((p) => /key\.pem$/.test(p));
  expect(keysMade).toEqual(expect.arrayContaining(['ca/root-key.pem', 'east/ca-key.pem', 'west/ca-key.pem']));

  // What the README says the user sees: ledger published in step 5, then "not published" after
  // west's federation stopped in step 7.
  expect(stdout).toMatch(/shop\s+ledger\s+west\s+1\/1\s+.*published/);
  expect(stdout).toContain('not published: cluster down or service unknown there');
  expect(stdout).toMatch(/ServiceLevelObjective shop\/ledger-fast/);

  // The workload's web server answers with its content, and with no key under any path: not the
  // walkthrough's own files, and not by climbing out of its directory.
  for (const key of keysMade) {
    for (const path of [key, `../${key}`, `%2e%2e/${key}`]) {
      const res = await fetch(`http://127.0.246.1:9000/${path}`);
      const body = await res.text();
      expect(body, `GET /${path}`).not.toContain('PRIVATE KEY');
    }
  }
  const ledger = await fetch('http://127.0.246.1:9000/');
  expect(await ledger.text()).toContain('hello from ledger');
  // Nor do the other HTTP ports the walkthrough opened (east's dashboard, isthmus dash).
  for (const base of ['http://127.0.245.1:15014', 'http://127.0.247.1:15015']) {
    for (const key of keysMade) {
      const res = await fetch(`${base}/${key}`).catch(() => undefined);
      expect(await res?.text() ?? '', `${base}/${key}`).not.toContain('PRIVATE KEY');
    }
  }

  // Nothing landed in the checkout, not even an ignored file.
  expect(gitStatus()).toBe(before);
}, 120_000);
