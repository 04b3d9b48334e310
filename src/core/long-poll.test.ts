import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent } from 'undici';
import { describe, expect, it, test } from 'vitest';
import { serviceListChanges } from '../model/service-changes.js';
import { CatalogSnapshotSchema, GatewayRoutesSchema, LocalEndpointsSchema } from '../model/records.js';
import { createLogger } from './log.js';
import { longPoll, snapshotProblem } from './long-poll.js';
import { Type } from './typebox.js';

// What a sidecar or gateway refuses from the federation API, and the reason it logs.
test.each([
  ['catalog', CatalogSnapshotSchema, null, '/: expected object'],
  ['catalog', CatalogSnapshotSchema, [], '/: expected object'],
  ['catalog', CatalogSnapshotSchema, { clusters: [], services: [], invalidKeys: [] }, '/revision: expected required property'],
  ['catalog', CatalogSnapshotSchema, { revision: '7', clusters: [], services: [], invalidKeys: [] }, '/revision: expected integer'],
  ['catalog', CatalogSnapshotSchema, { revision: 7, clusters: {}, services: [], invalidKeys: [] }, '/clusters: expected array'],
  ['catalog', CatalogSnapshotSchema, { revision: 7, clusters: [], services: [{ namespace: 'demo', name: 'x', clusters: [{ cluster: 'e', region: 'us', zones: [{ zone: 'a', healthy: -1, total: 1 }], gateways: [], identities: [], ports: [] }] }], invalidKeys: [] },
    '/services/0/clusters/0/zones/0/healthy: expected integer to be greater or equal to 0'],
  ['catalog', CatalogSnapshotSchema, { revision: 7, clusters: [], services: [], invalidKeys: [] }, undefined],
  ['endpoints', LocalEndpointsSchema, { version: null, cluster: 'east', services: [] }, '/version: expected integer'],
  ['endpoints', LocalEndpointsSchema, { version: 1, cluster: 'east', services: [{ namespace: 'demo', name: 'client' }] }, '/services/0/endpoints: expected required property'],
  ['endpoints', LocalEndpointsSchema, { version: 1, cluster: 'east', services: [{ namespace: 'demo', name: 'client', endpoints: [{ address: 'a:1', zone: 'a', healthy: true, labels: { v: 2 } }] }] }, '/services/0/endpoints/0/labels/v: expected string'],
  ['endpoints', LocalEndpointsSchema, { version: 1, cluster: 'east', services: [{ namespace: 'demo', name: 'client', endpoints: [] }] }, undefined],
  ['routes', GatewayRoutesSchema, { version: 1, cluster: 'east', services: [{ namespace: 'demo', name: 'c', identities: [], endpoints: [{ address: 'a', zone: 'a', healthy: 'yes' }] }] }, '/services/0/endpoints/0/healthy: expected boolean'],
  ['routes', GatewayRoutesSchema, { version: 1, cluster: 'east', services: [{ namespace: 'demo', name: 'c', endpoints: [] }] }, '/services/0/identities: expected required property'],
  // A newer federation may add fields; an older reader takes the snapshot anyway.
  ['routes', GatewayRoutesSchema, { version: 1, cluster: 'east', services: [], addedLater: true }, undefined],
])('%s %j → %s', (_kind, schema, value, problem) => {
  expect(snapshotProblem(schema, value)).toBe(problem);
});

