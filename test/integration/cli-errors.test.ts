import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { buildProgram } from '../../src/cli/main.js';
import { createRootCa } from '../../src/trust/ca.js';
import { isthmus, isthmusBin, isthmusOk, type CliResult } from '../helpers/cli.js';
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

// ---------------------------------------------------------------------------------------------
// Every verb, every kind of bad input. The verbs come from `isthmus --help` (and the help of each
// group of verbs), so a new verb is in the matrix without anyone adding it; its options decide
// its cases. Each case must exit non-zero with a short message naming the problem, print no
// stack trace, and write nothing (no file in its scratch directory, no key in etcd).

/** A value for each mandatory option, so that the one bad input is what the verb stumbles on. */
function mandatoryValue(long: string, verb: string, scratch: string): string {
  const config = verb === 'sidecar' ? join(dir, 'matrix-sidecar.yaml') : join(dir, 'east', 'cluster.yaml');
  const values: Record<string, string> = {
    '--trust-domain': 'matrix.test', '--out': join(scratch, 'out'), '--ca-dir': ca, '--ca': ca, '--region': 'us', '--zone': 'a',
    '--cluster': 'east', '--config': config, '--address': '127.0.224.1:9', '--name': 'alice', '--from': 'east',
    '--file': join(dir, 'matrix-policy.yaml'), '--to': 'hello-v2', '--objective': 'hello-fast', '--namespace': 'demo',
    '--filename': join(dir, 'matrix-manifest.yaml'),
  };
  const value = values[long];
  if (value === undefined) throw new Error(`${verb}: no value for its mandatory option ${long}; add one to mandatoryValue`);
  return value;
}

/** Values of required arguments, by name; a policy is named <namespace>/<name>. */
const argumentValue = (verb: string, name: string) => ({ cluster: 'east', service: 'hello', source: 'demo/client', kind: 'TrafficSplit', name: verb.startsWith('policy') ? 'demo/alice' : 'alice' } as Record<string, string>)[name] ?? 'hello';

/** Options a verb needs to get as far as etcd, though they are not mandatory for it (join takes --out or --kubeconfig). */
const neededOptions = (scratch: string): Record<string, string[]> => ({ explain: ['--from', 'east'], join: ['--out', join(scratch, 'out')] });

/** Bad values by what an option takes (its `<placeholder>`), with what the message must name. */
const wrongValues: Record<string, string> = { port: 'http', n: 'many', rps: 'lots', days: 'forever', duration: 'soon', 'host:port': 'nowhere', percents: '10,lots' };

interface BadCase { verb: string; what: string; args: string[]; says: RegExp }

interface Verb { path: string[]; command: Command }

