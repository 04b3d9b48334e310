import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CertAndKey } from '../../src/trust/ca.js';

/** Runs Debian's openssl; a failure throws with its output. */
export function openssl(args: string[], input?: string): string {
  try {
    return execFileSync('/usr/bin/openssl', args, { input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    throw new Error(`openssl ${args.join(' ')} failed:\n${e.stdout ?? ''}${e.stderr ?? ''}`);
  }
}

/**
 * A certificate made by openssl, outside our CA's rules: how an attacker or a careless operator
 * would make one. `extensions` is an openssl extension section body.
 */
export function opensslIssue(issuer: CertAndKey, subject: string, extensions: string): CertAndKey {
  const dir = mkdtempSync(join(tmpdir(), 'isthmus-openssl-issue-'));
  try {
    const keyPem = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    const path = (name: string) => join(dir, name);
    writeFileSync(path('key.pem'), keyPem, { mode: 0o600 });
    writeFileSync(path('ca.pem'), issuer.certPem);
    writeFileSync(path('ca-key.pem'), issuer.keyPem, { mode: 0o600 });
    writeFileSync(path('ext.cnf'), `[ext]\n${extensions}\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n`);
    const csr = openssl(['req', '-new', '-key', path('key.pem'), '-subj', subject]);
    const certPem = openssl(
      ['x509', '-req', '-CA', path('ca.pem'), '-CAkey', path('ca-key.pem'), '-set_serial', '0x1f2e3d', '-days', '2', '-extfile', path('ext.cnf'), '-extensions', 'ext'],
      csr,
    );
    return { certPem, keyPem };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * A self-signed CA made by openssl, outside our CA's rules (as an attacker or a careless operator
 * would make one): `san` is its subjectAltName value (`URI:...,DNS:...`), or undefined for none.
 */
export function opensslRoot(subject: string, san: string | undefined): CertAndKey {
  const dir = mkdtempSync(join(tmpdir(), 'isthmus-openssl-root-'));
  try {
    const keyPem = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    const keyPath = join(dir, 'root-key.pem');
    writeFileSync(keyPath, keyPem, { mode: 0o600 });
    const certPem = openssl(['req', '-x509', '-new', '-key', keyPath, '-subj', subject, '-days', '2',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', ...(san ? ['-addext', `subjectAltName=${san}`] : [])]);
    return { certPem, keyPem };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
