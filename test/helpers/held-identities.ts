import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** What a dev-mesh sidecar saved as its identity (`<state>/sidecars/<cluster>/<instance>/identity.json`), the fields tests read. */
export interface HeldIdentity { cert: string; chain: string[]; trustBundle: string[] }

/** Every sidecar's saved identity in a dev mesh's state directory, by `<cluster>/<instance>`. */
export function sidecarIdentities(stateDir: string): Map<string, HeldIdentity> {
  const held = new Map<string, HeldIdentity>();
  const root = join(stateDir, 'sidecars');
  for (const cluster of readdirSync(root)) {
    for (const instance of readdirSync(join(root, cluster))) {
      const file = join(root, cluster, instance, 'identity.json');
      if (!existsSync(file)) continue;
      try {
        held.set(`${cluster}/${instance}`, JSON.parse(readFileSync(file, 'utf8')) as HeldIdentity);
      } catch {
        // being replaced this moment (written atomically, but read between two renames on some file systems)
      }
    }
  }
  return held;
}