/** The verbs `isthmus --help` lists, with the verbs of each group (`ca`, `policy`, ...) from its own help. */
async function helpVerbs(): Promise<string[][]> {
  const listed = async (path: string[]) => {
    const help = (await isthmusOk([...path, '--help'])).stdout;
    const section = help.slice(help.indexOf('\nCommands:\n') + 11).split(/\n\S/)[0]!;
    return [...section.matchAll(/^ {2}(\S+)( .*)?$/gm)].map((m) => ({ name: m[1]!, group: !/[<[]/.test(m[2] ?? '') })).filter((c) => c.name !== 'help');
  };
  const verbs: string[][] = [];
  for (const { name, group } of await listed([])) {
    if (!group) verbs.push([name]);
    else for (const sub of await listed([name])) verbs.push([name, sub.name]);
  }
  return verbs;
}

function leaves(command: Command, path: string[] = []): Verb[] {
  return command.commands.filter((c) => c.name() !== 'help').flatMap((c) => (c.commands.length > 0 ? leaves(c, [...path, c.name()]) : [{ path: [...path, c.name()], command: c }]));
}

function casesOf({ path, command }: Verb, scratch: string, closedPort: number, otherCa: string): BadCase[] {
  const verb = path.join(' ');
  const options = command.options;
  const has = (long: string) => options.some((o) => o.long === long);
  const positional = [...path, ...command.registeredArguments.filter((a) => a.required).map((a) => argumentValue(verb, a.name()))];
  const given = new Map<string, string>(options.filter((o) => o.mandatory).map((o) => [o.long!, mandatoryValue(o.long!, verb, scratch)]));
  const needed = neededOptions(scratch)[verb] ?? [];
  for (let i = 0; i < needed.length; i += 2) given.set(needed[i]!, needed[i + 1]!);
  const base = [...positional, ...[...given].flat()];
  /** The base command with `changes` replacing (or joining) its options. */
  const withOptions = (changes: Record<string, string>) => [...positional, ...[...new Map([...given, ...Object.entries(changes)])].flat()];
  const cases: BadCase[] = [];
  const goodEtcd = has('--etcd') ? etcdArgs(etcd) : [];
  if (has('--etcd')) {
    const tls = etcd.tls;
    cases.push(
      { verb, what: 'an unreachable etcd (a closed port)', args: [...base, '--etcd', `http://127.0.0.1:${closedPort}`], says: new RegExp(`127\\.0\\.0\\.1:${closedPort}`) },
      { verb, what: 'an etcd whose certificate another CA signed', args: [...base, '--etcd', etcd.url, '--etcd-ca', otherCa, '--etcd-cert', tls.cert, '--etcd-key', tls.key], says: /certificate|CA/ },
      { verb, what: 'a TLS etcd without a client certificate', args: [...base, '--etcd', etcd.url, '--etcd-ca', tls.ca], says: /client certificate|--etcd-cert/ },
    );
  }
  for (const option of options) {
    const long = option.long!;
    const takes = /<([^>]+)>/.exec(option.flags)?.[1];
    if (takes === undefined || /^--etcd-(ca|cert|key)$/.test(long)) continue;
    // A certificate and its key go together: both get the bad value, so the path is what is wrong.
    const partner = long.endsWith('-cert') ? long.replace(/-cert$/, '-key') : long.endsWith('-key') ? long.replace(/-key$/, '-cert') : undefined;
    // join writes to --out or to --kubeconfig's cluster, not both: the kubeconfig cases go without --out.
    const withoutOut = (a: string[]) => (long === '--kubeconfig' && a.includes('--out') ? a.filter((_, i) => a[i] !== '--out' && a[i - 1] !== '--out') : a);
    const args = (value: string) => [...withoutOut(withOptions({ [long]: value, ...(partner && has(partner) ? { [partner]: value } : {}) })), ...goodEtcd];
    if (takes === 'file') {
      cases.push({ verb, what: `${long}: a file that does not exist`, args: args('/proc/isthmus-nope.yaml'), says: /\/proc\/isthmus-nope\.yaml/ });
      // The files a verb reads YAML from get the rest; the other files (certificates, keys) are
      // read by the same code as the etcd files and the directories of cli-paths.test.ts.
      if (['--config', '--file', '--filename'].includes(long)) {
        const malformed = join(scratch, 'malformed.yaml');
        const wrongTypes = join(scratch, long === '--filename' ? 'wrong-types-manifest.yaml' : 'wrong-types.yaml');
        cases.push(
          { verb, what: `${long}: a directory where a file is expected`, args: args(scratch), says: new RegExp(escape(scratch)) },
          { verb, what: `${long}: malformed YAML`, args: args(malformed), says: new RegExp(escape(malformed)) },
          { verb, what: `${long}: YAML of the wrong types`, args: args(wrongTypes), says: new RegExp(`${escape(wrongTypes)}|wrong-types`) },
        );
      }
    } else if (takes === 'dir') {
      cases.push({ verb, what: `${long}: a directory that cannot be used`, args: args('/proc/isthmus-nope'), says: /\/proc\/isthmus-nope/ });
    } else if (wrongValues[takes] !== undefined) {
      const value = wrongValues[takes];
      cases.push({ verb, what: `${long}: a value of the wrong type`, args: args(value), says: new RegExp(`${escape(long)}|${escape(value)}`) });
    }
  }
  return cases;
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Runs `work` over `items`, at most `width` at a time. */
async function pooled<T, R>(items: readonly T[], width: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await work(items[i]!);
    }
  }));
  return results;
}

/** What is wrong with one case's result, or undefined when it is refused as it should be. */
function problemOf(c: BadCase, result: CliResult): string | undefined {
  const output = `${result.stdout}${result.stderr}`.trim();
  const problems: string[] = [];
  if (result.code === 0) problems.push('exit 0');
  if (/\n\s+at \S/.test(`\n${output}`) || output.includes('node:internal')) problems.push('a stack trace');
  if (output === '') problems.push('no message');
  // `check` and `join` print their list of named checks (about a dozen lines); one line elsewhere.
  if (output.split('\n').length > 16) problems.push(`${output.split('\n').length} lines of output`);
  if (!c.says.test(output)) problems.push(`the message does not name the problem (${c.says})`);
  if (problems.length === 0) return undefined;
  return `isthmus ${c.args.join(' ')}\n  (${c.what}): ${problems.join('; ')}\n  exit ${result.code}; output: ${output.slice(0, 600).replace(/\n/g, '\n  | ')}`;
}

