import { execFileSync } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { verifyOperatorToken } from '../../src/trust/operator.js';
import { isthmus, isthmusOk } from '../helpers/cli.js';
import { TestMesh } from '../helpers/mesh.js';
import { etcdArgs } from '../helpers/etcd.js';

// `isthmus operator issue` and `operator token` as a person runs them; the cluster on 127.0.121.1.
let mesh: TestMesh;
let ca: string;
let clusterDir: string;

beforeAll(async () => {
  mesh = await TestMesh.create();
  ca = await mesh.caInit('ca', 'ops.test');
  clusterDir = (await mesh.join('east', { index: 121, ca })).dir;
}, 60_000);

afterAll(async () => {
  await mesh?.close();
});

function opensslVerify(purpose: 'sslclient' | 'sslserver', dir: string): string {
  // operator-cert.pem holds the leaf, then its issuer chain: split it for openssl.
  const blocks = readFileSync(join(dir, 'operator-cert.pem'), 'utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
  writeFileSync(join(dir, 'leaf.pem'), blocks[0] ?? '');
  writeFileSync(join(dir, 'chain.pem'), blocks.slice(1).join('') || (blocks[0] ?? ''));
  try {
    return execFileSync('openssl', ['verify', '-x509_strict', '-purpose', purpose, '-CAfile', join(ca, 'root-cert.pem'), '-untrusted', join(dir, 'chain.pem'), join(dir, 'leaf.pem')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    return `refused: ${e.stdout ?? ''}${e.stderr ?? ''}`;
  }
}

describe('isthmus operator', () => {
  test('issue from the root: spiffe://<td>/operator/<name>, a key only its owner reads, a client certificate openssl accepts as a client only', async () => {
    const out = join(mesh.dir, 'alice');
    const issued = JSON.parse((await isthmusOk(['operator', 'issue', '--name', 'alice', '--ca-dir', ca, '--out', out, '-o', 'json'])).stdout);
    expect(issued).toMatchObject({ identity: 'spiffe://ops.test/operator/alice', cert: join(out, 'operator-cert.pem'), key: join(out, 'operator-key.pem') });
    expect(Date.parse(issued.notAfter) - Date.now()).toBeLessThanOrEqual(8 * 3600_000);
    expect(statSync(issued.key).mode & 0o777).toBe(0o600);
    expect(opensslVerify('sslclient', out)).toBe(`${join(out, 'leaf.pem')}: OK`);
    expect(opensslVerify('sslserver', out)).toMatch(/^refused: .*error 26 at 0 depth lookup: unsuitable certificate purpose/s);
  });

  test('issue from a cluster directory: the intermediate comes along; token then speaks for the operator', async () => {
    const out = join(mesh.dir, 'bob');
    await isthmusOk(['operator', 'issue', '--name', 'bob', '--ca-dir', clusterDir, '--out', out, '--ttl', '1h']);
    expect(readFileSync(join(out, 'operator-cert.pem'), 'utf8').match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
    expect(opensslVerify('sslclient', out)).toBe(`${join(out, 'leaf.pem')}: OK`);
    const token = (await isthmusOk(['operator', 'token', '--ttl', '5m'], { ISTHMUS_OPERATOR_DIR: out })).stdout.trim();
    expect(verifyOperatorToken(token, { rootsPem: [readFileSync(join(ca, 'root-cert.pem'), 'utf8')], trustDomain: 'ops.test' }).identity).toBe('spiffe://ops.test/operator/bob');
  });

  test('isthmus check says whether this shell has an operator credential, whose, and for how long', async () => {
    const checked = async (env: Record<string, string>) => {
      const res = await isthmus(['check', ...etcdArgs(mesh.etcd), '--output', 'json'], env);
      // east's federation is not running, so check fails and prints its error document after the checks.
      return (JSON.parse(res.stdout.slice(0, res.stdout.indexOf('\n}\n') + 2)) as { checks: { name: string; status: string; detail: string }[] }).checks.find((c) => c.name === 'operator credential');
    };
    expect(await checked({ ISTHMUS_OPERATOR_DIR: join(mesh.dir, 'alice') })).toMatchObject({ status: 'ok', detail: expect.stringMatching(/^spiffe:\/\/ops\.test\/operator\/alice from ISTHMUS_OPERATOR_DIR, [0-9.]+ h left$/) });
    expect(await checked({})).toMatchObject({ status: 'warn', detail: expect.stringMatching(/^none found/) });
  });

  test('refused: lifetimes past the limits, a name that is not a DNS name, and a token without a credential', async () => {
    const tooLong = await isthmus(['operator', 'issue', '--name', 'carol', '--ca-dir', ca, '--out', join(mesh.dir, 'carol'), '--ttl', '8d']);
    expect(tooLong.code).toBe(1);
    expect(tooLong.stderr).toMatch(/--ttl 8d: an operator certificate lives between 1s and 168h/);
    const badName = await isthmus(['operator', 'issue', '--name', 'Carol Smith', '--ca-dir', ca, '--out', join(mesh.dir, 'carol'), '-o', 'json']);
    expect(JSON.parse(badName.stdout).error.code).toBe('ISTHMUS_ERR_TRUST_SPIFFE_INVALID');
    const none = await isthmus(['operator', 'token', '-o', 'json']);
    expect(none.code).toBe(1);
    expect(JSON.parse(none.stdout).error.code).toBe('ISTHMUS_ERR_AUTH_CREDENTIAL_MISSING');
    const longToken = await isthmus(['operator', 'token', '--ttl', '13h'], { ISTHMUS_OPERATOR_DIR: join(mesh.dir, 'alice') });
    expect(longToken.code).toBe(1);
    expect(longToken.stderr).toMatch(/an operator token lives between 1s and 12h/);
  });
});
