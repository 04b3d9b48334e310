import { existsSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Type, type Static } from '../core/typebox.js';
import { IsthmusError } from '../core/errors.js';
import { pathError, readUserFile } from '../core/user-paths.js';
import { validate } from '../core/validate.js';
import type { TokenRecord } from '../trust/tokens.js';

/**
 * The `local` platform's dynamic state, beside the cluster config: instances added by
 * `isthmus register`, and bootstrap tokens (hashed only) that let a workload prove its
 * identity to the federation service. Written atomically (temp file + rename) so the
 * federation service, which re-reads it when it changes, never sees half a file.
 */
const RegistrySchema = Type.Object({
  version: Type.Literal(1),
  instances: Type.Array(Type.Object({
    namespace: Type.String(),
    service: Type.String(),
    serviceAccount: Type.String(),
    address: Type.String(),
    zone: Type.String(),
    ports: Type.Optional(Type.Array(Type.Object({ port: Type.Integer(), protocol: Type.String() }))),
    /** `isthmus register --label k=v`: what a ServiceSubset selects instances by (docs/traffic-policy.md). */
    labels: Type.Optional(Type.Record(Type.String(), Type.String())),
    registeredAt: Type.String(),
  }), { default: [] }),
  tokens: Type.Array(Type.Object({
    hash: Type.String(),
    identity: Type.String(),
    expiresAt: Type.String(),
  }), { default: [] }),
});
export type Registry = Static<typeof RegistrySchema>;
export type RegisteredInstance = Registry['instances'][number];

export const registryFileName = 'registry.json';

export function registryPath(clusterDir: string): string {
  return join(clusterDir, registryFileName);
}

export function readRegistry(clusterDir: string): Registry {
  const path = registryPath(clusterDir);
  if (!existsSync(path)) return { version: 1, instances: [], tokens: [] };
  const text = readUserFile(path, 'the registry file');
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new IsthmusError('ISTHMUS_ERR_CONFIG_UNREADABLE', `${path} is not valid JSON; restore it or remove it and register the instances again`, { cause: err });
  }
  const registry = validate(RegistrySchema, raw, path);
  return { version: 1, instances: [...registry.instances], tokens: [...registry.tokens] };
}

/** Read-modify-write; the caller's change is applied to the newest copy on disk. */
export function updateRegistry(clusterDir: string, change: (registry: Registry) => Registry): Registry {
  const next = change(readRegistry(clusterDir));
  const path = registryPath(clusterDir);
  const temp = `${path}.${process.pid}.tmp`;
  try {
    writeFileSync(temp, `${JSON.stringify(next, null, 2)}\n`, { mode: 0o600 });
    renameSync(temp, path);
  } catch (err) {
    rmSync(temp, { force: true });
    throw pathError(err, path, 'write-file', 'the registry file (beside cluster.yaml)');
  }
  return next;
}

export function liveTokens(tokens: TokenRecord[], now: Date): TokenRecord[] {
  return tokens.filter((t) => Date.parse(t.expiresAt) > now.getTime());
}
