import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { createRootCa, issueCertificate } from '../trust/ca.js';
import { isIsthmusError } from './errors.js';
import { createListenerServer, loadListenerTls } from './tls-files.js';

/** A listener's certificate and key files, as `isthmus dash --tls-cert/--tls-key` and the admin ports' `tls` read them. */
const dir = mkdtempSync(join(tmpdir(), 'isthmus-tls-files-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const root = createRootCa({ trustDomain: 'example.org' });
const leaf = issueCertificate({ identity: 'spiffe://example.org/ns/demo/sa/web', issuer: root });
const other = issueCertificate({ identity: 'spiffe://example.org/ns/demo/sa/other', issuer: root });
const file = (name: string, text: string) => {
  writeFileSync(join(dir, name), text);
  return join(dir, name);
};
file('cert.pem', leaf.certPem + root.certPem);
file('key.pem', leaf.keyPem);
file('other-key.pem', other.keyPem);
file('empty.pem', '');
file('garbage-key.pem', '-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n');

function failure(files: { cert: string; key: string }, now?: Date): { code: string; message: string; file: unknown } {
  try {
    loadListenerTls(files, 'admin.tls in sidecar.yaml', { baseDir: dir, ...(now ? { now } : {}) });
  } catch (err) {
    if (isIsthmusError(err)) return { code: err.code, message: err.message, file: (err.details as { file?: string } | undefined)?.file };
    throw err;
  }
  throw new Error('no error');
}

describe('loadListenerTls', () => {
  test('reads a certificate and its key, relative to the config file\'s directory', () => {
    const tls = loadListenerTls({ cert: 'cert.pem', key: 'key.pem' }, 'admin.tls', { baseDir: dir });
    expect(tls.cert.toString()).toContain('BEGIN CERTIFICATE');
    expect(tls.key.toString()).toContain('PRIVATE KEY');
  });

  test.each([
    ['a missing certificate', { cert: 'missing.pem', key: 'key.pem' }, 'missing.pem', /certificate .*missing\.pem \(admin\.tls in sidecar\.yaml\) cannot be read/],
    ['a certificate file without a certificate', { cert: 'empty.pem', key: 'key.pem' }, 'empty.pem', /empty\.pem .* holds no PEM certificate/],
    ['a key that is not a key', { cert: 'cert.pem', key: 'garbage-key.pem' }, 'garbage-key.pem', /garbage-key\.pem .* is not a PEM private key/],
    ['the key of another certificate', { cert: 'cert.pem', key: 'other-key.pem' }, 'other-key.pem', /key .*other-key\.pem .* does not belong to the certificate .*cert\.pem/],
  ])('%s: ISTHMUS_ERR_LISTENER_TLS_FILE_INVALID naming the file and where it was given', (_what, files, named, message) => {
    const error = failure(files);
    expect(error).toMatchObject({ code: 'ISTHMUS_ERR_LISTENER_TLS_FILE_INVALID', file: join(dir, named) });
    expect(error.message).toMatch(message);
  });

  test('an expired certificate is refused, naming the file and when it expired', () => {
    const error = failure({ cert: 'cert.pem', key: 'key.pem' }, new Date(Date.now() + 400 * 86_400_000));
    expect(error.code).toBe('ISTHMUS_ERR_LISTENER_TLS_FILE_INVALID');
    expect(error.message).toMatch(/cert\.pem \(admin\.tls in sidecar\.yaml\) expired at /);
  });
});

describe('createListenerServer', () => {
  test('answers with an HTTP Date field of its own making, once per response, in IMF-fixdate', async () => {
    const server = createListenerServer(undefined, (_req, res) => res.end('ok'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as { port: number };
      const before = Math.floor(Date.now() / 1000) * 1000;
      const res = await fetch(`http://127.0.0.1:${port}/`);
      expect(await res.text()).toBe('ok');
      const date = res.headers.get('date') ?? '';
      expect(date).toMatch(/^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT$/);
      expect(Date.parse(date)).toBeGreaterThanOrEqual(before);
      expect(Date.parse(date)).toBeLessThanOrEqual(Date.now());
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
