import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createRootCa, issueOperatorCertificate } from './ca.js';
import { verifyOperatorToken } from './operator.js';
import { defaultOperatorDir, findOperatorCredential, operatorHeaders, writeOperatorCredential } from './operator-files.js';
import { failure } from '../../test/helpers/failure.js';

let dir: string;
let root: ReturnType<typeof createRootCa>;
const identityIn = (credential: ReturnType<typeof findOperatorCredential>) =>
  verifyOperatorToken(operatorHeaders(credential).authorization!.slice('Bearer '.length), { rootsPem: [root.certPem] }).name;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'isthmus-operator-files-'));
  root = createRootCa({ trustDomain: 'example.org' });
  for (const name of ['flag', 'env', 'home']) {
    const target = name === 'home' ? join(dir, 'config', 'isthmus', 'operator') : join(dir, name);
    writeOperatorCredential(target, issueOperatorCertificate({ name, issuer: root, ttlSeconds: 600 }));
  }
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('finding the operator credential', () => {
  test('flags first, then the environment, then the per-user directory; none at all is undefined', () => {
    const env = { ISTHMUS_OPERATOR_DIR: join(dir, 'env'), XDG_CONFIG_HOME: join(dir, 'config') };
    expect(identityIn(findOperatorCredential({ operatorDir: join(dir, 'flag') }, env))).toBe('flag');
    expect(identityIn(findOperatorCredential({ operatorCert: join(dir, 'flag', 'operator-cert.pem'), operatorKey: join(dir, 'flag', 'operator-key.pem') }, env))).toBe('flag');
    expect(identityIn(findOperatorCredential({}, env))).toBe('env');
    expect(identityIn(findOperatorCredential({}, { ISTHMUS_OPERATOR_CERT: join(dir, 'env', 'operator-cert.pem'), ISTHMUS_OPERATOR_KEY: join(dir, 'env', 'operator-key.pem') }))).toBe('env');
    expect(identityIn(findOperatorCredential({}, { XDG_CONFIG_HOME: join(dir, 'config') }))).toBe('home');
    expect(defaultOperatorDir({ XDG_CONFIG_HOME: join(dir, 'config') })).toBe(join(dir, 'config', 'isthmus', 'operator'));
    expect(findOperatorCredential({}, { XDG_CONFIG_HOME: join(dir, 'nowhere') })).toBeUndefined();
    expect(operatorHeaders(undefined)).toEqual({});
  });

  test('the CLI config file names one, relative to itself, after the environment and before the default directory', () => {
    const home = join(dir, 'with-config');
    mkdirSync(join(home, 'isthmus'), { recursive: true });
    writeFileSync(join(home, 'isthmus', 'config.yaml'), 'operator:\n  dir: ../../flag\n');
    expect(identityIn(findOperatorCredential({}, { XDG_CONFIG_HOME: home }))).toBe('flag');
    expect(identityIn(findOperatorCredential({}, { XDG_CONFIG_HOME: home, ISTHMUS_OPERATOR_DIR: join(dir, 'env') }))).toBe('env');
    writeFileSync(join(home, 'isthmus', 'config.yaml'), `operator:\n  cert: ${join(dir, 'env', 'operator-cert.pem')}\n  key: ${join(dir, 'env', 'operator-key.pem')}\n`);
    expect(identityIn(findOperatorCredential({}, { XDG_CONFIG_HOME: home }))).toBe('env');
    writeFileSync(join(home, 'isthmus', 'config.yaml'), 'operator:\n  certificate: x\n');
    expect(failure(() => findOperatorCredential({}, { XDG_CONFIG_HOME: home })).message).toMatch(/\/operator\/certificate: unknown field/);
  });

  test('a named credential that is missing, or half of a pair, is an error, not silence', () => {
    expect(failure(() => findOperatorCredential({ operatorDir: join(dir, 'missing') }, {})).code).toBe('ISTHMUS_ERR_AUTH_CREDENTIAL_MISSING');
    expect(failure(() => findOperatorCredential({ operatorCert: join(dir, 'flag', 'operator-cert.pem') }, {})).code).toBe('ISTHMUS_ERR_CONFIG_INVALID');
    expect(failure(() => findOperatorCredential({}, { ISTHMUS_OPERATOR_KEY: join(dir, 'env', 'operator-key.pem') })).code).toBe('ISTHMUS_ERR_CONFIG_INVALID');
  });

  test('the key is written readable by its owner only', () => {
    expect(statSync(join(dir, 'flag', 'operator-key.pem')).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'flag')).mode & 0o777).toBe(0o700);
  });
});
