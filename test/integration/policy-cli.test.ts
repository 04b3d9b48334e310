import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parse } from 'yaml';
import { keys } from '../../src/core/keys.js';
import { FederationStore } from '../../src/federation/store.js';
import { etcdEnv, startEtcd, storeOptions, type TestEtcd } from '../helpers/etcd.js';
import { isthmus, isthmusBin, type CliResult } from '../helpers/cli.js';

// `isthmus policy` against a real etcd: what a user sees from apply (dry run, all-or-nothing,
// field paths), get, list and delete. No mesh is needed: policies are only records here.
const fixture = (name: string) => join(import.meta.dirname, '..', 'fixtures', 'policy', name);
let etcd: TestEtcd;
let store: FederationStore;
let dir: string;
const env = () => (etcdEnv(etcd));
const policyKeys = async () => (await store.list(keys.policies)).records.map((r) => r.key).sort();

function yamlFile(name: string, text: string): string {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

/** The CLI with `input` on its standard input (`-f -`). */
function isthmusWithInput(args: string[], input: string): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [isthmusBin, ...args], { env: { ...process.env, ...env(), NO_COLOR: '1' }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(input);
  });
}

beforeAll(async () => {
  etcd = await startEtcd();
  store = await FederationStore.connect(storeOptions(etcd));
  dir = mkdtempSync(join(tmpdir(), 'isthmus-policy-cli-'));
});

