import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startDevMesh, type DevMesh, type MeshFile } from '../../src/dev/dev-mesh.js';
import { flushTracing, stopTracing } from '../../src/telemetry/tracing.js';
import { waitFor } from '../helpers/cli.js';
import { viaProxy } from '../helpers/proxy.js';

/** One span as OTLP/JSON encodes it (ids in hex, kind a number). */
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes?: { key: string; value: Record<string, unknown> }[];
  /** The attributes of the resource it was sent with. */
  resource?: { key: string; value: Record<string, unknown> }[];
}
const kind = { internal: 1, server: 2, client: 3 } as const;

let mesh: DevMesh | undefined;
let stateDir: string;
let receiver: Server;
const spans: OtlpSpan[] = [];
const appTraceId = '0af7651916cd43dd8448eb211c80319c';
const appParent = 'b7ad6b7169203331';
let answer: { status: number; body: any };

// A two-cluster dev mesh on 127.0.51.1 / 127.0.52.1 (hostBase 51: no other test uses these).
beforeAll(async () => {
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method === 'POST' && req.url === '/v1/traces') {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { resourceSpans?: { resource?: { attributes?: OtlpSpan['attributes'] }; scopeSpans?: { spans?: OtlpSpan[] }[] }[] };
        for (const rs of body.resourceSpans ?? []) for (const ss of rs.scopeSpans ?? []) spans.push(...(ss.spans ?? []).map((span) => ({ ...span, resource: rs.resource?.attributes ?? [] })));
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{}');
      } else {
        res.writeHead(404);
        res.end();
      }
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', () => resolve()));
  // Read when the first sidecar or gateway starts: set before the mesh.
  process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/v1/traces`;
  process.env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL = 'http/json';
  process.env.OTEL_SERVICE_NAME = 'isthmus-tracing-test';
  stateDir = mkdtempSync(join(tmpdir(), 'isthmus-tracing-'));
  mesh = await startDevMesh({ clusters: ['east', 'west'], stateDir, trustDomain: 'dev.test', hostBase: 51, progress: () => undefined });
  const file = JSON.parse(readFileSync(join(stateDir, 'mesh.json'), 'utf8')) as MeshFile;
  const proxy = file.clusters.east!.client.proxy;
  await waitFor(async () => (await viaProxy(proxy, 'http://ledger.demo.mesh/')).status === 200, 15_000, 'ledger reachable from east');
  answer = await viaProxy(proxy, 'http://ledger.demo.mesh/traced', 5000, { traceparent: `00-${appTraceId}-${appParent}-01`, tracestate: 'app=1' });
}, 120_000);

afterAll(async () => {
  await mesh?.stop();
  await stopTracing();
  await new Promise<void>((resolve) => receiver?.close(() => resolve()));
  for (const name of ['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL', 'OTEL_SERVICE_NAME']) delete process.env[name];
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

const attr = (span: OtlpSpan, key: string): unknown => {
  const value = span.attributes?.find((a) => a.key === key)?.value;
  if (!value) return undefined;
  const v = value.stringValue ?? value.intValue ?? value.boolValue ?? value.doubleValue;
  return typeof v === 'string' && value.intValue !== undefined ? Number(v) : v;
};

async function collected(what: string, match: (s: OtlpSpan) => boolean): Promise<OtlpSpan> {
  const { value } = await waitFor(async () => {
    await flushTracing();
    return spans.find(match);
  }, 10_000, what);
  return value;
}

describe('one cross-cluster request is one trace', () => {
  test('the app in west received a traceparent of the app\'s trace, and tracestate went through', async () => {
    expect(answer.status).toBe(200);
    expect(answer.body.cluster).toBe('west');
    const received = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(answer.body.traceparent as string);
    expect(received?.[1]).toBe(appTraceId);
    expect(received?.[2]).not.toBe(appParent);
  });

  test('east\'s outbound CLIENT span and west\'s inbound SERVER span share the app\'s trace id, parent to child', async () => {
    const client = await collected('the outbound span', (s) => s.traceId === appTraceId && s.kind === kind.client);
    expect(client.parentSpanId).toBe(appParent);
    expect(client.name).toBe('outbound demo/ledger');
    expect(attr(client, 'isthmus.source_cluster')).toBe('east');
    expect(attr(client, 'isthmus.destination_cluster')).toBe('west');
    expect(attr(client, 'isthmus.destination_service')).toBe('demo/ledger');
    expect(attr(client, 'http.status_code')).toBe(200);
    expect(attr(client, 'network.peer.address')).toMatch(/^127\.0\.52\.1:\d+$/);
    expect(typeof attr(client, 'isthmus.priority')).toBe('number');

    // The resource is what @opentelemetry/sdk-node's standard configuration makes: service.name
    // from OTEL_SERVICE_NAME, and its default detectors' process and host attributes.
    const resource = Object.fromEntries((client.resource ?? []).map((a) => [a.key, a.value.stringValue ?? a.value.intValue]));
    expect(resource).toMatchObject({ 'service.name': 'isthmus-tracing-test', 'telemetry.sdk.language': 'nodejs', 'process.runtime.name': 'nodejs' });
    expect(resource['host.name']).toBeTruthy();

    const server = await collected('the inbound span', (s) => s.traceId === appTraceId && s.kind === kind.server);
    expect(server.parentSpanId).toBe(client.spanId);
    expect(server.name).toBe('inbound demo/ledger');
    expect(attr(server, 'isthmus.cluster')).toBe('west');
    expect(attr(server, 'isthmus.caller_identity')).toBe('spiffe://dev.test/ns/demo/sa/client');
    // The app's traceparent names the inbound span as its parent.
    expect(answer.body.traceparent).toBe(`00-${appTraceId}-${server.spanId}-01`);
    expect(spans.filter((s) => s.traceId === appTraceId).map((s) => s.kind).sort()).toEqual([kind.server, kind.client]);
  });

  test('west\'s gateway records the routed connection as a trace of its own (it cannot read traceparent)', async () => {
    // The span covers the connection, which the sidecar pools: it ends when the mesh stops.
    await mesh?.stop();
    mesh = undefined;
    const gateway = await collected('the gateway span', (s) => s.kind === kind.internal && s.name === 'gateway demo/ledger' && attr(s, 'isthmus.cluster') === 'west');
    expect(gateway.traceId).not.toBe(appTraceId);
    expect(attr(gateway, 'tls.server_name')).toMatch(/ledger/);
    expect(attr(gateway, 'isthmus.endpoint')).toMatch(/^127\.0\.52\.1:\d+$/);
  });
});
