import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, test } from 'vitest';
import { pollReady } from './mesh-process.js';

let server: Server | undefined;

afterEach(async () => {
  server?.closeAllConnections();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
});

/** A /readyz that answers `status` and `body`. */
async function readyz(status: number, body: string): Promise<string> {
  server = createServer((_req, res) => res.writeHead(status, { 'content-type': 'application/json' }).end(body));
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/readyz`;
}

describe('pollReady: waiting for a dev mesh process, and what it said if it never got ready', () => {
  test('a 200 ends the wait', async () => {
    expect(await pollReady(await readyz(200, '{"ready":true}'), 2000, () => false)).toBeUndefined();
  });

  test('a process that stays unready: its last answer, status and body, for the error', async () => {
    const started = Date.now();
    expect(await pollReady(await readyz(503, '{"ready":false,"identity":null}'), 400, () => false)).toBe('503 {"ready":false,"identity":null}');
    expect(Date.now() - started).toBeGreaterThanOrEqual(400);
  });

  test('nothing listening: says there was no answer, and why', async () => {
    const url = await readyz(200, '');
    await new Promise<void>((resolve) => server!.close(() => resolve()));
    server = undefined;
    expect(await pollReady(url, 300, () => false)).toMatch(/^no answer \(.*ECONNREFUSED/);
  });

  test('stops at once when told (the process exited)', async () => {
    const started = Date.now();
    expect(await pollReady(await readyz(503, '{}'), 10_000, () => true)).toBe('none');
    expect(Date.now() - started).toBeLessThan(5000);
  });
});