afterAll(async () => {
  await store?.close();
  await etcd?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('isthmus policy apply', () => {
  test('--dry-run prints what would change (golden) and writes nothing; unknown services warn', async () => {
    const res = await isthmus(['policy', 'apply', '-f', fixture('canary.yaml'), '--dry-run'], env());
    expect(res.code).toBe(0);
    expect(res.stdout).toBe(readFileSync(fixture('canary.dry-run.txt'), 'utf8'));
    expect(res.stderr).toMatch(/warning: HTTPRoute demo\/hello-canary names demo\/hello-v2, which no cluster exports/);
    expect(await policyKeys()).toEqual([]);
  });

  test('applies every document in one go; again it is unchanged; an edit is "changed" and keeps its creation time', async () => {
    const first = await isthmus(['policy', 'apply', '-f', fixture('canary.yaml'), '--output', 'json'], env());
    expect(first.code).toBe(0);
    expect(JSON.parse(first.stdout).applied.map((a: { change: string }) => a.change)).toEqual(['created', 'created', 'created']);
    expect(await policyKeys()).toEqual([
      keys.policy('httproute', 'demo', 'hello-canary'), keys.policy('retrypolicy', 'demo', 'hello-retries'), keys.policy('trafficsplit', 'demo', 'ledger-split'),
    ].sort());
    const createdAt = (await store.get<{ createdAt: string }>(keys.policy('httproute', 'demo', 'hello-canary')))?.value.createdAt;

    const again = await isthmus(['policy', 'apply', '-f', fixture('canary.yaml'), '--dry-run'], env());
    expect(again.stdout.split('\n').slice(0, 3)).toEqual([
      'HTTPRoute demo/hello-canary unchanged', 'TrafficSplit demo/ledger-split unchanged', 'RetryPolicy demo/hello-retries unchanged',
    ]);

    const edited = readFileSync(fixture('canary.yaml'), 'utf8').replace('weight: 90', 'weight: 80');
    const res = await isthmusWithInput(['policy', 'apply', '-f', '-'], edited);
    expect(res.code).toBe(0);
    expect(res.stdout).toContain('HTTPRoute demo/hello-canary changed\nTrafficSplit demo/ledger-split unchanged');
    const stored = await store.get<{ createdAt: string; spec: { rules: { backendRefs: { weight?: number }[] }[] } }>(keys.policy('httproute', 'demo', 'hello-canary'));
    expect(stored?.value.spec.rules[1]?.backendRefs[0]?.weight).toBe(80);
    expect(stored?.value.createdAt).toBe(createdAt);
  });

  test.each([
    ['a path type Gateway API does not have (published schema)', 'path: { type: Bogus, value: /x }', /\/spec\/rules\/0\/matches\/0\/path\/type: must be equal to one of the allowed values/],
    ['a negative weight (published schema)', 'path: { type: Exact, value: /x }', /\/spec\/rules\/0\/backendRefs\/0\/weight: must be >= 0/, '-1'],
    ['a RegularExpression header match (valid Gateway API, not done by Isthmus)', 'headers: [{ type: RegularExpression, name: x, value: "a.*" }]', /\/spec\/rules\/0\/matches\/0\/headers\/0\/type: .*Isthmus does not carry out RegularExpression header matches/],
  ])('%s: refused with the field path, and nothing of the file is stored', async (_why, match, expected, weight = '1') => {
    const good = readFileSync(fixture('canary.yaml'), 'utf8').replaceAll('demo', 'shop');
    const bad = `${good}---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: { name: bad, namespace: shop }\nspec:\n  parentRefs: [{ group: "", kind: Service, name: hello }]\n  rules:\n    - matches: [{ ${match} }]\n      backendRefs: [{ name: hello-v2, weight: ${weight} }]\n`;
    const res = await isthmus(['policy', 'apply', '-f', yamlFile('bad.yaml', bad)], env());
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/bad\.yaml \(document 4\)/);
    expect(res.stderr).toMatch(expected);
    expect((await policyKeys()).filter((k) => k.includes('/shop/'))).toEqual([]);
  });

  test('an isthmus.dev kind with a bad field, and a rule no schema says, are refused naming the field', async () => {
    const retry = await isthmus(['policy', 'apply', '-f', yamlFile('retry.yaml', 'apiVersion: isthmus.dev/v1alpha1\nkind: RetryPolicy\nmetadata: { name: r, namespace: demo }\nspec: { service: hello, attempts: 30, retryOn: [5xx], budget: { percent: 20 }, retryOnn: [] }\n')], env());
    expect(retry.code).toBe(1);
    expect(retry.stderr).toMatch(/\/spec\/attempts: expected integer to be less or equal to 10/);
    expect(retry.stderr).toMatch(/\/spec\/retryOnn: a field Isthmus does not know/);
    const fault = await isthmus(['policy', 'apply', '-f', yamlFile('fault.yaml', 'apiVersion: isthmus.dev/v1alpha1\nkind: FaultInjection\nmetadata: { name: f, namespace: demo }\nspec: { service: hello, abort: { percent: 5 } }\n'), '--output', 'json'], env());
    expect(fault.code).toBe(1);
    expect(JSON.parse(fault.stdout).error).toMatchObject({ code: 'ISTHMUS_ERR_POLICY_INVALID', details: [{ path: '/spec/abort', message: 'give exactly one of status and grpcStatus' }] });
    const split = await isthmus(['policy', 'apply', '-f', yamlFile('split.yaml', 'apiVersion: split.smi-spec.io/v1alpha4\nkind: TrafficSplit\nmetadata: { name: s, namespace: demo }\nspec: { service: hello, backends: [{ service: hello-v1, weight: 1 }], matches: [{ kind: HTTPRouteGroup, name: g }] }\n')], env());
    expect(split.stderr).toMatch(/\/spec\/matches: a field Isthmus does not know or does not carry out/);
  });
});

describe('isthmus policy get, list, delete', () => {
  test('get prints the applied document; list shows every kind; delete removes one', async () => {
    const got = await isthmus(['policy', 'get', 'httproute', 'demo/hello-canary'], env());
    expect(got.code).toBe(0);
    const doc = parse(got.stdout) as { kind: string; metadata: { name: string }; spec: { parentRefs: { name: string }[] } };
    expect(doc).toMatchObject({ kind: 'HTTPRoute', metadata: { name: 'hello-canary' }, spec: { parentRefs: [{ name: 'hello' }] } });

    const listed = JSON.parse((await isthmus(['policy', 'list', '--output', 'json'], env())).stdout) as { policies: { kind: string; name: string; services: string[] }[] };
    expect(listed.policies.map((p) => `${p.kind} ${p.name} ${p.services.join(',')}`).sort()).toEqual([
      'HTTPRoute hello-canary hello', 'RetryPolicy hello-retries hello', 'TrafficSplit ledger-split ledger',
    ]);

    expect((await isthmus(['policy', 'delete', 'TrafficSplit', 'demo/ledger-split'], env())).code).toBe(0);
    expect(await store.get(keys.policy('trafficsplit', 'demo', 'ledger-split'))).toBeUndefined();
    const missing = await isthmus(['policy', 'get', 'trafficsplit', 'demo/ledger-split', '--output', 'json'], env());
    expect(missing.code).toBe(1);
    expect(JSON.parse(missing.stdout).error.code).toBe('ISTHMUS_ERR_POLICY_NOT_FOUND');
  });

  test('objectives still apply, list and delete beside the traffic kinds, with the JSON scripts already read', async () => {
    const slo = yamlFile('slo.yaml', 'apiVersion: isthmus.dev/v1alpha1\nkind: ServiceLevelObjective\nmetadata: { name: hello-fast, namespace: demo }\nspec: { service: hello, success: 99.9, window: 1h }\n');
    const applied = await isthmus(['policy', 'apply', '-f', slo, '--output', 'json'], env());
    expect(JSON.parse(applied.stdout).applied).toEqual([{ kind: 'ServiceLevelObjective', name: 'demo/hello-fast', change: 'created', changed: true }]);
    const listed = JSON.parse((await isthmus(['policy', 'list', '--output', 'json'], env())).stdout) as { policies: { kind: string; name: string; successPercent?: number }[] };
    expect(listed.policies.find((p) => p.kind === 'ServiceLevelObjective')).toMatchObject({ name: 'hello-fast', successPercent: 99.9 });
    expect((await isthmus(['policy', 'delete', 'slo', 'demo/hello-fast'], env())).code).toBe(0);
    expect(await store.get(keys.policy('slo', 'demo', 'hello-fast'))).toBeUndefined();
  });
});
