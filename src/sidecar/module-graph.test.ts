import { describe, expect, test } from 'vitest';
import { loadedModules } from '../bench/loaded-modules.js';

// Packages a sidecar or gateway process never needs at start: the control plane's etcd client
// and its gRPC stack, the dashboard's HTTP framework, pretty logs, and OpenTelemetry's API, SDK and
// exporters (loaded only once an OTLP endpoint is set), and the Kubernetes client (only a federation on
// `platform: kubernetes` loads it). Runs the built dist/ (npm test builds it).
const notForProxies = [
  'etcd3', '@grpc/grpc-js', '@grpc/proto-loader', 'protobufjs', 'fastify', 'pino-pretty', 'ws',
  '@opentelemetry/api', '@opentelemetry/sdk-node', '@opentelemetry/sdk-trace-base', '@opentelemetry/resources',
  '@opentelemetry/exporter-trace-otlp-proto', '@opentelemetry/exporter-trace-otlp-http', '@opentelemetry/otlp-transformer',
  '@kubernetes/client-node',
];

describe('a sidecar or gateway process loads only what it uses (memory)', () => {
  test.each(['sidecar', 'gateway'] as const)('isthmus %s imports no etcd, gRPC, fastify, pretty printer or tracing SDK', async (kind) => {
    const loaded = await loadedModules(kind);
    // The trace saw the real graph: the proxy's own module and the packages it does use.
    expect(loaded.modules.some((m) => m.endsWith(kind === 'sidecar' ? '/dist/sidecar/sidecar.js' : '/dist/gateway/run.js'))).toBe(true);
    expect(loaded.packages).toEqual(expect.arrayContaining(['undici', 'prom-client', 'pino']));
    expect(loaded.packages.filter((p) => notForProxies.includes(p))).toEqual([]);
    // The CLI's other verbs stay unloaded too.
    expect(loaded.modules.filter((m) => /\/dist\/cli\/(join|check|dev|dash|policy|ca)\.js$/.test(m))).toEqual([]);
  });

  test.each(['sidecar', 'gateway'] as const)('isthmus %s loads undici\'s client, pool and agent, not its index with fetch and WebSocket', async (kind) => {
    const undici = (await loadedModules(kind)).modules.filter((m) => m.includes('/node_modules/undici/'));
    expect(undici.some((m) => m.endsWith('/lib/dispatcher/client.js'))).toBe(true);
    // The client's FormData support (lib/web/fetch/body.js) is required lazily, and a bundle
    // carries it unexecuted; the index would also bring WebSocket, EventSource and the caches.
    expect(undici.filter((m) => m.endsWith('/node_modules/undici/index.js') || /\/lib\/(web\/(websocket|eventsource)|cache|mock)\//.test(m))).toEqual([]);
  });

  test('the sidecar loads node-forge\'s ASN.1 codec for its CSR, not the whole of node-forge', async () => {
    const forge = (await loadedModules('sidecar')).modules.filter((m) => m.includes('/node_modules/node-forge/'));
    expect(forge.some((m) => m.endsWith('/lib/asn1.js'))).toBe(true);
    expect(forge.filter((m) => /\/lib\/(index|pki|tls|rsa|jsbn)\.js$/.test(m))).toEqual([]);
  });
});
