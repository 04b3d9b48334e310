import { afterEach, expect, test } from 'vitest';
import { startGrpcEchoInstance } from './grpc-echo.js';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { freePort } from './ports.js';
import { startRedisInstance } from './redis-sample.js';
import { TrafficGenerator } from './traffic-generator.js';
import type { SampleInstance } from './sample-service.js';

let generator: TrafficGenerator | undefined;
let echo: SampleInstance | undefined;
afterEach(async () => {
  generator?.stop();
  await echo?.close();
  generator = undefined;
  echo = undefined;
});

/** One command through Debian's redis-cli; its output. */
const redisCommand = async (address: string, command: string) => {
  const split = address.lastIndexOf(':');
  return (await promisify(execFile)('redis-cli', ['-h', address.slice(0, split), '-p', address.slice(split + 1), ...command.split(' ')])).stdout;
};

const until = async (what: string, ok: () => boolean, ms = 5_000) => {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

test('sample gRPC calls: answered ones count as sent, and once the server is gone they count as failed (UNAVAILABLE)', async () => {
  echo = await startGrpcEchoInstance({ service: 'grpc-echo', cluster: 'west', zone: 'west-a', instance: 'grpc-echo-1', host: '127.0.0.1', port: 0 });
  // Straight to the server here; `isthmus dev up` points it at a client sidecar's fixed listener.
  generator = new TrafficGenerator([{ proxy: '127.0.0.1:1', urls: [], grpc: { listener: echo.address, every: 1 } }], 50);
  generator.start();
  await until('20 calls answered', () => generator!.sent >= 20);
  expect(generator.failed).toBe(0);
  await echo.close();
  echo = undefined;
  const failedBefore = generator.failed;
  await until('calls failing after the server closed', () => generator!.failed >= failedBefore + 5);
});

test('with fresh every 3, one GET in three arrives on a connection of its own that closes after it; the rest share kept connections', async () => {
  // A stand-in for a sidecar's proxy port: it answers every request and notes the connection it came on.
  const { createServer } = await import('node:http');
  const requestsBySocket = new Map<object, { requests: number; close: string[] }>();
  const proxy = createServer((req, res) => {
    const seen = requestsBySocket.get(req.socket) ?? { requests: 0, close: [] };
    seen.requests += 1;
    seen.close.push(String(req.headers.connection));
    requestsBySocket.set(req.socket, seen);
    res.end('ok');
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  try {
    const port = (proxy.address() as { port: number }).port;
    generator = new TrafficGenerator([{ proxy: `127.0.0.1:${port}`, urls: ['http://hello.demo.mesh/'], fresh: { every: 3 } }], 50);
    generator.start();
    await until('30 GETs answered', () => [...requestsBySocket.values()].reduce((n, s) => n + s.requests, 0) >= 30);
    generator.stop();
    const connections = [...requestsBySocket.values()];
    const fresh = connections.filter((c) => c.close[0] === 'close');
    // Each fresh GET had its connection to itself.
    expect(fresh.every((c) => c.requests === 1)).toBe(true);
    const total = connections.reduce((n, c) => n + c.requests, 0);
    expect(fresh.length).toBeGreaterThanOrEqual(Math.floor(total / 3) - 1);
    expect(fresh.length).toBeLessThanOrEqual(Math.ceil(total / 3) + 1);
    // The others came on kept connections, several requests each.
    expect(connections.filter((c) => c.close[0] !== 'close').some((c) => c.requests > 1)).toBe(true);
    expect(generator.failed).toBe(0);
  } finally {
    proxy.closeAllConnections();
    await new Promise((resolve) => proxy.close(resolve));
  }
});

test('redis PINGs: three in four on one kept connection, the fourth on a connection of its own; failures counted once the server is gone', async () => {
  const redis = await startRedisInstance({ service: 'redis', cluster: 'west', zone: 'west-a', instance: 'redis-gen', host: '127.0.0.1', port: await freePort() });
  echo = redis; // closed after the test
  const connectionsSoFar = async () => Number(/total_connections_received:(\d+)/.exec(await redisCommand(redis.address, 'INFO stats'))?.[1]);
  const before = await connectionsSoFar();
  // Straight to the server here; `isthmus dev up` points it at a client sidecar's fixed TCP listener.
  generator = new TrafficGenerator([{ proxy: '127.0.0.1:1', urls: [], redis: { listener: redis.address, every: 1 } }], 50);
  generator.start();
  await until('40 PINGs answered', () => generator!.sent >= 40);
  generator.stop();
  const sent = generator.sent;
  expect(generator.failed).toBe(0);
  // One connection for the kept PINGs, one per fresh PING, and this test's own INFO.
  const opened = (await connectionsSoFar()) - before - 1;
  expect(opened).toBeGreaterThanOrEqual(1 + Math.floor(sent / 4) - 1);
  expect(opened).toBeLessThanOrEqual(1 + Math.ceil(sent / 4) + 1);
  await redis.close();
  echo = undefined;
  generator = new TrafficGenerator([{ proxy: '127.0.0.1:1', urls: [], redis: { listener: redis.address, every: 1 } }], 50);
  generator.start();
  await until('PINGs failing with no server', () => generator!.failed >= 5);
});
