/**
 * Where an operator credential lives on disk (docs/trust.md, "Operators"): a directory holding
 * `operator-cert.pem` (the certificate, then its issuer chain) and `operator-key.pem`, both 0600,
 * as `isthmus operator issue` writes them. The CLI finds it, first match wins:
 *   1. --operator-cert/--operator-key, or --operator-dir;
 *   2. ISTHMUS_OPERATOR_CERT/ISTHMUS_OPERATOR_KEY, or ISTHMUS_OPERATOR_DIR;
 *   3. the CLI's config file, $XDG_CONFIG_HOME/isthmus/config.yaml (~/.config/isthmus/config.yaml):
 *      `operator: {dir: <dir>}` or `operator: {cert: <file>, key: <file>}`, relative to the file;
 *   4. the per-user default directory, $XDG_CONFIG_HOME/isthmus/operator (~/.config/isthmus/operator).
 */
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { IsthmusError } from '../core/errors.js';
import { Type } from '../core/typebox.js';
import { ensureDirectory, readUserFile, writeTextAtomic } from '../core/user-paths.js';
import { validate } from '../core/validate.js';
import { mintOperatorToken } from './operator.js';
import { parseCertificates } from './verify.js';

export const operatorCertFile = 'operator-cert.pem';
export const operatorKeyFile = 'operator-key.pem';

export interface OperatorCredential {
  /** The leaf, then its issuer chain. */
  chainPem: string[];
  keyPem: string;
  /** Where it was found, for messages. */
  source: string;
}

export interface OperatorFlags {
  operatorCert?: string | undefined;
  operatorKey?: string | undefined;
  operatorDir?: string | undefined;
}

const configHome = (env: NodeJS.ProcessEnv) => join(env.XDG_CONFIG_HOME || join(homedir(), '.config'), 'isthmus');

/** $XDG_CONFIG_HOME/isthmus/operator, else ~/.config/isthmus/operator. */
export function defaultOperatorDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(configHome(env), 'operator');
}

/** The CLI's own config file; today it says only where the operator credential is. */
export const CliConfigSchema = Type.Object({
  operator: Type.Optional(Type.Object({
    dir: Type.Optional(Type.String({ description: 'directory with operator-cert.pem and operator-key.pem' })),
    cert: Type.Optional(Type.String({ description: 'operator certificate (with its chain), with key' })),
    key: Type.Optional(Type.String({ description: 'its private key' })),
  }, { additionalProperties: false })),
}, { additionalProperties: false });

function fromConfigFile(env: NodeJS.ProcessEnv): OperatorCredential | undefined {
  const path = join(configHome(env), 'config.yaml');
  if (!existsSync(path)) return undefined;
  let raw: unknown;
  try {
    raw = parseYaml(readUserFile(path, 'the CLI config file'));
  } catch (cause) {
    if (cause instanceof IsthmusError) throw cause;
    throw new IsthmusError('ISTHMUS_ERR_CONFIG_UNREADABLE', `cannot read ${path}: ${(cause as Error).message.split('\n')[0]}`, { cause });
  }
  const { operator } = validate(CliConfigSchema, raw ?? {}, path);
  const at = (file: string) => resolve(dirname(path), file);
  if (operator?.cert || operator?.key) {
    if (!operator.cert || !operator.key) throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `${path}: give operator.cert and operator.key together (or operator.dir)`);
    return readFrom(at(operator.cert), at(operator.key), path);
  }
  if (operator?.dir) return readFrom(join(at(operator.dir), operatorCertFile), join(at(operator.dir), operatorKeyFile), path);
  return undefined;
}

export function writeOperatorCredential(dir: string, credential: { certPem: string; chainPem: string[]; keyPem: string }): { cert: string; key: string } {
  ensureDirectory(dir, '--out', 0o700);
  const cert = join(dir, operatorCertFile);
  const key = join(dir, operatorKeyFile);
  // Key first and 0600 from its first byte; a re-issue replaces both (the old credential simply expires).
  writeTextAtomic(key, credential.keyPem);
  writeTextAtomic(cert, [credential.certPem, ...credential.chainPem].map((pem) => pem.trim()).join('\n') + '\n');
  return { cert, key };
}

function readFrom(certPath: string, keyPath: string, source: string): OperatorCredential {
  const read = (path: string, what: string) => {
    try {
      return readFileSync(path, 'utf8');
    } catch (cause) {
      throw new IsthmusError('ISTHMUS_ERR_AUTH_CREDENTIAL_MISSING', `The operator ${what} ${path} (from ${source}) cannot be read (${(cause as NodeJS.ErrnoException).code ?? (cause as Error).message}). Issue one with \`isthmus operator issue --name <you> --ca-dir <CA dir>\`.`, { cause });
    }
  };
  const chainPem = parseCertificates(read(certPath, 'certificate')).map((cert) => cert.toString());
  return { chainPem, keyPem: read(keyPath, 'key'), source };
}

/**
 * The operator credential the flags, the environment, the config file or the default directory name; undefined when
 * none is configured and the default directory holds none (callers then send no credential, and
 * the server's 401 says what to do).
 */
export function findOperatorCredential(flags: OperatorFlags = {}, env: NodeJS.ProcessEnv = process.env): OperatorCredential | undefined {
  if (flags.operatorCert || flags.operatorKey) {
    if (!flags.operatorCert || !flags.operatorKey) throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', 'pass --operator-cert and --operator-key together (or --operator-dir)');
    return readFrom(flags.operatorCert, flags.operatorKey, '--operator-cert/--operator-key');
  }
  if (flags.operatorDir) return readFrom(join(flags.operatorDir, operatorCertFile), join(flags.operatorDir, operatorKeyFile), '--operator-dir');
  if (env.ISTHMUS_OPERATOR_CERT || env.ISTHMUS_OPERATOR_KEY) {
    if (!env.ISTHMUS_OPERATOR_CERT || !env.ISTHMUS_OPERATOR_KEY) throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', 'set ISTHMUS_OPERATOR_CERT and ISTHMUS_OPERATOR_KEY together (or ISTHMUS_OPERATOR_DIR)');
    return readFrom(env.ISTHMUS_OPERATOR_CERT, env.ISTHMUS_OPERATOR_KEY, 'ISTHMUS_OPERATOR_CERT/ISTHMUS_OPERATOR_KEY');
  }
  if (env.ISTHMUS_OPERATOR_DIR) return readFrom(join(env.ISTHMUS_OPERATOR_DIR, operatorCertFile), join(env.ISTHMUS_OPERATOR_DIR, operatorKeyFile), 'ISTHMUS_OPERATOR_DIR');
  const configured = fromConfigFile(env);
  if (configured) return configured;
  const fallback = defaultOperatorDir(env);
  if (!existsSync(join(fallback, operatorCertFile))) return undefined;
  return readFrom(join(fallback, operatorCertFile), join(fallback, operatorKeyFile), fallback);
}

/**
 * Headers that carry a fresh, short token of the credential (two minutes: one command's worth),
 * or none without a credential.
 */
export function operatorHeaders(credential: OperatorCredential | undefined, ttlSeconds = 120): Record<string, string> {
  if (!credential) return {};
  const [certPem, ...chainPem] = credential.chainPem as [string, ...string[]];
  return { authorization: `Bearer ${mintOperatorToken({ certPem, chainPem, keyPem: credential.keyPem, ttlSeconds }).token}` };
}
