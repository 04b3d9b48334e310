import { afterEach, expect, test } from 'vitest';
import { startGrpcEchoInstance } from './grpc-echo.js';
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
