import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { request } from '../core/undici.js';
import { H1Agent } from './h1-agent.js';

/** undici's request API over H1Agent: what the sidecar's and gateway's federation calls use. */

const servers: Server[] = [];
const origins: string[] = [];

beforeAll(async () => {
  for (const name of ['one', 'two']) {
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => { body += c.toString(); });
      req.on('end', () => {
        if (req.url === '/hang') return; // never answers
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ server: name, method: req.method, url: req.url, body, port: req.socket.remotePort }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    servers.push(server);
    origins.push(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  }
});

afterAll(async () => {
  for (const s of servers) {
    s.closeAllConnections();
    await new Promise((resolve) => s.close(resolve));
  }
});

describe('H1Agent', () => {
  test('each origin gets its own pool; a POST body and the JSON answer go through request()', async () => {
    const agent = new H1Agent({ connect: { timeout: 2_000 } });
    try {
      const a = await request(`${origins[0]}/v1/catalog?wait=1`, { dispatcher: agent });
      expect(await a.body.json()).toMatchObject({ server: 'one', method: 'GET', url: '/v1/catalog?wait=1' });
      const b = await request(`${origins[1]}/v1/certificates`, { dispatcher: agent, method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"csr":"x"}' });
      expect(b.statusCode).toBe(200);
      expect(await b.body.json()).toMatchObject({ server: 'two', method: 'POST', body: '{"csr":"x"}' });
      // Kept alive: the next request to the first origin comes from the same client port.
      const first = await (await request(`${origins[0]}/`, { dispatcher: agent })).body.json() as { port: number };
      const again = await (await request(`${origins[0]}/`, { dispatcher: agent })).body.json() as { port: number };
      expect(again.port).toBe(first.port);
    } finally {
      await agent.close();
    }
  });

  test('a connection idle for a traffic report\'s interval (5 s) is kept for the next call, as the federation API (72 s keep-alive) allows', async () => {
    const server = createServer((req, res) => res.end(String(req.socket.remotePort)));
    server.keepAliveTimeout = 72_000;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const agent = new H1Agent({ connect: { timeout: 2_000 } });
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/reports`;
      const first = await (await request(url, { dispatcher: agent, method: 'POST', body: '{}' })).body.text();
      await new Promise((resolve) => setTimeout(resolve, 5_200));
      const second = await (await request(url, { dispatcher: agent, method: 'POST', body: '{}' })).body.text();
      expect(second).toBe(first);
    } finally {
      await agent.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  }, 15_000);

  test('the agent\'s headersTimeout applies to a request that sets none; an abort signal ends a request', async () => {
    const agent = new H1Agent({ connect: { timeout: 2_000 }, headersTimeout: 200 });
    try {
      await expect(request(`${origins[0]}/hang`, { dispatcher: agent })).rejects.toMatchObject({ code: 'UND_ERR_HEADERS_TIMEOUT' });
      const abort = new AbortController();
      setTimeout(() => abort.abort(new Error('stopping')), 50);
      await expect(request(`${origins[1]}/hang`, { dispatcher: agent, signal: abort.signal, headersTimeout: 10_000 })).rejects.toThrow(/stopping|abort/i);
    } finally {
      await agent.destroy();
    }
  });

  test('after close(), a request is refused', async () => {
    const agent = new H1Agent({ connect: { timeout: 2_000 } });
    await (await request(`${origins[0]}/`, { dispatcher: agent })).body.dump();
    await agent.close();
    await expect(request(`${origins[0]}/`, { dispatcher: agent })).rejects.toMatchObject({ code: 'UND_ERR_CLOSED' });
  });
});