describe('longPoll pacing', () => {
  // A federation whose snapshot changes before every request, as during a burst of exports:
  // each GET is answered at once with the next version.
  async function churningFederation() {
    let version = 0;
    const server = createServer((_req, res) => {
      version += 1;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ version, padding: 'x'.repeat(1000) }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    return { url: `http://127.0.0.1:${port}`, served: () => version, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
  }

  async function poll(paceMs: ((bytes: number) => number) | undefined, forMs: number) {
    const federation = await churningFederation();
    const agent = new Agent();
    const abort = new AbortController();
    const seen: { version: number; at: number }[] = [];
    const started = performance.now();
    const feed = { name: 'test', path: '/v1/test', schema: Type.Object({ version: Type.Integer() }), versionOf: (v: { version: number }) => v.version, ...(paceMs ? { paceMs } : {}) };
    const running = longPoll(feed, {
      federationUrl: federation.url, dispatcher: () => agent, signal: abort.signal, logger: createLogger({ name: 'test', level: 'silent' }), waitSeconds: 1,
      onSnapshot: (value) => { seen.push({ version: value.version, at: performance.now() - started }); },
    });
    await sleep(forMs);
    abort.abort();
    await running;
    await agent.close();
    await federation.close();
    return seen;
  }

  it('asks for a snapshot at most once per pace while the feed churns', async () => {
    const seen = await poll((bytes) => (bytes > 500 ? 300 : 0), 1000);
    // At 0, ~300, ~600, ~900 ms: four, however fast the federation changes.
    expect(seen.length).toBeGreaterThanOrEqual(2);
    expect(seen.length).toBeLessThanOrEqual(4);
    for (let i = 1; i < seen.length; i++) expect(seen[i]!.at - seen[i - 1]!.at).toBeGreaterThanOrEqual(295);
  });

  it('takes every snapshot when the feed sets no pace, or the snapshot is under its size', async () => {
    const unpaced = await poll(undefined, 300);
    const small = await poll((bytes) => (bytes > 1_000_000 ? 300 : 0), 300);
    // A pace of 300 ms would allow one snapshot in these 300 ms (two at the edge); three or
    // more shows none was applied, however slow the machine is to answer.
    expect(unpaced.length).toBeGreaterThanOrEqual(3);
    expect(small.length).toBeGreaterThanOrEqual(3);
  });
});

describe('a federation that does not number the snapshot (one from before it was long-polled)', () => {
  it('is asked again after unversionedRetryMs, not in a loop, and each new content is passed on', async () => {
    const asked: string[] = [];
    const server = createServer((req, res) => {
      asked.push(req.url ?? '');
      res.setHeader('content-type', 'application/json');
      // The content changes at the third request: an older federation's answer, at once and without version.
      res.end(JSON.stringify({ roots: [asked.length >= 3 ? 'second' : 'first'] }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const agent = new Agent();
    const abort = new AbortController();
    const seen: { roots: string[]; version: number | undefined }[] = [];
    const feed = { name: 'test', path: '/v1/test', schema: Type.Object({ version: Type.Optional(Type.Integer()), roots: Type.Array(Type.String()) }), versionOf: (v: { version?: number }) => v.version };
    const running = longPoll(feed, {
      federationUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, dispatcher: () => agent, signal: abort.signal,
      logger: createLogger({ name: 'test', level: 'silent' }), waitSeconds: 30, unversionedRetryMs: 200,
      onSnapshot: (value, version) => { seen.push({ roots: value.roots, version }); },
    });
    await sleep(700);
    abort.abort();
    await running;
    await agent.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    // At 0, ~200, ~400, ~600 ms: a client that asked again at once would have sent hundreds.
    expect(asked.length).toBeGreaterThanOrEqual(3);
    expect(asked.length).toBeLessThanOrEqual(5);
    // With no version to hold, it never asks to wait on one.
    expect(asked.every((url) => url === '/v1/test')).toBe(true);
    expect(seen).toEqual([{ roots: ['first'], version: undefined }, { roots: ['second'], version: undefined }]);
  });
});

describe('a snapshot the federation sends as changes (the catalog)', () => {
  it('asks with the position of its last answer, applies changes to what it holds, and asks whole when they do not fit', async () => {
    const svc = (name: string) => ({ namespace: 'demo', name, clusters: [] });
    const whole = (revision: number, names: string[], epoch: string, generation: number) => ({ revision, clusters: [], services: names.map(svc), invalidKeys: [], epoch, generation });
    const changes = (revision: number, epoch: string, since: number, generation: number, upserts: string[], services: number) => ({
      revision, epoch, since, generation, clusters: [], invalidKeys: [], upserts: upserts.map(svc), removed: [], services,
    });
    // The federation's answers in turn; after them it holds the poll open.
    const answers: unknown[] = [
      whole(1, ['a'], 'e1', 1),
      changes(2, 'e1', 1, 2, ['b'], 2),
      // From a position the reader does not hold: refused, and the reader asks for the catalog whole.
      changes(3, 'e1', 1, 3, ['c'], 2),
      whole(3, ['a', 'b', 'c'], 'e2', 1),
      // A long poll that timed out: no change, nothing passed on.
      changes(3, 'e2', 1, 1, [], 3),
      // A count that does not come out: refused too.
      changes(4, 'e2', 1, 2, ['d'], 9),
      whole(4, ['a', 'b', 'c', 'd'], 'e2', 2),
    ];
    const asked: string[] = [];
    const server = createServer((req, res) => {
      asked.push(req.url ?? '');
      const answer = answers.shift();
      if (answer === undefined) return void setTimeout(() => res.destroy(), 5000);
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(answer));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const agent = new Agent();
    const abort = new AbortController();
    const seen: { names: string[]; version: number | undefined; keys: string[] }[] = [];
    const feed = {
      name: 'catalog', path: '/v1/catalog', schema: CatalogSnapshotSchema, versionOf: (c: { revision: number }) => c.revision,
      changes: serviceListChanges(CatalogSnapshotSchema),
    };
    const running = longPoll(feed, {
      federationUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, dispatcher: () => agent, signal: abort.signal,
      logger: createLogger({ name: 'test', level: 'silent' }), waitSeconds: 30,
      onSnapshot: (value, version) => { seen.push({ names: value.services.map((s) => s.name), version, keys: Object.keys(value).sort() }); },
    });
    await waitUntil(() => answers.length === 0 && asked.length === 8);
    abort.abort();
    await running;
    await agent.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    expect(asked).toEqual([
      '/v1/catalog',
      '/v1/catalog?version=1&wait=30&since=e1.1',
      '/v1/catalog?version=2&wait=30&since=e1.2',
      '/v1/catalog',
      '/v1/catalog?version=3&wait=30&since=e2.1',
      '/v1/catalog?version=3&wait=30&since=e2.1',
      '/v1/catalog',
      '/v1/catalog?version=4&wait=30&since=e2.2',
    ]);
    expect(seen).toEqual([
      { names: ['a'], version: 1, keys: ['clusters', 'invalidKeys', 'revision', 'services'] },
      { names: ['a', 'b'], version: 2, keys: ['clusters', 'invalidKeys', 'revision', 'services'] },
      { names: ['a', 'b', 'c'], version: 3, keys: ['clusters', 'invalidKeys', 'revision', 'services'] },
      { names: ['a', 'b', 'c', 'd'], version: 4, keys: ['clusters', 'invalidKeys', 'revision', 'services'] },
    ]);
  });
});

async function waitUntil(done: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await sleep(20);
  }
}
