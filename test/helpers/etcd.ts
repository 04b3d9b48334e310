import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEtcdProcess, type EtcdProcess } from '../../src/dev/etcd-process.js';

export interface TestEtcd extends EtcdProcess {
  /** Stops it and removes the data dir. */
  destroy(): Promise<void>;
}

/**
 * A real etcd on free loopback ports with a temporary data dir. The caller must `destroy()` it
 * (tests do so in afterAll), which also removes the directory.
 */
export async function startEtcd(options: { host?: string } = {}): Promise<TestEtcd> {
  const dataDir = mkdtempSync(join(tmpdir(), 'isthmus-etcd-'));
  const etcd = await startEtcdProcess({ dataDir, ...(options.host ? { host: options.host } : {}) });
  return {
    ...etcd,
    destroy: async () => {
      await etcd.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
