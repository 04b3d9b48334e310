import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as undici from 'undici';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { buildConnector, Dispatcher, request, wrapHandler } from './undici.js';
import { Agent, Client, Pool } from './undici-client.js';

/**
 * src/core/undici.ts reaches into undici's files to leave its index (fetch, WebSocket) unloaded.
 * If an upgrade moves a file, these fail here, not in a sidecar.
 */
let server: Server;
let origin: string;

beforeAll(async () => {
  server = createServer((req, res) => res.end(JSON.stringify({ method: req.method, url: req.url })));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

describe('undici without its index', () => {
  test('each export is the very class or function undici itself exports', () => {
    expect(Client).toBe(undici.Client);
    expect(Pool).toBe(undici.Pool);
    expect(Agent).toBe(undici.Agent);
    expect(Dispatcher).toBe(undici.Dispatcher);
    expect(buildConnector).toBe(undici.buildConnector);
  });

  test('wrapHandler puts an older-interface handler behind the newer one and leaves a newer one as it is', () => {
    const seen: string[] = [];
    const older = { onHeaders: (status: number) => { seen.push(`head ${status}`); return true; }, onData: () => true, onComplete: () => { seen.push('end'); }, onError: () => undefined };
    const wrapped = wrapHandler.wrap(older as unknown as Parameters<typeof wrapHandler.wrap>[0]);
    expect(wrapped).not.toBe(older);
    const controller = { pause: () => undefined, resume: () => undefined, abort: () => undefined, aborted: false, paused: false, reason: null };
    wrapped.onResponseStart?.(controller as never, 204, {}, 'No Content');
    wrapped.onResponseEnd?.(controller as never, {});
    expect(seen).toEqual(['head 204', 'end']);
    const newer = { onResponseStart: () => undefined, onRequestStart: () => undefined };
    expect(wrapHandler.wrap(newer as never)).toBe(newer);
  });

  test('request(url, { dispatcher }) sends the path and query of the URL, GET by default', async () => {
    const agent = new Agent();
    try {
      const res = await request(`${origin}/v1/catalog?version=7`, { dispatcher: agent });
      expect(res.statusCode).toBe(200);
      expect(await res.body.json()).toEqual({ method: 'GET', url: '/v1/catalog?version=7' });
      const posted = await request(`${origin}/v1/certificates`, { dispatcher: agent, method: 'POST', body: '{}' });
      expect(await posted.body.json()).toEqual({ method: 'POST', url: '/v1/certificates' });
    } finally {
      await agent.close();
    }
  });

  test('a Client has the request API that undici\'s index would have added', async () => {
    const client = new Client(origin);
    try {
      const res = await client.request({ method: 'GET', path: '/x' });
      expect(await res.body.json()).toEqual({ method: 'GET', url: '/x' });
    } finally {
      await client.close();
    }
  });
});