describe('every verb given bad input: one short message, non-zero exit, no stack trace, nothing written', () => {
  test('the verbs of `isthmus --help` are the verbs of the matrix', async () => {
    const fromHelp = (await helpVerbs()).map((p) => p.join(' '));
    expect(fromHelp.length).toBeGreaterThan(25);
    expect(leaves(await buildProgram()).map((v) => v.path.join(' '))).toEqual(fromHelp);
  });

  test('unusable paths, malformed YAML, wrong types, an unreachable or TLS-mismatched etcd', async () => {
    const verbs = leaves(await buildProgram());
    const otherCa = join(dir, 'matrix-other-etcd-ca.pem');
    writeFileSync(otherCa, createRootCa({ trustDomain: 'other.test' }).certPem);
    writeFileSync(join(dir, 'matrix-policy.yaml'), readFileSync(new URL('../fixtures/policy/canary.yaml', import.meta.url), 'utf8'));
    writeFileSync(join(dir, 'matrix-manifest.yaml'), readFileSync(new URL('../fixtures/inject/shop.yaml', import.meta.url), 'utf8'));
    writeFileSync(join(dir, 'matrix-sidecar.yaml'), [
      'cluster: east', 'zone: a', 'namespace: demo', 'service: client',
      `federation: { url: "https://127.0.224.1:1", rootCert: ${join(ca, 'root-cert.pem')} }`,
      'token: not-used', `stateDir: ${join(dir, 'matrix-sidecar-state')}`,
      'outbound: { listen: "127.0.224.1:0" }', 'admin: { listen: "127.0.224.1:0" }', '',
    ].join('\n'));
    const closedPort = await freePort();
    const before = await snapshot();
    const started = Date.now();
    const cases = verbs.flatMap((verb) => {
      const scratch = mkdtempSync(join(dir, `matrix-${verb.path.join('-')}-`));
      writeFileSync(join(scratch, 'malformed.yaml'), 'cluster: east\nregion: [us\n  zones: : a\n');
      writeFileSync(join(scratch, 'wrong-types.yaml'), 'cluster: [east]\nregion: 7\nzones: a\nservice: { name: 1 }\nkind: 5\nmetadata: nope\n');
      writeFileSync(join(scratch, 'wrong-types-manifest.yaml'), 'apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: shop\nspec:\n  template: 5\n');
      return casesOf(verb, scratch, closedPort, otherCa).map((c) => ({ ...c, scratch }));
    });
    // Verbs that would run a mesh, a sidecar or a server when wrongly given a go: each case has a
    // deadline, so a verb that does not refuse fails by name instead of hanging the suite.
    const took: [number, string][] = [];
    // The cases of one verb share its scratch directory and run side by side, so what one of them
    // writes is only looked for once all are done: a case's own check may create and remove an
    // entry there for a moment (join probes that it can write in the directory) while another
    // case of the same verb finishes.
    const inputsOf = new Map(cases.map((c) => [c.scratch, readdirSync(c.scratch).sort()]));
    const problems = await pooled(cases, 4, async (c) => {
      let result: CliResult;
      const at = Date.now();
      try {
        result = await isthmus(c.args, {}, { timeoutMs: 20_000 });
      } catch (err) {
        return `isthmus ${c.args.join(' ')}\n  (${c.what}): ${(err as Error).message.split('\n')[0]}`;
      } finally {
        took.push([Date.now() - at, `${c.verb}: ${c.what}`]);
      }
      return problemOf(c, result);
    });
    for (const [scratch, inputs] of inputsOf) {
      const written = readdirSync(scratch).sort().filter((f) => !inputs.includes(f));
      if (written.length > 0) problems.push(`the cases of ${scratch.slice(dir.length + 1)} wrote ${written.join(', ')}`);
    }
    console.log(`slowest: ${took.sort((a, b) => b[0] - a[0]).slice(0, 8).map(([ms, what]) => `${what} ${ms} ms`).join('; ')}`);
    const failed = problems.filter((p): p is string => p !== undefined);
    console.log(`bad-input matrix: ${verbs.length} verbs, ${cases.length} cases, ${failed.length} not refused as they should be, ${Date.now() - started} ms`);
    expect(failed.join('\n\n')).toBe('');
    expect(await snapshot()).toEqual(before);
    expect(existsSync(join(dir, 'matrix-sidecar-state'))).toBe(false);
  }, 240_000);
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
