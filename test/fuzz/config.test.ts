import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { readPolicyFile } from '../../src/cli/policy-documents.js';
import { isIsthmusError } from '../../src/core/errors.js';
import { parseClusterConfig } from '../../src/federation/config.js';
import { loadSidecarConfig } from '../../src/sidecar/config.js';
import { fuzzRun } from '../helpers/fuzz.js';

/**
 * The config loaders (cluster config, sidecar config, policy files) given mutations of valid
 * files: each input is accepted, or refused with an IsthmusError whose code says config or
 * policy — never a TypeError from a shape the loader did not expect, never a hang.
 * ISTHMUS_FUZZ_SECONDS and ISTHMUS_FUZZ_SEED lengthen or replay a run (test/helpers/fuzz.ts).
 */

const dir = mkdtempSync(join(tmpdir(), 'isthmus-fuzz-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
writeFileSync(join(dir, 'root-cert.pem'), 'ROOT\n');
writeFileSync(join(dir, 'token'), 'tok\n');

const cluster = `cluster: east
region: us-east
zones: [a, b]
trustDomain: east.example
etcd: { endpoints: [http://127.0.0.1:2379] }
federation: { apiPort: 15010, leaseTtl: 15s, healthCheckInterval: 2s }
certificates: { caDir: ., workloadTtl: 24h }
services:
  - name: hello
    namespace: demo
    port: 8080
    instances: [{ address: 127.0.0.1:9000, zone: a }]
`;

const sidecar = `cluster: east
zone: east-a
namespace: demo
service: hello
federation: { url: https://127.0.0.1:15010, rootCert: root-cert.pem }
tokenFile: token
stateDir: state
outbound: { listen: 127.0.0.1:15001 }
admin: { listen: 127.0.0.1:15020 }
reportInterval: 5s
listeners: [{ listen: 127.0.0.1:16000, service: ledger.demo, port: 80 }]
`;

const policies = readFileSync(new URL('../fixtures/policy/canary.yaml', import.meta.url), 'utf8');
const slo = `apiVersion: isthmus.dev/v1alpha1
kind: ServiceLevelObjective
metadata: { name: hello-latency, namespace: demo }
spec: { service: hello, objective: { latency: { threshold: 250ms, percent: 99 } }, window: 1h }
`;

/** Loader errors a user can act on: the config or policy families. */
const expected = /^ISTHMUS_ERR_(CONFIG|POLICY)_/;

function verdict(load: () => unknown): string | undefined {
  try {
    load();
    return undefined;
  } catch (err) {
    if (isIsthmusError(err) && expected.test(err.code)) return undefined;
    return `${(err as Error).constructor.name}: ${(err as Error).message.split('\n')[0]}`;
  }
}

async function verdictAsync(load: () => Promise<unknown>): Promise<string | undefined> {
  try {
    await load();
    return undefined;
  } catch (err) {
    if (isIsthmusError(err) && expected.test(err.code)) return undefined;
    return `${(err as Error).constructor.name}: ${(err as Error).message.split('\n')[0]}`;
  }
}

/** Runs mutations of `corpus` through `check` for the run's seconds (and at least `min` cases); each problem is named with its seed and case. */
async function fuzzLoader(corpus: string[], min: number, check: (input: Buffer) => Promise<string | undefined>): Promise<{ problems: string[]; n: number }> {
  const run = fuzzRun(1, corpus);
  const problems: string[] = [];
  const end = Date.now() + run.seconds * 1000;
  let n = 0;
  for (; Date.now() < end || n < min; n++) {
    const problem = await check(run.input(n));
    if (problem) problems.push(`${run.label(n)}: ${problem}`);
  }
  return { problems, n };
}

describe('config loaders under fuzzing', () => {
  test('cluster config: every mutation is accepted or refused with a config error', async () => {
    const { problems, n } = await fuzzLoader([cluster], 200, async (input) => verdict(() => parseClusterConfig(input.toString('utf8'), join(dir, 'cluster.yaml'))));
    expect(problems, `${n} cases`).toEqual([]);
  });

  test('sidecar config: every mutation is accepted or refused with a config error', async () => {
    const path = join(dir, 'sidecar.yaml');
    const { problems, n } = await fuzzLoader([sidecar], 200, async (input) => {
      writeFileSync(path, input);
      return verdict(() => loadSidecarConfig(path));
    });
    expect(problems, `${n} cases`).toEqual([]);
  });

  test('policy files: every mutation is accepted or refused with a config or policy error', async () => {
    const path = join(dir, 'policy.yaml');
    const { problems, n } = await fuzzLoader([policies, slo], 100, async (input) => {
      writeFileSync(path, input);
      return await verdictAsync(() => readPolicyFile(path));
    });
    expect(problems, `${n} cases`).toEqual([]);
  });

  test('a YAML alias bomb is refused, not expanded', async () => {
    const bomb = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]', ...Array.from({ length: 9 }, (_, i) => `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(10).fill(`*${String.fromCharCode(97 + i)}`).join(',')}]`)].join('\n');
    expect(verdict(() => parseClusterConfig(bomb, join(dir, 'cluster.yaml')))).toBeUndefined();
    const path = join(dir, 'bomb.yaml');
    writeFileSync(path, bomb);
    await expect(readPolicyFile(path)).rejects.toMatchObject({ code: expect.stringMatching(expected) });
  });
});
