import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { startEtcdProcess } from './etcd-process.js';
import { freePort } from './ports.js';

describe('startEtcdProcess', () => {
  test('a port taken between picking it and etcd binding it: etcd starts again on new ports', { timeout: 60_000 }, async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const takenPort = (taken.address() as AddressInfo).port;
    const dir = mkdtempSync(join(tmpdir(), 'isthmus-etcd-retry-'));
    let picks = 0;
    // The first port handed out is one another process holds, as a test running beside this one might.
    const pickPort = async (host: string) => (picks++ === 0 ? takenPort : freePort(host));
    const etcd = await startEtcdProcess({ dataDir: join(dir, 'data'), pickPort });
    try {
      expect(picks).toBe(4);
      expect(etcd.url).not.toContain(`:${takenPort}`);
      const res = await fetch(`${etcd.url}/health`);
      expect(((await res.json()) as { health?: string }).health).toBe('true');
    } finally {
      await etcd.stop();
      taken.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('with ports the caller chose, a taken one is an error that says so', { timeout: 30_000 }, async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const dir = mkdtempSync(join(tmpdir(), 'isthmus-etcd-retry-'));
    try {
      await expect(startEtcdProcess({ dataDir: join(dir, 'data'), clientPort: (taken.address() as AddressInfo).port, peerPort: await freePort('127.0.0.1') }))
        .rejects.toThrow(/address already in use/);
    } finally {
      taken.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
