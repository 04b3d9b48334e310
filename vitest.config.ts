import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    // Integration tests start real etcd servers and processes; two cores are shared.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    fileParallelism: true,
    maxWorkers: 2,
    // Each sidecar warms its request path up with 1000 requests before it serves (src/sidecar/warm-up.ts);
    // the suite starts hundreds of sidecars, so each of them (and every `isthmus` process a test
    // starts, which inherits this) sends 20. warm-up.test.ts covers the warm-up itself.
    env: { ISTHMUS_SIDECAR_WARM_UP_REQUESTS: '20' },
  },
});
