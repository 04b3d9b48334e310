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

  test.each(['sidecar', 'gateway'] as const)('isthmus %s loads neither undici\'s client, pool and agent (its WebAssembly parser) nor its index with fetch and WebSocket', async (kind) => {
    const loaded = await loadedModules(kind);
    const undici = loaded.modules.filter((m) => m.includes('/node_modules/undici/'));
    // The dispatcher base, its request API and the connector are what h1-connection.ts builds on.
    expect(undici.some((m) => m.endsWith('/lib/dispatcher/dispatcher.js'))).toBe(true);
    expect(undici.some((m) => m.endsWith('/lib/core/connect.js'))).toBe(true);
    expect(loaded.modules.some((m) => m.endsWith('/dist/sidecar/h1-connection.js'))).toBe(true);
    // undici's client would compile its llhttp WebAssembly (about 4 MB) at the first connection.
    expect(undici.filter((m) => /\/lib\/dispatcher\/(client|client-h1|client-h2|pool|agent)\.js$/.test(m) || m.includes('/lib/llhttp/'))).toEqual([]);
    expect(loaded.modules.filter((m) => m.endsWith('/dist/core/undici-client.js'))).toEqual([]);
    // The index would also bring WebSocket, EventSource and the caches.
    expect(undici.filter((m) => m.endsWith('/node_modules/undici/index.js') || /\/lib\/(web\/(websocket|eventsource)|cache|mock)\//.test(m))).toEqual([]);
  });

  test.each(['sidecar', 'gateway'] as const)('isthmus %s loads no node:http2: its HTTP/2 is its own (src/h2/)', async (kind) => {
    const loaded = await loadedModules(kind);
    // The control: Node's own modules are listed, the HTTP/1.1 and TLS ones among them.
    expect(loaded.builtins).toEqual(expect.arrayContaining(['http', 'tls']));
    expect(loaded.builtins.filter((m) => m === 'http2' || m.startsWith('internal/http2/'))).toEqual([]);
  });

  test('the module graph is read as a sidecar starts: a young generation that did not grow while it loaded', async () => {
    // bin/isthmus.js sets --semi-space-growth-factor=1 for a sidecar; without it the import alone
    // doubled the semi-spaces to 8 MiB, and the bench's module-graph reading showed that.
    const loaded = await loadedModules('sidecar', { trace: false });
    expect(loaded.newSpaceBytes).toBeGreaterThan(0);
    expect(loaded.newSpaceBytes).toBeLessThanOrEqual(2 * 1024 * 1024);
  });

  test('the sidecar loads no node-forge: it writes its CSR with src/trust/pkix.ts', async () => {
    const loaded = await loadedModules('sidecar');
    expect(loaded.modules.filter((m) => m.includes('/node_modules/node-forge/'))).toEqual([]);
    expect(loaded.modules.some((m) => m.endsWith('/dist/trust/csr-request.js'))).toBe(true);
    expect(loaded.modules.filter((m) => m.endsWith('/dist/trust/der.js') || m.endsWith('/dist/trust/csr.js'))).toEqual([]);
  });

  test('the gateway, which issues its own certificate, loads node-forge\'s ASN.1 codec, not the whole of node-forge', async () => {
    const forge = (await loadedModules('gateway')).modules.filter((m) => m.includes('/node_modules/node-forge/'));
    expect(forge.some((m) => m.endsWith('/lib/asn1.js'))).toBe(true);
    expect(forge.filter((m) => /\/lib\/(index|pki|tls|rsa|jsbn)\.js$/.test(m))).toEqual([]);
  });
});
